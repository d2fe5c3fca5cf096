package lookup

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// Row is one flow as the API and the page show it.
type Row struct {
	Start        time.Time  `json:"start"`
	End          *time.Time `json:"end,omitempty"`
	Proto        uint8      `json:"proto"`
	OrigSrc      string     `json:"orig_src"`
	OrigDst      string     `json:"orig_dst"`
	ReplySrc     string     `json:"reply_src"`
	ReplyDst     string     `json:"reply_dst"`
	OrigBytes    uint64     `json:"orig_bytes"`
	OrigPackets  uint64     `json:"orig_packets"`
	ReplyBytes   uint64     `json:"reply_bytes"`
	ReplyPackets uint64     `json:"reply_packets"`
	Slice        string     `json:"slice"`
	Sliver       string     `json:"sliver,omitempty"`
	PodUID       string     `json:"pod_uid,omitempty"`
	Description  string     `json:"description,omitempty"`
	URL          string     `json:"url,omitempty"`
	Contacts     []string   `json:"contacts,omitempty"`
	PIs          []string   `json:"pis,omitempty"`
	Techs        []string   `json:"techs,omitempty"`
	Site         string     `json:"site,omitempty"`
	SiteURL      string     `json:"site_url,omitempty"`
	// Node is the node that saw the flow, when known.
	Node string `json:"node,omitempty"`
	// Source is "archive" when the install's archive answered for the
	// node (it no longer holds the flow, or did not answer).
	Source string `json:"source,omitempty"`
}

// Response is the API's answer.
type Response struct {
	Flows     []Row `json:"flows"`
	Truncated bool  `json:"truncated"`
	// Errors lists the nodes that did not answer (a PartialStore's answer).
	Errors []NodeError `json:"errors,omitempty"`
	// NodesAsked and NodesAnswered say how much of the install the answer
	// covers (a PartialStore's answer; absent from one node's own).
	NodesAsked    *int `json:"nodes_asked,omitempty"`
	NodesAnswered *int `json:"nodes_answered,omitempty"`
	// Nodes say how far back the records of the nodes that answered go
	// (and the archive's of each node it holds, with source "archive").
	Nodes []Holding `json:"nodes,omitempty"`
	// ArchiveError says why the install's archive did not answer.
	ArchiveError string `json:"archive_error,omitempty"`
}

// coverage is how many nodes an answer covers, for a PartialStore's.
type coverage struct {
	Asked, Answered int
	// Archive says that the archive was asked and answered.
	Archive bool
}

// ErrorResponse is the API's answer to a query that failed: Error says why,
// and Errors, when no node answered, says why each failed.
type ErrorResponse struct {
	Error  string      `json:"error"`
	Errors []NodeError `json:"errors,omitempty"`
}

func (h *handler) row(r flow.Record) Row {
	row := Row{
		Start: r.Start.UTC(), Proto: r.Proto,
		OrigSrc: r.Orig.Src.String(), OrigDst: r.Orig.Dst.String(),
		ReplySrc: r.Reply.Src.String(), ReplyDst: r.Reply.Dst.String(),
		OrigBytes: r.OrigBytes, OrigPackets: r.OrigPackets,
		ReplyBytes: r.ReplyBytes, ReplyPackets: r.ReplyPackets,
		Slice: r.Slice, Sliver: r.Sliver, PodUID: r.PodUID, Node: r.Node, Source: r.Source,
	}
	if !r.End.IsZero() {
		e := r.End.UTC()
		row.End = &e
	}
	if r.Slice != "" && h.dir != nil {
		if info, ok := h.dir.Slice(r.Slice); ok {
			row.Description, row.URL, row.Contacts = info.Description, info.URL, info.Contacts
			row.PIs, row.Techs, row.Site, row.SiteURL = info.PIs, info.Techs, info.Site, info.SiteURL
		}
	}
	return row
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) fail(w http.ResponseWriter, api bool, code int, msg string, form *formValues) {
	if api {
		writeJSON(w, code, ErrorResponse{Error: msg})
		return
	}
	if form == nil {
		form = &formValues{}
	}
	h.page(w, code, pageData{Form: form, Error: msg})
}

// failNodes answers a query that no node answered: 502, with why each failed.
func (h *handler) failNodes(w http.ResponseWriter, api bool, form *formValues, errs []NodeError) {
	const msg = "no node answered"
	if api {
		writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: msg, Errors: errs})
		return
	}
	h.page(w, http.StatusBadGateway, pageData{Form: form, Error: msg, NodeErrors: errs})
}

type pageData struct {
	Form      *formValues
	Error     string
	Searched  bool
	Truncated bool
	Max       int
	// ShowNode adds the node column (some row has a node).
	ShowNode   bool
	NodeErrors []NodeError
	// Coverage is set for a PartialStore's answer.
	Coverage *coverage
	// ArchiveError says why the archive did not answer.
	ArchiveError string
	// Answer is the answer to a search, in words and flows.
	Answer *answerView
	// Operator runs the testbed; Node is this node (empty for the
	// install's cluster-wide page).
	Operator Operator
	Node     string
}

// stylesheet is the page's only style, inline and allowed by its hash in
// the Content-Security-Policy: the page loads nothing else. It keeps the
// page readable on a phone (one column, the table scrolls in its box) and
// in dark mode, and shows the keyboard focus.
const stylesheet = `
:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5}
body{margin:0 auto;max-width:64rem;padding:1rem;overflow-wrap:anywhere}
h1{font-size:1.6rem;margin:.25rem 0 .5rem}
h2{font-size:1.25rem;margin:1.5rem 0 .5rem}
h3{font-size:1.05rem;margin:0 0 .25rem}
form{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.75rem 1rem;align-items:start;padding:1rem;border:1px solid #8888;border-radius:.5rem}
label{display:block;font-weight:600}
.hint{display:block;font-size:.875rem;font-weight:400;opacity:.8}
input{box-sizing:border-box;width:100%;font:inherit;padding:.375rem .5rem;margin-top:.25rem}
button{font:inherit;font-weight:600;padding:.5rem 1.25rem;align-self:end;justify-self:start}
:focus-visible{outline:3px solid #3584e4;outline-offset:2px}
.alert{border-left:.25rem solid #e01b24;padding:.25rem 1rem;margin:1rem 0}
.slice{border-left:.25rem solid #3584e4;padding:.25rem 1rem;margin:1rem 0}
.node-traffic{border-left-color:#9a9996}
.coverage{padding:.25rem 1rem;margin:1rem 0;border-left:.25rem solid #9a9996}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.875rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #8888;white-space:nowrap;vertical-align:top}
td.num{text-align:right}
.seen{display:block;font-size:.8rem;opacity:.8}
`

// csp lets the page use its own stylesheet and nothing else: no script, no
// image, no frame, no other origin.
var csp = "default-src 'none'; style-src '" + cspHash(stylesheet) + "'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (h *handler) page(w http.ResponseWriter, code int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	d.Operator, d.Node = h.opt.Operator, h.opt.NodeName
	_ = pageTmpl.Execute(w, d)
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"style": func() template.CSS { return template.CSS(stylesheet) },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	},
	"join": func(xs []string) string { return strings.Join(xs, ", ") },
	"cap":  capFirst,
}).Parse(pageHTML))

//go:embed page.html
var pageHTML string
