package lookup

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 999: "999 B", 1000: "1.00 kB", 1234: "1.23 kB", 9994: "9.99 kB", 9995: "10.0 kB", 99_949: "99.9 kB",
		99_950: "100 kB", 999_499: "999 kB", 999_500: "1.00 MB", 5_678_000_000: "5.68 GB", 1 << 62: "4612 PB", ^uint64(0): "18447 PB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestEndpointAndProto(t *testing.T) {
	for _, c := range []struct {
		ap          string
		proto       uint8
		want, pname string
	}{
		{"10.0.0.1:443", 6, "10.0.0.1:443", "TCP"},
		{"[2001:db8::1]:53", 17, "[2001:db8::1]:53", "UDP"},
		{"10.0.0.1:0", 1, "10.0.0.1", "ICMP"},
		{"[2001:db8::1]:0", 58, "2001:db8::1", "ICMPv6"},
		{"10.0.0.1:0", 99, "10.0.0.1", "protocol 99"},
	} {
		if got := endpoint(c.ap, c.proto); got != c.want {
			t.Errorf("endpoint(%q, %d) = %q, want %q", c.ap, c.proto, got, c.want)
		}
		if got := protoName(c.proto); got != c.pname {
			t.Errorf("protoName(%d) = %q, want %q", c.proto, got, c.pname)
		}
	}
}

func TestWindowAndRetentionWords(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	from := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		from, to time.Time
		loc      *time.Location
		want     string
	}{
		{from, from.Add(15 * time.Minute), time.UTC, "between 2026-12-02 09:00:00 and 09:15:00 UTC"},
		{from, from.Add(15 * time.Minute), paris, "between 2026-12-02 10:00:00 and 10:15:00 Europe/Paris"},
		{from.Add(13*time.Hour + 50*time.Minute), from.Add(14*time.Hour + 5*time.Minute), paris, "between 2026-12-02 23:50:00 and 2026-12-03 00:05:00 Europe/Paris"},
	} {
		if got := windowWords(c.from, c.to, c.loc); got != c.want {
			t.Errorf("windowWords = %q, want %q", got, c.want)
		}
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "1 day", 7 * 24 * time.Hour: "7 days", 36 * time.Hour: "36 hours", 90 * time.Minute: "1h30m0s"} {
		if got := durationWords(d); got != want {
			t.Errorf("durationWords(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestHoldingWords(t *testing.T) {
	from := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := from.Add(d); return &t }
	week := int64(7 * 24 * 3600)
	for _, c := range []struct {
		name string
		hs   []Holding
		self bool
		want []string
	}{
		{"none said", nil, true, nil},
		{"self, covered", []Holding{{Node: "a", RecordsSince: at(-time.Hour), RetentionSeconds: week}}, true,
			[]string{"This node keeps flow records for 7 days and holds them from 2026-12-02 08:00:00 UTC on, so they cover the whole window."}},
		{"self, starts late", []Holding{{Node: "a", RecordsSince: at(5 * time.Minute), RetentionSeconds: week}}, true,
			[]string{"This node keeps flow records for 7 days and holds them only from 2026-12-02 09:05:00 UTC, after the start of this window: it cannot tell about traffic before then."}},
		{"self, empty", []Holding{{Node: "a"}}, true, []string{"This node holds none yet, so it cannot tell about any traffic."}},
		{"nodes, covered", []Holding{{Node: "a", RecordsSince: at(-time.Hour), RetentionSeconds: week}, {Node: "b", RecordsSince: at(-2 * time.Hour), RetentionSeconds: week}}, false,
			[]string{"The nodes that answered keep flow records for 7 days.", "Every node that answered holds records for the whole window."}},
		{"nodes, some late", []Holding{{Node: "a", RecordsSince: at(-time.Hour), RetentionSeconds: 86400}, {Node: "b", RecordsSince: at(time.Minute), RetentionSeconds: week}, {Node: "c"}}, false,
			[]string{"The nodes that answered keep flow records for 1 day to 7 days.",
				"2 node(s) hold no records for the start of this window, so their earlier traffic is not known: b (from 2026-12-02 09:01:00), c (no records yet)."}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := holdingWords(c.hs, from, time.UTC, c.self); !slices.Equal(got, c.want) {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestAnswerInWords: the page answers in a sentence per slice with its
// people, in the zone asked, and a report link that carries the slice and
// the flows' times.
func TestAnswerInWords(t *testing.T) {
	r := recs()
	two := r[0]
	two.Start, two.Orig.Src = now.Add(-20*time.Second), netip.MustParseAddrPort("10.244.1.6:40001")
	other := r[0]
	other.Slice, other.Start = "plc.mit.measure", now.Add(-10*time.Second)
	d := fakeDir{
		"plc.princeton.codeen": {FullName: "plc.princeton.codeen", Description: "CoDeeN, a content distribution network", URL: "https://codeen.example/",
			Contacts: []string{"llp@princeton.example", "tech@princeton.example", "princeton-ops"}, PIs: []string{"llp@princeton.example"},
			Techs: []string{"tech@princeton.example", "princeton-ops"}, Site: "Princeton University", SiteURL: "https://princeton.example/"},
	}
	op := Operator{Name: "PlanetLab Europe", AbuseContact: "abuse@planet-lab.eu"}
	h := NewHandler(&fakeStore{recs: []flow.Record{r[0], r[1], two, other}}, d, Options{NodeName: "node-a", Operator: op, Now: func() time.Time { return now }})
	w := do(h, "GET", "/?ip=198.51.100.7&time=2025-03-01T13:00&zone=Europe/Paris&window=10")
	if w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{
		`4 flows to 198.51.100.7 came from 3 sources, each told below.`,
		`Between 2025-03-01 12:55:00 and 13:05:00 Europe/Paris, 2 flows to 198.51.100.7 came from slice <strong>plc.princeton.codeen</strong> (CoDeeN, a content distribution network, <a href="https://codeen.example/" rel="noopener noreferrer">https://codeen.example/</a>), seen by node-a.`,
		`Responsible: llp@princeton.example (principal investigator); tech@princeton.example, princeton-ops (technical contacts), of site Princeton University (<a href="https://princeton.example/" rel="noopener noreferrer">https://princeton.example/</a>).`,
		`came from slice <strong>plc.mit.measure</strong>, seen by node-a.`,
		`This testbed does not know this slice now`,
		`came from the node itself, not from a slice, seen by node-a. The testbed's operator is responsible for it.`,
		`<caption id="flows-caption">The flows, times in Europe/Paris</caption>`,
		`<time datetime="2025-03-01T11:59:00Z">2025-03-01 12:59:00</time>`,
		`Report this traffic</a> by e-mail to abuse@planet-lab.eu: the message names the slice and the flows' times.`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Count(body, `class="slice"`)+strings.Count(body, `class="slice node-traffic"`) != 3 {
		t.Errorf("want 3 groups:\n%s", body)
	}
	// The slice with the most flows comes first, the node's own traffic last.
	if i, j, k := strings.Index(body, "Slice plc.princeton.codeen"), strings.Index(body, "Slice plc.mit.measure"), strings.Index(body, "The node itself"); i < 0 || j < i || k < j {
		t.Errorf("groups out of order: %d %d %d", i, j, k)
	}

	// The report link of codeen: to the operator, copying its e-mail contacts.
	a := NewHandler(&fakeStore{recs: []flow.Record{r[0], two}}, d, Options{NodeName: "node-a", Operator: op, Now: func() time.Time { return now }}).(*handler)
	form, q, err := a.parse("ip=198.51.100.7&port=443&time=2025-03-01T13:00&zone=Europe/Paris", false)
	if err != nil {
		t.Fatal(err)
	}
	rows := []Row{a.row(r[0]), a.row(two)}
	for i := range rows {
		rows[i].Node = "node-a"
	}
	ans := a.answer(form, q, rows, nil, nil)
	if len(ans.Groups) != 1 {
		t.Fatalf("groups %+v", ans.Groups)
	}
	g := ans.Groups[0]
	u, err := url.Parse(g.ReportHref)
	if err != nil || u.Scheme != "mailto" || u.Opaque != "abuse%40planet-lab.eu" || g.ReportTo != "abuse@planet-lab.eu" {
		t.Fatalf("report link %q (%v), to %q", g.ReportHref, err, g.ReportTo)
	}
	if strings.Contains(g.ReportHref, "+") {
		t.Errorf("spaces as + in a mailto link: %s", g.ReportHref)
	}
	v, _ := url.ParseQuery(u.RawQuery)
	wantBody := "Between 2025-03-01 12:52:30 and 13:07:30 Europe/Paris, these flows to 198.51.100.7 port 443 came from slice plc.princeton.codeen, seen by node node-a:\n\n" +
		"- 2025-03-01 12:59:00 Europe/Paris TCP 10.244.1.5:40000 -> 198.51.100.7:443, 1.23 kB sent, 5.68 kB received\n" +
		"- 2025-03-01 12:59:40 Europe/Paris TCP 10.244.1.6:40001 -> 198.51.100.7:443, 1.23 kB sent, 5.68 kB received\n"
	if v.Get("cc") != "llp@princeton.example,tech@princeton.example" || v.Get("subject") != "Unwanted traffic to 198.51.100.7 from slice plc.princeton.codeen" || v.Get("body") != wantBody {
		t.Errorf("report fields:\ncc %q\nsubject %q\nbody %q\nwant %q", v.Get("cc"), v.Get("subject"), v.Get("body"), wantBody)
	}

	// Without an operator address, the report goes to the slice's contacts;
	// without any address, there is no link.
	a.opt.Operator = Operator{}
	if g := a.answer(form, q, rows, nil, nil).Groups[0]; g.ReportTo != "llp@princeton.example" || !strings.Contains(g.ReportHref, "cc=tech%40princeton.example&") {
		t.Errorf("report to the slice's contacts: %q %q", g.ReportTo, g.ReportHref)
	}
	a.dir = fakeDir{}
	if g := a.answer(form, q, rows, nil, nil).Groups[0]; g.ReportHref != "" || g.ReportTo != "" {
		t.Errorf("a report link with no address: %q", g.ReportHref)
	}

	// Many flows: the body lists the first ones and says how many more.
	many := make([]Row, 25)
	for i := range many {
		many[i] = rows[0]
	}
	a.opt.Operator = op
	if g := a.answer(form, q, many, nil, nil).Groups[0]; !strings.Contains(g.ReportHref, "and%205%20more") || strings.Count(g.ReportHref, "10.244.1.5") != maxReportFlows {
		t.Errorf("a report of 25 flows: %s", g.ReportHref)
	}
}

// TestPortAndHoldings: the port reaches the store and must come with an
// address; an agent says how far back its records go, in the API and on the
// page.
func TestPortAndHoldings(t *testing.T) {
	s := &fakeStore{recs: recs()[:1]}
	oldest := now.Add(-3 * time.Minute)
	h := newH(s, Options{NodeName: "node-a", Retention: 7 * 24 * time.Hour, Oldest: func() time.Time { return oldest }})
	w := do(h, "GET", "/api/v1/flows?ip=198.51.100.7&port=443")
	if w.Code != 200 {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	if got := s.calls(); len(got) != 1 || got[0].Port != 443 {
		t.Fatalf("queries %+v", got)
	}
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Nodes) != 1 || resp.Nodes[0].Node != "node-a" || resp.Nodes[0].RetentionSeconds != 604800 || !resp.Nodes[0].RecordsSince.Equal(oldest) {
		t.Errorf("nodes %+v", resp.Nodes)
	}
	body := do(h, "GET", "/?ip=198.51.100.7&port=443").Body.String()
	for _, want := range []string{"1 flow to 198.51.100.7 port 443 came from slice",
		"This node keeps flow records for 7 days and holds them only from 2025-03-01 11:57:00 UTC, after the start of this window: it cannot tell about traffic before then."} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	for q, want := range map[string]string{
		"ip=198.51.100.7&port=0":             "port: expected a number from 1 to 65535",
		"ip=198.51.100.7&port=65536":         "port: expected a number from 1 to 65535",
		"ip=198.51.100.7&port=https":         "port: expected a number from 1 to 65535",
		"ip=198.51.100.7&port=-1":            "port: expected a number from 1 to 65535",
		"slice=plc.princeton.codeen&port=80": "port: give the address (ip) the port is on",
	} {
		w := do(h, "GET", "/api/v1/flows?"+q)
		if w.Code != 400 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s, want 400 %q", q, w.Code, w.Body, want)
		}
	}
	if n := len(s.calls()); n != 2 {
		t.Errorf("%d store calls; bad ports must not reach the store", n)
	}
}

// TestOpenAPIMatchesTheTypes: the document served at /api/v1/openapi.json is
// JSON, names every query parameter the handler reads, and lists exactly
// the JSON fields of the answer's types.
func TestOpenAPIMatchesTheTypes(t *testing.T) {
	w := do(newH(&fakeStore{}, Options{}), "GET", openAPIPath)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("code %d, %q", w.Code, w.Header().Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]struct {
			Get struct {
				Parameters []struct{ Name, In string } `json:"parameters"`
			} `json:"get"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var params []string
	for _, p := range doc.Paths[apiPath].Get.Parameters {
		if p.In == "query" {
			params = append(params, p.Name)
		}
	}
	slices.Sort(params)
	if want := []string{"from", "ip", "port", "slice", "time", "to", "window", "zone"}; !slices.Equal(params, want) {
		t.Errorf("parameters %q, want %q", params, want)
	}
	for name, typ := range map[string]any{"Response": Response{}, "Row": Row{}, "NodeError": NodeError{}, "Holding": Holding{}, "ErrorResponse": ErrorResponse{}} {
		var fields, documented []string
		rt := reflect.TypeOf(typ)
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, tag)
		}
		for p := range doc.Components.Schemas[name].Properties {
			documented = append(documented, p)
		}
		slices.Sort(fields)
		slices.Sort(documented)
		if !slices.Equal(fields, documented) {
			t.Errorf("%s: fields %q, documented %q", name, fields, documented)
		}
	}
}

// TestArchiveOnThePage: flows the archive answered for are marked, the
// archive's holdings are told, and an archive that did not answer is said.
func TestArchiveOnThePage(t *testing.T) {
	r := recs()
	r[0].Node, r[0].Source = "node-a", flow.SourceArchive
	r[1].Node = "node-b"
	since, old := now.Add(-time.Hour), now.Add(-40*24*time.Hour)
	s := &partialStore{res: Partial{Records: r, Asked: 1, ArchiveAsked: true,
		Holdings: []Holding{{Node: "node-b", RecordsSince: &since, RetentionSeconds: 604800}, {Node: "node-a", RecordsSince: &old, RetentionSeconds: 90 * 86400, Source: flow.SourceArchive}}}}
	body := do(newH(s, Options{}), "GET", "/?ip=198.51.100.7").Body.String()
	for _, want := range []string{
		`came from slice <strong>plc.princeton.codeen</strong> (CoDeeN CDN, <a href="https://codeen.example/" rel="noopener noreferrer">https://codeen.example/</a>), seen by node-a (1 told by the install's archive).`,
		"1 of 1 nodes answered; the install's archive answered too.",
		"The install&#39;s archive holds the records of 1 node(s), kept for 90 days, back to 2025-01-20 12:00:00 UTC.",
		"Every node that answered holds records for the whole window.",
		`<th scope="col">Source</th>`, "<td>node-a</td><td>archive</td>", "<td>node-b</td><td>node</td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if b := do(newH(s, Options{}), "GET", "/api/v1/flows?ip=198.51.100.7").Body.String(); !strings.Contains(b, `"source":"archive"`) {
		t.Errorf("API without the source: %s", b)
	}
	s.res.ArchiveError, s.res.Records[0].Source = "timed out", ""
	body = do(newH(s, Options{}), "GET", "/?ip=198.51.100.7").Body.String()
	if !strings.Contains(body, "The install's archive did not answer (timed out): flows the nodes no longer hold are missing.") || strings.Contains(body, `<th scope="col">Source</th>`) {
		t.Errorf("an archive that did not answer:\n%s", body)
	}
	if b := do(newH(s, Options{}), "GET", "/api/v1/flows?ip=198.51.100.7").Body.String(); !strings.Contains(b, `"archive_error":"timed out"`) {
		t.Errorf("API without the archive's error: %s", b)
	}
}
