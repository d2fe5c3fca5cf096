package lookup

import (
	_ "embed"
	"net/http"
)

// openAPI describes the JSON API (/api/v1/flows) at /api/v1/openapi.json.
// TestOpenAPIMatchesTheTypes keeps it in step with Response and its parts.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI serves the OpenAPI document; it is static, so it is not
// rate-limited and may be cached.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "method not allowed"})
		return
	}
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(openAPI)
}
