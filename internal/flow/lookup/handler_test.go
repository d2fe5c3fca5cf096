package lookup

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeStore records the queries it got and answers with recs or err.
type fakeStore struct {
	mu   sync.Mutex
	got  []flow.Query
	recs []flow.Record
	err  error
}

func (f *fakeStore) Query(_ context.Context, q flow.Query) ([]flow.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, q)
	if f.err != nil {
		return nil, f.err
	}
	n := min(len(f.recs), q.Limit)
	return f.recs[:n], nil
}

func (f *fakeStore) calls() []flow.Query {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]flow.Query(nil), f.got...)
}

type fakeDir map[string]SliceInfo

func (d fakeDir) Slice(n string) (SliceInfo, bool) { i, ok := d[n]; return i, ok }

var dir = fakeDir{
	"plc.princeton.codeen": {FullName: "plc.princeton.codeen", Description: "CoDeeN CDN", URL: "https://codeen.example/", Contacts: []string{"pi@princeton.example", "tech@princeton.example"}},
	"plc.evil.x":           {FullName: "plc.evil.x", Description: `<script>alert(1)</script>`, URL: "javascript:alert(2)", Contacts: []string{`"><img src=x onerror=alert(3)>`}},
}

func recs() []flow.Record {
	return []flow.Record{
		{
			Start: now.Add(-time.Minute), End: now, Proto: 6,
			Orig:      flow.Tuple{Src: netip.MustParseAddrPort("10.244.1.5:40000"), Dst: netip.MustParseAddrPort("198.51.100.7:443")},
			Reply:     flow.Tuple{Src: netip.MustParseAddrPort("198.51.100.7:443"), Dst: netip.MustParseAddrPort("192.0.2.10:40000")},
			OrigBytes: 1234, ReplyBytes: 5678, Slice: "plc.princeton.codeen", Sliver: "ns/pod", PodUID: "uid-1",
		},
		{
			Start: now.Add(-30 * time.Second), Proto: 17,
			Orig:      flow.Tuple{Src: netip.MustParseAddrPort("192.0.2.10:123"), Dst: netip.MustParseAddrPort("198.51.100.7:123")},
			Reply:     flow.Tuple{Src: netip.MustParseAddrPort("198.51.100.7:123"), Dst: netip.MustParseAddrPort("192.0.2.10:123")},
			OrigBytes: 48, ReplyBytes: 48,
		},
	}
}

func newH(s Store, o Options) http.Handler {
	if o.Now == nil {
		o.Now = func() time.Time { return now }
	}
	return NewHandler(s, dir, o)
}

func do(h http.Handler, method, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func TestAPIQueryByIP(t *testing.T) {
	s := &fakeStore{recs: recs()}
	h := newH(s, Options{})
	w := do(h, "GET", "/api/v1/flows?ip=198.51.100.7&time=2025-03-01T12:00:00Z&window=10m&unknown=1")
	if w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	got := s.calls()
	want := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: now.Add(-5 * time.Minute), To: now.Add(5 * time.Minute), Limit: 1001}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("queries %+v, want %+v", got, want)
	}
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Truncated || len(resp.Flows) != 2 {
		t.Fatalf("resp %+v", resp)
	}
	r0, r1 := resp.Flows[0], resp.Flows[1]
	if r0.OrigDst != "198.51.100.7:443" || r0.ReplyDst != "192.0.2.10:40000" || r0.OrigBytes != 1234 || r0.Proto != 6 ||
		r0.Slice != "plc.princeton.codeen" || r0.Description != "CoDeeN CDN" || len(r0.Contacts) != 2 || r0.End == nil || !r0.End.Equal(now) {
		t.Errorf("row 0 %+v", r0)
	}
	if r1.Slice != "" || r1.End != nil || r1.Proto != 17 {
		t.Errorf("row 1 %+v", r1)
	}
}

// TestTimeInAZone: the page's datetime-local time is read in the zone
// field, and a bad zone is refused naming the field and the forms expected.
func TestTimeInAZone(t *testing.T) {
	s := &fakeStore{}
	h := newH(s, Options{})
	if w := do(h, "GET", "/?ip=198.51.100.7&time=2025-03-01T13:00&zone=Europe/Paris&window=10"); w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	want := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: now.Add(-5 * time.Minute), To: now.Add(5 * time.Minute), Limit: 1001}
	if got := s.calls(); len(got) != 1 || got[0] != want {
		t.Fatalf("queries %+v, want %+v (13:00 in Paris is 12:00 UTC)", got, want)
	}
	w := do(h, "GET", "/?ip=198.51.100.7&time=2025-03-01T13:00&zone=Paris")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "zone: expected a time zone such as UTC, Europe/Paris") {
		t.Errorf("bad zone: code %d, %s", w.Code, w.Body)
	}
	w = do(h, "GET", "/?ip=198.51.100.7&time=01/03/2025")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "time: expected a date and time such as 2026-12-02 10:15") {
		t.Errorf("bad time: code %d, %s", w.Code, w.Body)
	}
}

func TestAPIFromToAndSlice(t *testing.T) {
	s := &fakeStore{}
	h := newH(s, Options{MaxResults: 10})
	w := do(h, "GET", "/api/v1/flows?slice=plc.princeton.codeen&from=2025-03-01T10:00:00Z&to=2025-03-01T12:00:00%2B01:00")
	if w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	want := flow.Query{Slice: "plc.princeton.codeen", From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour), Limit: 11}
	if got := s.calls(); len(got) != 1 || got[0] != want {
		t.Fatalf("queries %+v, want %+v", got, want)
	}
	if !strings.Contains(w.Body.String(), `"flows":[]`) {
		t.Errorf("empty result should be [] not null: %s", w.Body)
	}
	// Defaults: now, 15 minutes; IPv4-mapped addresses are unmapped.
	s2 := &fakeStore{}
	do(newH(s2, Options{}), "GET", "/api/v1/flows?ip=::ffff:198.51.100.7")
	want = flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: now.Add(-DefaultWindow / 2), To: now.Add(DefaultWindow / 2), Limit: 1001}
	if got := s2.calls(); len(got) != 1 || got[0] != want {
		t.Fatalf("queries %+v, want %+v", got, want)
	}
}

func TestPage(t *testing.T) {
	s := &fakeStore{recs: recs()}
	h := newH(s, Options{})
	w := do(h, "GET", "/")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<form") || len(s.calls()) != 0 {
		t.Fatalf("empty form: %d %s", w.Code, w.Body)
	}
	w = do(h, "GET", "/?ip=198.51.100.7&time=2025-03-01T12:00:00Z&window=30")
	if w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	if got := s.calls(); len(got) != 1 || got[0].From != now.Add(-15*time.Minute) || got[0].To != now.Add(15*time.Minute) {
		t.Fatalf("queries %+v", got)
	}
	body := w.Body.String()
	for _, want := range []string{
		`Between 2025-03-01 11:45:00 and 12:15:00 UTC, 1 flow to 198.51.100.7 came from slice <strong>plc.princeton.codeen</strong> (CoDeeN CDN, <a href="https://codeen.example/" rel="noopener noreferrer">https://codeen.example/</a>).`,
		"Responsible: pi@princeton.example, tech@princeton.example.",
		"Between 2025-03-01 11:45:00 and 12:15:00 UTC, 1 flow to 198.51.100.7 came from the node itself, not from a slice.",
		"<td>10.244.1.5:40000<span class=\"seen\">seen as 192.0.2.10:40000</span></td><td>198.51.100.7:443</td>",
		`<data value="1234">1.23 kB</data>`, `<data value="5678">5.68 kB</data>`, `<data value="48">48 B</data>`, "<td>TCP</td>", "<td>UDP</td>", "<td>the node itself</td>",
		`<time datetime="2025-03-01T11:59:00Z">2025-03-01 11:59:00</time>`, "still open", `value="198.51.100.7"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	hd := w.Header()
	if !strings.HasPrefix(hd.Get("Content-Type"), "text/html") || hd.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.Contains(hd.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v", hd)
	}
}

func TestPageEscapes(t *testing.T) {
	r := recs()[:1]
	r[0].Slice = "plc.evil.x"
	h := newH(&fakeStore{recs: r}, Options{})
	w := do(h, "GET", "/?ip=198.51.100.7")
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("code %d", w.Code)
	}
	for _, bad := range []string{"<script>", "<img", `href="javascript`} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q:\n%s", bad, body)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("escaped description missing:\n%s", body)
	}
	// Hostile input echoed in the form is escaped too.
	w = do(h, "GET", "/?ip="+url.QueryEscape(`"><script>x</script>`))
	if w.Code != 400 || strings.Contains(w.Body.String(), "<script>") {
		t.Errorf("code %d body %s", w.Code, w.Body)
	}
}

func TestBadInput(t *testing.T) {
	long := strings.Repeat("a", 3000)
	for _, q := range []string{
		"ip=300.1.1.1", "ip=example.com", "ip=fe80::1%25eth0", "ip=1.2.3.4&ip=5.6.7.8",
		"ip=1.2.3.4&time=yesterday", "ip=1.2.3.4&time=0001-01-01T00:00:00Z", "ip=1.2.3.4&zone=Mars/Olympus",
		"ip=1.2.3.4&time=2025-03-01T10:00&zone=Mars/Olympus",
		"ip=1.2.3.4&window=25h", "ip=1.2.3.4&window=1441", "ip=1.2.3.4&window=0", "ip=1.2.3.4&window=-5m", "ip=1.2.3.4&window=abc",
		"ip=1.2.3.4&window=99999999999999999999",
		"ip=1.2.3.4&from=2025-03-01T10:00:00Z", "ip=1.2.3.4&from=2025-03-01T10:00:00Z&to=2025-03-01T09:00:00Z",
		"ip=1.2.3.4&from=2025-03-01T10:00:00Z&to=2025-03-03T10:00:00Z", "ip=1.2.3.4&from=x&to=y",
		"ip=1.2.3.4&time=2025-03-01T10:00:00Z&from=2025-03-01T10:00:00Z&to=2025-03-01T11:00:00Z",
		"slice=" + url.QueryEscape("a b"), "slice=" + strings.Repeat("a", 254),
		"time=2025-03-01T10:00:00Z", "", "foo=bar", "ip=%zz", "ip=1.2.3.4&x=" + long,
	} {
		for _, path := range []string{"/api/v1/flows", "/"} {
			if path == "/" && (q == "" || q == "foo=bar") {
				continue // the empty form
			}
			s := &fakeStore{}
			w := do(newH(s, Options{}), "GET", path+"?"+q)
			if w.Code != 400 {
				t.Errorf("%s?%.60s: code %d, want 400", path, q, w.Code)
			}
			if n := len(s.calls()); n != 0 {
				t.Errorf("%s?%.60s: store called %d times", path, q, n)
			}
			ct := w.Header().Get("Content-Type")
			if path == "/" && !strings.HasPrefix(ct, "text/html") || path != "/" && !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s?%.60s: Content-Type %q", path, q, ct)
			}
			if path != "/" {
				var e map[string]string
				if json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] == "" {
					t.Errorf("%s?%.60s: body %s", path, q, w.Body)
				}
			}
		}
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	s := &fakeStore{}
	h := newH(s, Options{})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		for _, p := range []string{"/", "/api/v1/flows?ip=1.2.3.4"} {
			w := do(h, m, p)
			if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d", m, p, w.Code)
			}
		}
	}
	if w := do(h, "HEAD", "/api/v1/flows?ip=1.2.3.4"); w.Code != 200 {
		t.Errorf("HEAD: %d", w.Code)
	}
	if w := do(h, "GET", "/other"); w.Code != 404 {
		t.Errorf("/other: %d", w.Code)
	}
	if n := len(s.calls()); n != 1 {
		t.Errorf("store called %d times, want 1 (HEAD)", n)
	}
}

func TestRateLimit(t *testing.T) {
	clock := now
	s := &fakeStore{}
	h := newH(s, Options{RatePerSecond: 2, Burst: 3, Now: func() time.Time { return clock }})
	req := func(addr string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/api/v1/flows?ip=1.2.3.4", nil)
		r.RemoteAddr = addr
		r.Header.Set("X-Forwarded-For", "9.9.9.9") // not trusted
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := req("203.0.113.1:1000"); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := req("203.0.113.1:1001")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("after burst: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := req("203.0.113.2:1000"); w.Code != 200 {
		t.Errorf("other client: %d", w.Code)
	}
	clock = clock.Add(500 * time.Millisecond)
	if w := req("203.0.113.1:1000"); w.Code != 200 {
		t.Errorf("after refill: %d", w.Code)
	}
	if w := req("203.0.113.1:1000"); w.Code != 429 {
		t.Errorf("refill gave more than one token: %d", w.Code)
	}
	if n := len(s.calls()); n != 5 {
		t.Errorf("store called %d times, want 5", n)
	}
}

func TestRateLimitExemptNetworks(t *testing.T) {
	h := newH(&fakeStore{}, Options{RatePerSecond: 1, Burst: 1, Now: func() time.Time { return now },
		Unlimited: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00::/64")}})
	codes := func(addr string) (ok, limited int) {
		for range 20 {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/api/v1/flows?ip=1.2.3.4", nil)
			r.RemoteAddr = addr
			h.ServeHTTP(w, r)
			switch w.Code {
			case 200:
				ok++
			case 429:
				limited++
			}
		}
		return ok, limited
	}
	for _, addr := range []string{"10.96.3.4:5000", "[fd00::7]:5000", "[::ffff:10.96.0.9]:1"} {
		if ok, limited := codes(addr); ok != 20 || limited != 0 {
			t.Errorf("Exempt client %s: %d answered, %d limited; want all answered", addr, ok, limited)
		}
	}
	if ok, limited := codes("10.97.0.1:5000"); ok != 1 || limited != 19 {
		t.Errorf("Other client: %d answered, %d limited; want 1 and 19", ok, limited)
	}
}

func TestTruncation(t *testing.T) {
	many := make([]flow.Record, 5)
	for i := range many {
		many[i] = recs()[1]
	}
	for _, c := range []struct {
		n     int
		trunc bool
		rows  int
	}{{5, true, 3}, {3, false, 3}, {2, false, 2}} {
		s := &fakeStore{recs: many[:c.n]}
		w := do(newH(s, Options{MaxResults: 3}), "GET", "/api/v1/flows?ip=198.51.100.7")
		var resp Response
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Truncated != c.trunc || len(resp.Flows) != c.rows || s.calls()[0].Limit != 4 {
			t.Errorf("%d records: truncated %v rows %d", c.n, resp.Truncated, len(resp.Flows))
		}
	}
	s := &fakeStore{recs: many}
	if w := do(newH(s, Options{MaxResults: 3}), "GET", "/?ip=198.51.100.7"); !strings.Contains(w.Body.String(), "Only the first 3 flows") {
		t.Errorf("page lacks truncation note")
	}
}

func TestStoreError(t *testing.T) {
	s := &fakeStore{err: errors.New("pebble: /var/lib/secret corrupted")}
	for _, p := range []string{"/api/v1/flows?ip=1.2.3.4", "/?ip=1.2.3.4"} {
		w := do(newH(s, Options{}), "GET", p)
		if w.Code != 500 || strings.Contains(w.Body.String(), "secret") || !strings.Contains(w.Body.String(), "internal error") {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
}

func TestNodeName(t *testing.T) {
	r := recs()
	r[1].Node = "other-node"
	h := newH(&fakeStore{recs: r}, Options{NodeName: "node-a"})
	w := do(h, "GET", "/api/v1/flows?ip=198.51.100.7")
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Flows) != 2 || resp.Flows[0].Node != "node-a" || resp.Flows[1].Node != "other-node" {
		t.Fatalf("flows %+v", resp.Flows)
	}
	if !strings.Contains(w.Body.String(), `"node":"node-a"`) || strings.Contains(w.Body.String(), `"errors"`) {
		t.Errorf("body %s", w.Body)
	}
	body := do(h, "GET", "/?ip=198.51.100.7").Body.String()
	if !strings.Contains(body, `<th scope="col">Node</th>`) || !strings.Contains(body, "<td>node-a</td>") || !strings.Contains(body, "<td>other-node</td>") {
		t.Errorf("page lacks the node column:\n%s", body)
	}
	// Without a node name nor nodes on the records, no column and no field.
	h = newH(&fakeStore{recs: recs()}, Options{})
	if body := do(h, "GET", "/?ip=198.51.100.7").Body.String(); strings.Contains(body, `<th scope="col">Node</th>`) || !strings.Contains(body, "<th scope=\"col\">Start</th>") {
		t.Errorf("page has a node column:\n%s", body)
	}
	if body := do(h, "GET", "/api/v1/flows?ip=198.51.100.7").Body.String(); strings.Contains(body, `"node"`) {
		t.Errorf("API has a node field: %s", body)
	}
}

// partialStore answers as a fan-out over nodes would: res and err.
type partialStore struct {
	fakeStore
	res Partial
	err error
}

func (p *partialStore) QueryPartial(ctx context.Context, q flow.Query) (Partial, error) {
	if _, err := p.fakeStore.Query(ctx, q); err != nil {
		return Partial{}, err
	}
	return p.res, p.err
}

func TestPartialStore(t *testing.T) {
	r := recs()
	r[0].Node, r[1].Node = "n1", "n2"
	errs := []NodeError{{Node: "n3", Error: "timed out"}, {Node: "<b>n4</b>", Error: `bad response: <script>alert(1)</script>`}}
	s := &partialStore{res: Partial{Records: r, Truncated: true, Errors: errs, Asked: 5}}
	h := newH(s, Options{NodeName: "manager-should-not-show"})
	w := do(h, "GET", "/api/v1/flows?ip=198.51.100.7")
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != 200 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	if len(resp.Flows) != 2 || resp.Flows[0].Node != "n1" || resp.Flows[1].Node != "n2" || !resp.Truncated {
		t.Errorf("resp %+v", resp)
	}
	if len(resp.Errors) != 2 || resp.Errors[0] != errs[0] || resp.Errors[1] != errs[1] {
		t.Errorf("errors %+v", resp.Errors)
	}
	if !strings.Contains(w.Body.String(), `"errors":[{"node":"n3","error":"timed out"}`) ||
		!strings.Contains(w.Body.String(), `"nodes_asked":5,"nodes_answered":3`) {
		t.Errorf("body %s", w.Body)
	}
	w = do(h, "GET", "/?ip=198.51.100.7")
	body := w.Body.String()
	for _, want := range []string{`id="node-errors"`, "3 of 5 nodes answered.", "n3", "timed out", "&lt;b&gt;n4&lt;/b&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;", "Only the first", "<td>n1</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>") {
		t.Errorf("page not escaped:\n%s", body)
	}

	// No node agent found: the answer says so, not "No flows.".
	s = &partialStore{}
	h = newH(s, Options{})
	body = do(h, "GET", "/?ip=198.51.100.7").Body.String()
	if !strings.Contains(body, "No node agents were found: no node was asked") || strings.Contains(body, "no flow to") {
		t.Errorf("no node agents: page\n%s", body)
	}
	if body := do(h, "GET", "/api/v1/flows?ip=198.51.100.7").Body.String(); !strings.Contains(body, `"nodes_asked":0,"nodes_answered":0`) {
		t.Errorf("no node agents: API %s", body)
	}
	// One agent's own answer has no coverage line.
	if body := do(newH(&fakeStore{}, Options{}), "GET", "/?ip=198.51.100.7").Body.String(); strings.Contains(body, `id="coverage"`) ||
		!strings.Contains(body, "Between 2025-03-01 11:52:30 and 12:07:30 UTC, no flow to 198.51.100.7 was recorded by this node.") {
		t.Errorf("an agent's page:\n%s", body)
	}

	// No node answered: 502 with the reasons.
	s = &partialStore{res: Partial{Errors: errs[:1]}, err: errors.New("every node failed")}
	h = newH(s, Options{})
	w = do(h, "GET", "/api/v1/flows?ip=198.51.100.7")
	var er ErrorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil || w.Code != 502 || er.Error != "no node answered" || len(er.Errors) != 1 || er.Errors[0] != errs[0] {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	w = do(h, "GET", "/?ip=198.51.100.7")
	if w.Code != 502 || !strings.Contains(w.Body.String(), "timed out") || !strings.Contains(w.Body.String(), "no node answered") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	// An error without node errors stays an opaque 500.
	s = &partialStore{err: errors.New("listing pods: secret detail")}
	h = newH(s, Options{})
	w = do(h, "GET", "/api/v1/flows?ip=198.51.100.7")
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	// Bad input never reaches the store.
	if w := do(h, "GET", "/api/v1/flows?ip=300.1.1.1"); w.Code != 400 || len(s.calls()) != 1 {
		t.Errorf("%d, %d calls", w.Code, len(s.calls()))
	}
}

// TestOperatorOnThePage: the page says whose testbed it is and whom to tell,
// escaped; without an operator it says none was given.
func TestOperatorOnThePage(t *testing.T) {
	op := Operator{Name: "PlanetLab <Europe>", URL: "https://planet-lab.eu/", AbuseContact: "abuse@planet-lab.eu"}
	body := do(newH(&fakeStore{}, Options{NodeName: "node-a", Operator: op}), "GET", "/").Body.String()
	for _, want := range []string{"This machine, node node-a, belongs to a testbed run by", `<a href="https://planet-lab.eu/" rel="noopener noreferrer">PlanetLab &lt;Europe&gt;</a>`,
		`<a href="mailto:abuse@planet-lab.eu">abuse@planet-lab.eu</a>`, "finds the slice that sent traffic to an address"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	body = do(newH(&fakeStore{}, Options{}), "GET", "/").Body.String()
	if !strings.Contains(body, "This page covers every node that belongs to a testbed.") || !strings.Contains(body, "did not give a name or a contact") {
		t.Errorf("page without an operator:\n%s", body)
	}
	web := Operator{AbuseContact: "https://planet-lab.eu/abuse"}
	if body := do(newH(&fakeStore{}, Options{Operator: web}), "GET", "/").Body.String(); !strings.Contains(body, `<a href="https://planet-lab.eu/abuse">`) {
		t.Errorf("a web contact is not linked:\n%s", body)
	}
}

func TestOperatorValidate(t *testing.T) {
	for _, ok := range []Operator{{}, {Name: "PLE", URL: "https://planet-lab.eu", AbuseContact: "abuse@planet-lab.eu"}, {AbuseContact: "http://example.org/report"}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, c := range []struct {
		op   Operator
		want string
	}{
		{Operator{URL: "javascript:alert(1)"}, "--operator-url"},
		{Operator{URL: "planet-lab.eu"}, "--operator-url"},
		{Operator{AbuseContact: "call 555-1234"}, "--abuse-contact"},
		{Operator{AbuseContact: "Abuse <abuse@x.org>"}, "--abuse-contact"},
		{Operator{Name: "a\nb"}, "--operator-name"},
		{Operator{Name: strings.Repeat("x", 300)}, "--operator-name"},
	} {
		if err := c.op.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.op, err, c.want)
		}
	}
}
