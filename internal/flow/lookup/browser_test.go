package lookup

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/testing/browsertest"
)

// hostile is a slice description that would run a script and add an
// element if the page did not escape it. It does not call alert(), which
// would block the headless browser.
const hostile = `<script>document.title="pwned";document.body.append(Object.assign(document.createElement("p"),{id:"ran"}))</script><b id="injected">bold</b>`

// hostileContact would add an image whose onerror runs, unescaped.
const hostileContact = `"><img id="img" src=x onerror=document.title=3>`

// pageServer serves the cluster-wide page over a fan-out double: the flows
// of two slices (one with hostile strings) and of a node itself, one node
// that did not answer, and two nodes' holdings. Asked is 0 when none.
func pageServer(t *testing.T, recs []flow.Record, asked int) *httptest.Server {
	t.Helper()
	since := now.Add(-time.Hour)
	late := now.Add(-3 * time.Minute)
	s := &partialStore{res: Partial{
		Records:  recs,
		Errors:   []NodeError{{Node: "node-z", Error: "timed out"}},
		Asked:    asked,
		Holdings: []Holding{{Node: "node-a", RecordsSince: &since, RetentionSeconds: 604800}, {Node: "node-b", RecordsSince: &late, RetentionSeconds: 604800}},
	}}
	if asked == 0 {
		s.res.Errors, s.res.Holdings = nil, nil
	}
	d := fakeDir{
		"plc.princeton.codeen": {FullName: "plc.princeton.codeen", Description: "CoDeeN, a content distribution network", URL: "https://codeen.example/",
			Contacts: []string{"llp@princeton.example", "tech@princeton.example"}, PIs: []string{"llp@princeton.example"}, Techs: []string{"tech@princeton.example"},
			Site: "Princeton University", SiteURL: "https://princeton.example/"},
		"plc.evil.x": {FullName: "plc.evil.x", Description: hostile, URL: "javascript:alert(2)", Contacts: []string{hostileContact}, PIs: []string{hostileContact}, Site: hostile},
	}
	op := Operator{Name: "PlanetLab Europe", URL: "https://planet-lab.eu/", AbuseContact: "abuse@planet-lab.eu"}
	srv := httptest.NewServer(NewHandler(s, d, Options{Operator: op, RatePerSecond: 1e6, Burst: 1 << 20, Now: func() time.Time { return now }}))
	t.Cleanup(srv.Close)
	return srv
}

// twoSlices are flows to 198.51.100.7 from codeen (two nodes), the hostile
// slice, and node-a itself.
func twoSlices() []flow.Record {
	r := recs()
	codeenB := r[0]
	codeenB.Node, codeenB.Start, codeenB.Orig.Src = "node-b", now.Add(-50*time.Second), netip.MustParseAddrPort("10.244.2.9:41000")
	evil := r[0]
	evil.Node, evil.Slice, evil.Start, evil.OrigBytes = "node-b", "plc.evil.x", now.Add(-40*time.Second), 2_500_000
	r[0].Node, r[1].Node = "node-a", "node-a"
	return []flow.Record{r[0], codeenB, evil, r[1]}
}

// browserPage launches Chromium and opens a page of the given size; both end
// with the test.
func browserPage(t *testing.T, width, height int, mobile bool) (context.Context, *browsertest.Page) {
	t.Helper()
	browsertest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b, err := browsertest.Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	p, err := b.NewPage(ctx, width, height, mobile)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, p
}

// visible is what the page shows as text (innerText: rendered text only).
func visible(ctx context.Context, t *testing.T, p *browsertest.Page) string {
	t.Helper()
	var text string
	if err := p.Eval(ctx, "document.body.innerText", &text); err != nil {
		t.Fatal(err)
	}
	return text
}

func mustEval[T any](ctx context.Context, t *testing.T, p *browsertest.Page, expr string) T {
	t.Helper()
	var v T
	if err := p.Eval(ctx, expr, &v); err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// screenshotNotBlank takes a screenshot of the page and fails the test
// when it is blank.
func screenshotNotBlank(ctx context.Context, t *testing.T, p *browsertest.Page) {
	t.Helper()
	png, err := p.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := browsertest.NotBlank(png); err != nil {
		t.Error(err)
	}
}

func wantText(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("the page does not show %q; it shows:\n%s", w, text)
		}
	}
}

// TestPageInChromium: a stranger's answer as Chromium renders it: the
// sentences, the people, the coverage, hostile strings as text, the report
// link, the stylesheet applied under the CSP, and a screenshot with content.
func TestPageInChromium(t *testing.T) {
	ctx, p := browserPage(t, 1280, 900, false)
	srv := pageServer(t, twoSlices(), 3)
	if err := p.Navigate(ctx, srv.URL+"/?ip=198.51.100.7&time=2025-03-01T13:00&zone=Europe/Paris&window=10"); err != nil {
		t.Fatal(err)
	}
	text := visible(ctx, t, p)
	wantText(t, text,
		"This page covers every node that belongs to a testbed run by PlanetLab Europe.",
		"To report unwanted traffic: abuse@planet-lab.eu.",
		"4 flows to 198.51.100.7 came from 3 sources, each told below.",
		"Between 2025-03-01 12:55:00 and 13:05:00 Europe/Paris, 2 flows to 198.51.100.7 came from slice plc.princeton.codeen (CoDeeN, a content distribution network, https://codeen.example/), seen by node-a, node-b.",
		"Responsible: llp@princeton.example (principal investigator); tech@princeton.example (technical contact), of site Princeton University (https://princeton.example/).",
		"Between 2025-03-01 12:55:00 and 13:05:00 Europe/Paris, 1 flow to 198.51.100.7 came from slice plc.evil.x ("+hostile+", javascript:alert(2)), seen by node-b.",
		"Responsible: "+hostileContact+" (principal investigator), of site "+hostile+".",
		"1 flow to 198.51.100.7 came from the node itself, not from a slice, seen by node-a.",
		"Some nodes did not answer; their flows are missing:", "node-z: timed out",
		"2 of 3 nodes answered.",
		"The nodes that answered keep flow records for 7 days.",
		"1 node(s) hold no records for the start of this window, so their earlier traffic is not known: node-b (from 2025-03-01 12:57:00).",
		"The flows, times in Europe/Paris",
		"2025-03-01 12:59:00", "1.23 kB", "2.50 MB", "TCP", "UDP", "seen as 192.0.2.10:40000",
	)
	// The hostile strings are text: no script ran, no element was added,
	// and the javascript: URL is not a link target.
	if title := mustEval[string](ctx, t, p, "document.title"); title != "Who sent this traffic? Testbed, PlanetLab Europe" {
		t.Errorf("title %q: a script ran", title)
	}
	if n := mustEval[int](ctx, t, p, `document.querySelectorAll("#ran, #injected, #img, script").length`); n != 0 {
		t.Errorf("%d elements from hostile strings", n)
	}
	if n := mustEval[int](ctx, t, p, `[...document.links].filter(a => a.protocol === "javascript:").length`); n != 0 {
		t.Errorf("%d javascript: links", n)
	}
	// The report link of codeen carries the slice and the flows' times.
	reports := mustEval[[]string](ctx, t, p, `[...document.querySelectorAll(".report a")].map(a => a.href)`)
	if len(reports) != 3 {
		t.Fatalf("report links %q, want one per source", reports)
	}
	u, err := url.Parse(reports[0])
	if err != nil || u.Scheme != "mailto" {
		t.Fatalf("report link %q", reports[0])
	}
	v, _ := url.ParseQuery(u.RawQuery)
	if !strings.Contains(v.Get("subject"), "slice plc.princeton.codeen") || !strings.Contains(v.Get("body"), "- 2025-03-01 12:59:00 Europe/Paris TCP 10.244.1.5:40000 -> 198.51.100.7:443") ||
		!strings.Contains(v.Get("body"), "- 2025-03-01 12:59:10 Europe/Paris TCP 10.244.2.9:41000") {
		t.Errorf("report of codeen: subject %q, body %q", v.Get("subject"), v.Get("body"))
	}
	// The stylesheet applied: the CSP allowed it by its hash.
	if d := mustEval[string](ctx, t, p, `getComputedStyle(document.querySelector("form")).display`); d != "grid" {
		t.Errorf("the form's display is %q, not the stylesheet's grid: the CSP refused the style", d)
	}
	// Every input has one label, and the flows' table a caption.
	if ok := mustEval[bool](ctx, t, p, `[...document.querySelectorAll("input")].every(i => i.labels.length === 1 && i.labels[0].textContent.trim() !== "")`); !ok {
		t.Error("an input without its label")
	}
	screenshotNotBlank(ctx, t, p)
}

// TestPageInChromiumCoverage: no flows, and no node agents, each said in
// words.
func TestPageInChromiumCoverage(t *testing.T) {
	ctx, p := browserPage(t, 1280, 900, false)
	none := pageServer(t, nil, 3)
	if err := p.Navigate(ctx, none.URL+"/?ip=198.51.100.7&time=2025-03-01T12:00:00Z"); err != nil {
		t.Fatal(err)
	}
	text := visible(ctx, t, p)
	wantText(t, text, "Between 2025-03-01 11:52:30 and 12:07:30 UTC, no flow to 198.51.100.7 was recorded by the nodes that answered.",
		"2 of 3 nodes answered.", "node-z: timed out")
	if strings.Contains(text, "The flows, times in") {
		t.Errorf("a flows table without flows:\n%s", text)
	}
	nobody := pageServer(t, nil, 0)
	if err := p.Navigate(ctx, nobody.URL+"/?ip=198.51.100.7"); err != nil {
		t.Fatal(err)
	}
	text = visible(ctx, t, p)
	wantText(t, text, "No node agents were found: no node was asked, so this answer says nothing about the traffic.")
	if strings.Contains(text, "no flow to") {
		t.Errorf("no node was asked, yet the page says no flow was recorded:\n%s", text)
	}
}

// TestPageInChromiumOnAPhone: at a phone's width the page fits (nothing
// wider than the screen; the table scrolls in its own box) and the form is
// one column.
func TestPageInChromiumOnAPhone(t *testing.T) {
	ctx, p := browserPage(t, 390, 844, true)
	srv := pageServer(t, twoSlices(), 3)
	if err := p.Navigate(ctx, srv.URL+"/?ip=198.51.100.7&time=2025-03-01T12:00:00Z"); err != nil {
		t.Fatal(err)
	}
	if w := mustEval[[]int](ctx, t, p, "[document.documentElement.scrollWidth, window.innerWidth]"); w[0] > w[1] {
		t.Errorf("the page is %d px wide on a %d px screen", w[0], w[1])
	}
	if cols := mustEval[string](ctx, t, p, `getComputedStyle(document.querySelector("form")).gridTemplateColumns`); strings.Count(cols, "px") != 1 {
		t.Errorf("the form has columns %q on a phone, want one", cols)
	}
	if s := mustEval[[]int](ctx, t, p, `(e => [e.scrollWidth, e.clientWidth])(document.querySelector(".scroll"))`); s[0] <= s[1] {
		t.Logf("the table fits without scrolling (%d ≤ %d)", s[0], s[1])
	}
	screenshotNotBlank(ctx, t, p)
}

// TestPageInChromiumKeyboard: a stranger with a keyboard only fills in the
// address and the browser's date-and-time input, and submits with Enter.
func TestPageInChromiumKeyboard(t *testing.T) {
	ctx, p := browserPage(t, 1280, 900, false)
	srv := pageServer(t, twoSlices(), 3)
	if err := p.Navigate(ctx, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	var focus []string
	for range 7 {
		if err := p.Key(ctx, "Tab"); err != nil {
			t.Fatal(err)
		}
		focus = append(focus, mustEval[string](ctx, t, p, "document.activeElement.id || document.activeElement.tagName"))
	}
	// The links of the header come first, then the form in order.
	want := []string{"ip", "port", "time"}
	got := strings.Join(focus, ",")
	if !strings.Contains(got, strings.Join(want, ",")) {
		t.Fatalf("Tab goes through %v, want %v in order", focus, want)
	}
	// The browser's own value of a datetime-local input (set as a date
	// picker would) is a form the page accepts.
	if err := p.Eval(ctx, `document.getElementById("time").value = "2025-03-01T13:00:30"; document.getElementById("zone").value = "Europe/Paris"`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Eval(ctx, `document.getElementById("ip").focus()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Type(ctx, "198.51.100.7"); err != nil {
		t.Fatal(err)
	}
	if err := p.PressAndWaitLoad(ctx, "Enter"); err != nil {
		t.Fatal(err)
	}
	if q := mustEval[string](ctx, t, p, "location.search"); !strings.Contains(q, "ip=198.51.100.7") || !strings.Contains(q, "time=2025-03-01T13%3A00%3A30") {
		t.Errorf("submitted %q", q)
	}
	wantText(t, visible(ctx, t, p), "Between 2025-03-01 12:53:00 and 13:08:00 Europe/Paris, 2 flows to 198.51.100.7 came from slice plc.princeton.codeen")
}

// TestPageInChromiumTimeForms: the time forms docs/node-agent.md documents are
// accepted (the window shown says how each was read) and others are refused
// with the field named, the form filled back.
func TestPageInChromiumTimeForms(t *testing.T) {
	ctx, p := browserPage(t, 1280, 900, false)
	srv := pageServer(t, nil, 3)
	for _, c := range []struct{ time, zone, want string }{
		{"2025-03-01T13:00", "Europe/Paris", "Between 2025-03-01 12:52:30 and 13:07:30 Europe/Paris"},
		{"2025-03-01T13:00:30", "+01:00", "Between 2025-03-01 12:53:00 and 13:08:00 UTC+01:00"},
		{"2025-03-01 12:00", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"2025-03-01 13:00 +01:00", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"2025-03-01T07:00:00-05:00", "America/New_York", "Between 2025-03-01 06:52:30 and 07:07:30 America/New_York"},
		{"2025-03-01 12:00 UTC", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"1740830400", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"now", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"", "", "Between 2025-03-01 11:52:30 and 12:07:30 UTC"},
		{"2025-03-01 13:00", "PST", "zone: expected a time zone such as UTC, Europe/Paris"},
		{"2025-03-01 13:00 CET", "", "time: expected a date and time such as"},
		{"yesterday", "", "time: expected a date and time such as 2026-12-02 10:15"},
		{"2025-13-01T00:00", "", "time: expected a date and time such as"},
		{"01/03/2025 12:00", "", "time: expected a date and time such as"},
	} {
		v := url.Values{"ip": {"198.51.100.7"}, "time": {c.time}, "zone": {c.zone}}
		if err := p.Navigate(ctx, srv.URL+"/?"+v.Encode()); err != nil {
			t.Fatal(err)
		}
		text := visible(ctx, t, p)
		if !strings.Contains(text, c.want) {
			t.Errorf("time %q zone %q: the page does not show %q:\n%s", c.time, c.zone, c.want, text)
		}
		if strings.Contains(c.want, "expected") {
			if got := mustEval[string](ctx, t, p, `document.getElementById("zone").value`); got != c.zone {
				t.Errorf("time %q zone %q: the zone field was not filled back (%q)", c.time, c.zone, got)
			}
			if got := mustEval[string](ctx, t, p, `document.getElementById("error").textContent`); !strings.HasPrefix(got, c.want[:5]) {
				t.Errorf("time %q zone %q: the alert says %q", c.time, c.zone, got)
			}
		}
	}
}
