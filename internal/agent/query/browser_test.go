package query

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	browsertest "github.com/planetkube/planetkube/internal/testing/browser"
)

// hostile is a slice description from the directory that would run a script
// and add an element if the page did not escape it. The hostile strings do
// not call alert(), which would hang the headless browser.
const hostile = `<script>document.title="pwned";document.body.append(Object.assign(document.createElement("p"),{id:"ran"}))</script><b id="injected">bold</b>`

// browserServer serves the page on 127.0.0.1 over known flows, one of a slice
// whose directory entry is hostile, and a node that did not answer.
func browserServer(t *testing.T) *httptest.Server {
	t.Helper()
	r := recs()
	evil := r[0]
	evil.Start, evil.Slice, evil.Node, evil.OrigBytes, evil.ReplyBytes = now.Add(-45*time.Second), "plc.evil.x", "node-b", 7, 8
	s := &partialStore{res: Partial{
		Records: []flow.Record{r[0], evil, r[1]},
		Errors:  []NodeError{{Node: "node-z", Error: "timed out"}},
	}}
	d := fakeDir{
		"plc.princeton.codeen": dir["plc.princeton.codeen"],
		"plc.evil.x":           {FullName: "plc.evil.x", Description: hostile, URL: "javascript:alert(2)", Contacts: []string{`"><img id="img" src=x onerror=document.title=3>`}},
	}
	srv := httptest.NewServer(NewHandler(s, d, Options{NodeName: "node-a", RatePerSecond: 1e6, Burst: 1 << 20, Now: func() time.Time { return now }}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s, not on 127.0.0.1", srv.URL)
	}
	return srv
}

var (
	trRE    = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	tdRE    = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
	titleRE = regexp.MustCompile(`(?s)<title>(.*?)</title>`)
	// injectedRE finds the elements that the hostile strings would add.
	injectedRE = regexp.MustCompile(`<[a-z]+[^<>]*\bid="(ran|injected|img)"[^<>]*>`)
)

// tableRows returns the cells (inner HTML) of the rows of the flows table.
func tableRows(dom string) [][]string {
	_, body, ok := strings.Cut(dom, `<tbody>`)
	if !ok {
		return nil
	}
	body, _, _ = strings.Cut(body, `</tbody>`)
	var rows [][]string
	for _, tr := range trRE.FindAllStringSubmatch(body, -1) {
		var cells []string
		for _, td := range tdRE.FindAllStringSubmatch(tr[1], -1) {
			cells = append(cells, strings.TrimSpace(td[1]))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestPageInBrowser(t *testing.T) {
	browsertest.Require(t)
	srv := browserServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dom, err := browsertest.DumpDOM(ctx, srv.URL+"/?ip=198.51.100.7&from=2025-03-01T11:00:00Z&to=2025-03-01T13:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if m := titleRE.FindStringSubmatch(dom); m == nil || m[1] != "Flow lookup" {
		t.Errorf("title is %q, not the page's: a script ran", m)
	}
	// In the serialized DOM, text has its < escaped: a tag is an element.
	if m := injectedRE.FindString(dom); m != "" {
		t.Errorf("DOM has the element %q: hostile text was not escaped", m)
	}
	for _, bad := range []string{"<script", "<img", `href="javascript`} {
		if strings.Contains(dom, bad) {
			t.Errorf("DOM contains %q: hostile text was not escaped", bad)
		}
	}
	rows := tableRows(dom)
	want := [][]string{
		{"node-a", "2025-03-01T11:59:00Z", "2025-03-01T12:00:00Z", "6", "10.244.1.5:40000 → 198.51.100.7:443", "198.51.100.7:443 → 192.0.2.10:40000",
			"1234 / 5678", "ns/pod", "plc.princeton.codeen", "CoDeeN CDN", `<a href="https://codeen.example/" rel="noopener noreferrer">https://codeen.example/</a>`,
			"pi@princeton.example, tech@princeton.example"},
		{"node-b", "2025-03-01T11:59:15Z", "2025-03-01T12:00:00Z", "6", "10.244.1.5:40000 → 198.51.100.7:443", "198.51.100.7:443 → 192.0.2.10:40000",
			"7 / 8", "ns/pod", "plc.evil.x", "(hostile)", `<a href="#ZgotmplZ" rel="noopener noreferrer">javascript:alert(2)</a>`, `"&gt;&lt;img id="img" src=x onerror=document.title=3&gt;`},
		{"node-a", "2025-03-01T11:59:30Z", "open", "17", "192.0.2.10:123 → 198.51.100.7:123", "198.51.100.7:123 → 192.0.2.10:123",
			"48 / 48", "", "node traffic (no slice)"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), dom)
	}
	for i := range want {
		if i == 1 && len(rows[i]) > 9 {
			// The hostile description is text: unescaped, it reads as given.
			if got := html.UnescapeString(rows[i][9]); got != hostile {
				t.Errorf("description is %q, want the text %q", rows[i][9], hostile)
			}
			rows[i][9] = "(hostile)"
		}
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, rows[i], want[i])
		}
	}
	if !strings.Contains(dom, `<th>Node</th>`) {
		t.Error("no node column")
	}
	if !strings.Contains(dom, `<li><span class="node">node-z</span>: <span class="reason">timed out</span></li>`) {
		t.Errorf("no notice of the node that did not answer:\n%s", dom)
	}
}

func TestPageInBrowserBadQuery(t *testing.T) {
	browsertest.Require(t)
	srv := browserServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := srv.URL + "/?ip=300.1.1.1&slice=" + "%3Cscript%3E"
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("code %d", resp.StatusCode)
	}
	dom, err := browsertest.DumpDOM(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `<p id="error" role="alert">ip: not an IP address</p>`) {
		t.Errorf("no 400 message:\n%s", dom)
	}
	if !strings.Contains(dom, `<input name="ip" value="300.1.1.1">`) || strings.Contains(dom, "<tbody>") {
		t.Errorf("form not filled back, or a table:\n%s", dom)
	}
}

func TestPageScreenshot(t *testing.T) {
	browsertest.Require(t)
	srv := browserServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "page.png")
	if err := browsertest.Screenshot(ctx, srv.URL+"/?ip=198.51.100.7", file, 1280, 800); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("not a PNG: %v", err)
	}
}
