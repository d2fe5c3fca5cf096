package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/lookup"
)

var (
	t0  = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	dst = netip.MustParseAddr("198.51.100.7")
)

// memStore is a test double for a node's flow store (internal/flow/store):
// it answers from memory, with the store's semantics (overlap of the
// window, ordered by start, at most Limit).
type memStore struct {
	mu    sync.Mutex
	recs  []flow.Record
	calls int
}

func (m *memStore) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *memStore) Query(_ context.Context, q flow.Query) ([]flow.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	var out []flow.Record
	for _, r := range m.recs {
		if q.Dst.IsValid() && r.Orig.Dst.Addr() != q.Dst || q.Slice != "" && r.Slice != q.Slice ||
			!r.Start.Before(q.To) || !r.End.IsZero() && r.End.Before(q.From) {
			continue
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	return out[:min(len(out), q.Limit)], nil
}

// rec is a flow to dst:443 of slice, starting at t0+at and lasting a second.
func rec(at time.Duration, slice string, bytes uint64) flow.Record {
	return flow.Record{
		Start: t0.Add(at), End: t0.Add(at + time.Second), Proto: 6,
		Orig:      flow.Tuple{Src: netip.MustParseAddrPort("10.244.1.5:40000"), Dst: netip.AddrPortFrom(dst, 443)},
		Reply:     flow.Tuple{Src: netip.AddrPortFrom(dst, 443), Dst: netip.MustParseAddrPort("192.0.2.10:40000")},
		OrigBytes: bytes, ReplyBytes: 2 * bytes, Slice: slice, Sliver: "ns/pod", PodUID: "uid",
	}
}

// agent serves a node's lookup API over recs, as the node agent does.
func agent(t *testing.T, node string, maxResults int, recs ...flow.Record) (*httptest.Server, *memStore) {
	t.Helper()
	s := &memStore{recs: recs}
	srv := httptest.NewServer(lookup.NewHandler(s, nil, lookup.Options{
		NodeName: node, MaxResults: maxResults, RatePerSecond: 1e6, Burst: 1 << 20,
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

// serve starts a server with handler h, counting its requests.
func serve(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// slowAgent answers nothing until the request is canceled.
func slowAgent(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	release := make(chan struct{})
	srv, n := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, n
}

func jsonAgent(t *testing.T, code int, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	return serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	})
}

func dstQuery(limit int) flow.Query {
	return flow.Query{Dst: dst, From: t0.Add(-time.Hour), To: t0.Add(time.Hour), Limit: limit}
}

type got struct {
	node  string
	at    time.Duration
	bytes uint64
}

func summary(recs []flow.Record) []got {
	out := make([]got, len(recs))
	for i, r := range recs {
		out[i] = got{r.Node, r.Start.Sub(t0), r.OrigBytes}
	}
	return out
}

func TestMergeAndPartialFailure(t *testing.T) {
	a, _ := agent(t, "agent-says-a", 100, rec(2*time.Second, "plc.a", 3), rec(0, "plc.a", 1), rec(5*time.Second, "plc.a", 6))
	b, _ := agent(t, "agent-says-b", 100, rec(0, "plc.b", 2), rec(4*time.Second, "plc.b", 5),
		rec(-2*time.Hour, "plc.b", 99)) // outside the window
	slow, _ := slowAgent(t)
	garbage, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"flows":[{"start":"2025-03-01T12:00:00Z", garbage`))
	})
	s := fanout.New(fanout.StaticTargets(
		fanout.Target{Node: "node-b", URL: b.URL},
		fanout.Target{Node: "node-slow", URL: slow.URL},
		fanout.Target{Node: "node-a", URL: a.URL},
		fanout.Target{Node: "node-garbage", URL: garbage.URL + "/"},
	), fanout.Options{Timeout: 300 * time.Millisecond})

	start := time.Now()
	res, err := s.QueryPartial(context.Background(), dstQuery(100))
	if err != nil {
		t.Fatal(err)
	}
	if res.Asked != 4 {
		t.Errorf("Asked = %d, want the 4 nodes", res.Asked)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v: the slow node was not bounded", el)
	}
	want := []got{{"node-a", 0, 1}, {"node-b", 0, 2}, {"node-a", 2 * time.Second, 3}, {"node-b", 4 * time.Second, 5}, {"node-a", 5 * time.Second, 6}}
	if g := summary(res.Records); !slices.Equal(g, want) {
		t.Errorf("records %v\nwant %v", g, want)
	}
	if res.Truncated {
		t.Error("truncated")
	}
	wantErr := []lookup.NodeError{{Node: "node-slow", Error: "timed out"}, {Node: "node-garbage", Error: "bad response: malformed JSON"}}
	if !slices.Equal(res.Errors, wantErr) {
		t.Errorf("errors %+v\nwant %+v", res.Errors, wantErr)
	}
	r0 := res.Records[0]
	if r0.Slice != "plc.a" || r0.Sliver != "ns/pod" || r0.PodUID != "uid" || r0.ReplyBytes != 2 || r0.Proto != 6 ||
		r0.Orig.Src != netip.MustParseAddrPort("10.244.1.5:40000") || r0.Reply.Dst != netip.MustParseAddrPort("192.0.2.10:40000") ||
		!r0.End.Equal(t0.Add(time.Second)) {
		t.Errorf("record 0 %+v", r0)
	}

	// The limit applies to the merge.
	res, err = s.QueryPartial(context.Background(), dstQuery(3))
	if err != nil || len(res.Records) != 3 || !res.Truncated || res.Records[2].OrigBytes != 3 || len(res.Errors) != 2 {
		t.Errorf("limit 3: %v %v truncated %v errors %v", err, summary(res.Records), res.Truncated, res.Errors)
	}
	// The Store method gives the records of the nodes that answered.
	recs, err := s.Query(context.Background(), dstQuery(100))
	if err != nil || len(recs) != 5 {
		t.Errorf("Query: %v %v", err, summary(recs))
	}
}

func TestAgentTruncation(t *testing.T) {
	// Node a bounds its answer to 2 records: past its second (at 2s), its
	// flows are unknown, so the merge stops there and says it is truncated.
	a, _ := agent(t, "a", 2, rec(0, "plc.a", 1), rec(2*time.Second, "plc.a", 3), rec(3*time.Second, "plc.a", 4))
	b, _ := agent(t, "b", 100, rec(time.Second, "plc.b", 2), rec(2*time.Second, "plc.b", 33), rec(5*time.Second, "plc.b", 6))
	s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "a", URL: a.URL}, fanout.Target{Node: "b", URL: b.URL}), fanout.Options{})
	res, err := s.QueryPartial(context.Background(), dstQuery(100))
	if err != nil {
		t.Fatal(err)
	}
	want := []got{{"a", 0, 1}, {"b", time.Second, 2}, {"a", 2 * time.Second, 3}}
	if g := summary(res.Records); !slices.Equal(g, want) || !res.Truncated || len(res.Errors) != 0 {
		t.Errorf("records %v truncated %v errors %v\nwant %v", g, res.Truncated, res.Errors, want)
	}
}

func TestAllFail(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	busy, _ := jsonAgent(t, 429, `{"error":"too many requests"}`)
	s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "dead", URL: dead.URL}, fanout.Target{Node: "busy", URL: busy.URL}), fanout.Options{})
	res, err := s.QueryPartial(context.Background(), dstQuery(10))
	if !errors.Is(err, fanout.ErrNoAnswer) {
		t.Fatalf("err %v", err)
	}
	want := []lookup.NodeError{{Node: "dead", Error: "connection refused"}, {Node: "busy", Error: "HTTP 429: too many requests"}}
	if !slices.Equal(res.Errors, want) || len(res.Records) != 0 {
		t.Errorf("errors %+v\nwant %+v", res.Errors, want)
	}
	if _, err := s.Query(context.Background(), dstQuery(10)); !errors.Is(err, fanout.ErrNoAnswer) {
		t.Errorf("Query: %v", err)
	}
	// No node at all is no error.
	res, err = fanout.New(fanout.StaticTargets(), fanout.Options{}).QueryPartial(context.Background(), dstQuery(10))
	if err != nil || len(res.Records) != 0 || len(res.Errors) != 0 || res.Asked != 0 {
		t.Errorf("no target: %v %+v", err, res)
	}
	// Nor does a failed listing of the nodes pass for an answer.
	_, err = fanout.New(func(context.Context) ([]fanout.Target, error) { return nil, errors.New("forbidden") }, fanout.Options{}).
		QueryPartial(context.Background(), dstQuery(10))
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("listing error: %v", err)
	}
}

func TestUntrustedAnswers(t *testing.T) {
	row := func(mod func(m map[string]any)) string {
		m := map[string]any{
			"start": "2025-03-01T12:00:00Z", "proto": 6, "orig_src": "10.0.0.1:1", "orig_dst": "198.51.100.7:443",
			"reply_src": "198.51.100.7:443", "reply_dst": "192.0.2.1:1", "slice": "plc.a",
		}
		mod(m)
		b, _ := json.Marshal(map[string]any{"flows": []any{m}, "truncated": false})
		return string(b)
	}
	withNodes := func(nodes string) string { return `{"flows":[],"truncated":false,"nodes":` + nodes + `}` }
	big := `{"flows":[],"x":"` + strings.Repeat("a", 2000) + `"}`
	redirect, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
	})
	html, _ := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"flows":[]}`)) })
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"good", row(func(map[string]any) {}), 200, ""},
		{"too big", big, 200, "bad response: larger than 1024 bytes"},
		{"not JSON", "<html>", 200, "bad response: malformed JSON"},
		{"trailing data", `{"flows":[]} {}`, 200, "bad response: malformed JSON"},
		{"no flows", `{"error":"x"}`, 200, "bad response: no flows"},
		{"proto out of range", row(func(m map[string]any) { m["proto"] = 256 }), 200, "bad response: malformed JSON"},
		{"bad address", row(func(m map[string]any) { m["orig_src"] = "evil" }), 200, "bad response: flow 0: invalid address"},
		{"zone", row(func(m map[string]any) { m["reply_dst"] = "[fe80::1%eth0]:1" }), 200, "bad response: flow 0: invalid address"},
		{"other destination", row(func(m map[string]any) { m["orig_dst"] = "203.0.113.9:443" }), 200, "bad response: flow 0: destination not the one asked"},
		{"records since year 0", withNodes(`[{"node":"n","records_since":"0000-01-01T00:00:00Z"}]`), 200, "bad response: invalid records_since or retention_seconds"},
		{"negative retention", withNodes(`[{"node":"n","retention_seconds":-1}]`), 200, "bad response: invalid records_since or retention_seconds"},
		{"retention not a number", withNodes(`[{"node":"n","retention_seconds":"7d"}]`), 200, "bad response: malformed JSON"},
		{"outside window", row(func(m map[string]any) { m["start"] = "2025-03-01T14:00:00Z" }), 200, "bad response: flow 0: outside the window asked"},
		{"end before start", row(func(m map[string]any) { m["end"] = "2025-03-01T11:00:00Z" }), 200, "bad response: flow 0: invalid end"},
		{"year 0", row(func(m map[string]any) { m["start"] = "0000-01-01T00:00:00Z" }), 200, "bad response: flow 0: invalid start"},
		{"bad slice", row(func(m map[string]any) { m["slice"] = "<script>" }), 200, "bad response: flow 0: invalid slice name"},
		{"control chars", row(func(m map[string]any) { m["sliver"] = "a\x1b[2Jb" }), 200, "bad response: flow 0: invalid sliver"},
		{"agent error", `{"error":"window longer than 1h0m0s\u001b` + strings.Repeat("x", 300) + `"}`, 400, "HTTP 400: window longer than 1h0m0s" + strings.Repeat("x", 200-len("window longer than 1h0m0s")) + "…"},
		{"server error", `oops`, 500, "HTTP 500"},
	} {
		srv, _ := jsonAgent(t, c.code, c.body)
		s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "n", URL: srv.URL}), fanout.Options{MaxBody: 1024})
		res, err := s.QueryPartial(context.Background(), dstQuery(10))
		switch {
		case c.want == "" && (err != nil || len(res.Records) != 1 || res.Records[0].Node != "n"):
			t.Errorf("%s: %v %+v", c.name, err, res)
		case c.want != "" && (err == nil || len(res.Errors) != 1 || res.Errors[0].Error != c.want):
			t.Errorf("%s: %v %+v, want error %q", c.name, err, res.Errors, c.want)
		}
	}
	for _, c := range []struct{ url, want string }{
		{redirect.URL, "HTTP 302"},
		{html.URL, "bad response: not JSON"},
		{"ftp://192.0.2.1/", "invalid agent URL"},
		{"http://user:pw@192.0.2.1/", "invalid agent URL"},
		{html.URL + "/?x=1", "invalid agent URL"},
	} {
		s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "n", URL: c.url}), fanout.Options{})
		res, _ := s.QueryPartial(context.Background(), dstQuery(10))
		if len(res.Errors) != 1 || res.Errors[0].Error != c.want {
			t.Errorf("%s: %+v, want %q", c.url, res.Errors, c.want)
		}
	}
}

func TestQueryParameters(t *testing.T) {
	var gotQuery atomic.Pointer[url.Values]
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		gotQuery.Store(&v)
		if r.URL.Path != "/base/api/v1/flows" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"flows":[],"truncated":false}`))
	})
	s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "n", URL: srv.URL + "/base"}), fanout.Options{})
	q := flow.Query{Dst: dst, Slice: "plc.a", From: t0.Add(123 * time.Nanosecond), To: t0.Add(time.Hour).In(time.FixedZone("x", 3600)), Limit: 5}
	if _, err := s.QueryPartial(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	v := *gotQuery.Load()
	if v.Get("ip") != "198.51.100.7" || v.Get("slice") != "plc.a" || v.Get("from") != "2025-03-01T12:00:00.000000123Z" || v.Get("to") != "2025-03-01T13:00:00Z" || len(v) != 4 {
		t.Errorf("query %v", v)
	}
	q.Port = 443
	if _, err := s.QueryPartial(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if v := *gotQuery.Load(); v.Get("port") != "443" || len(v) != 5 {
		t.Errorf("query with a port %v", v)
	}
}

// TestPortAndHoldings: a port reaches the agents, a flow to another port is
// refused as not the one asked, and each agent's holding comes back under
// the name the manager knows the node by.
func TestPortAndHoldings(t *testing.T) {
	other := rec(2*time.Second, "plc.a", 1)
	other.Orig.Dst = netip.AddrPortFrom(dst, 80)
	since := t0.Add(-time.Hour)
	s := &memStore{recs: []flow.Record{rec(time.Second, "plc.a", 1), other}}
	good := httptest.NewServer(lookup.NewHandler(portStore{s}, nil, lookup.Options{NodeName: "claims-another-name", RatePerSecond: 1e6, Burst: 1 << 20,
		Retention: 7 * 24 * time.Hour, Oldest: func() time.Time { return since }}))
	t.Cleanup(good.Close)
	// This agent ignores the port and answers every flow to the address.
	sloppy, _ := agent(t, "b", 10, rec(time.Second, "plc.a", 1), other)
	f := fanout.New(fanout.StaticTargets(fanout.Target{Node: "a", URL: good.URL}, fanout.Target{Node: "b", URL: sloppy.URL}), fanout.Options{})
	q := dstQuery(10)
	q.Port = 443
	res, err := f.QueryPartial(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 || res.Records[0].Orig.Dst.Port() != 443 || res.Records[0].Node != "a" {
		t.Errorf("records %+v", res.Records)
	}
	if len(res.Errors) != 1 || res.Errors[0].Node != "b" || res.Errors[0].Error != "bad response: flow 1: destination not the one asked" {
		t.Errorf("errors %+v", res.Errors)
	}
	if len(res.Holdings) != 1 || res.Holdings[0].Node != "a" || !res.Holdings[0].RecordsSince.Equal(since) || res.Holdings[0].RetentionSeconds != 7*24*3600 {
		t.Errorf("holdings %+v", res.Holdings)
	}
}

// portStore is a memStore that keeps the port asked, as the node's store
// does.
type portStore struct{ *memStore }

func (p portStore) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	recs, err := p.memStore.Query(ctx, q)
	return slices.DeleteFunc(recs, func(r flow.Record) bool { return q.Port != 0 && r.Orig.Dst.Port() != q.Port }), err
}

func TestBoundedConcurrency(t *testing.T) {
	const n, max = 10, 3
	var cur, peak atomic.Int32
	release, stop := make(chan struct{}), make(chan struct{})
	srv, hits := serve(t, func(w http.ResponseWriter, r *http.Request) {
		c := cur.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		select {
		case <-release:
		case <-stop:
		}
		cur.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"flows":[]}`))
	})
	t.Cleanup(func() { close(stop) }) // on failure, before srv.Close
	var ts []fanout.Target
	for i := range n {
		ts = append(ts, fanout.Target{Node: string(rune('a' + i)), URL: srv.URL})
	}
	s := fanout.New(fanout.StaticTargets(ts...), fanout.Options{MaxInFlight: max, Timeout: 20 * time.Second})
	done := make(chan lookup.Partial)
	go func() {
		res, _ := s.QueryPartial(context.Background(), dstQuery(10))
		done <- res
	}()
	deadline := time.Now().Add(10 * time.Second)
	for released := 0; released < n; released++ {
		// Wait until as many requests are in flight as allowed, then let one go.
		want := int32(min(max, n-released))
		for cur.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d in flight, want %d (released %d)", cur.Load(), want, released)
			}
			time.Sleep(time.Millisecond)
		}
		release <- struct{}{}
	}
	res := <-done
	if peak.Load() != max || hits.Load() != n || len(res.Errors) != 0 {
		t.Errorf("peak %d hits %d errors %v", peak.Load(), hits.Load(), res.Errors)
	}
}

// dirDouble is a test double for the manager's slice directory.
type dirDouble map[string]lookup.SliceInfo

func (d dirDouble) Slice(n string) (lookup.SliceInfo, bool) { i, ok := d[n]; return i, ok }

func TestManagerHandler(t *testing.T) {
	a, aStore := agent(t, "a", 100, rec(0, "plc.a", 1))
	b, bStore := agent(t, "b", 100, rec(time.Second, "plc.a", 2))
	garbage, gHits := jsonAgent(t, 200, `[`)
	var listed atomic.Int32
	targets := func(context.Context) ([]fanout.Target, error) {
		listed.Add(1)
		return []fanout.Target{{Node: "a", URL: a.URL}, {Node: "b", URL: b.URL}, {Node: "g", URL: garbage.URL}}, nil
	}
	h := lookup.NewHandler(fanout.New(targets, fanout.Options{}),
		dirDouble{"plc.a": {FullName: "plc.a", Description: "Slice A"}},
		lookup.Options{RatePerSecond: 1e6, Burst: 1 << 20, Now: func() time.Time { return t0 }})
	mgr := httptest.NewServer(h)
	t.Cleanup(mgr.Close)
	get := func(path string) (int, string) {
		resp, err := http.Get(mgr.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		_, _ = io.Copy(&sb, resp.Body)
		return resp.StatusCode, sb.String()
	}

	code, body := get("/api/v1/flows?ip=198.51.100.7")
	var resp lookup.Response
	if err := json.Unmarshal([]byte(body), &resp); err != nil || code != 200 {
		t.Fatalf("%d %v %s", code, err, body)
	}
	if len(resp.Flows) != 2 || resp.Flows[0].Node != "a" || resp.Flows[1].Node != "b" || resp.Flows[0].Description != "Slice A" ||
		len(resp.Errors) != 1 || resp.Errors[0] != (lookup.NodeError{Node: "g", Error: "bad response: malformed JSON"}) {
		t.Errorf("response %s", body)
	}
	code, body = get("/?ip=198.51.100.7")
	for _, want := range []string{`<th scope="col">Node</th>`, "<td>a</td>", "<td>b</td>", `id="node-errors"`, "bad response: malformed JSON", "Slice A"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("page (%d) lacks %q", code, want)
		}
	}

	before := [...]int32{listed.Load(), gHits.Load()}
	aCalls, bCalls := aStore.Calls(), bStore.Calls()
	for _, q := range []string{"ip=300.1.1.1", "ip=1.2.3.4&window=25h", "slice=%3Cscript%3E", "ip=1.2.3.4&ip=5.6.7.8", "", "time=x",
		"ip=1.2.3.4&from=2025-03-01T10:00:00Z&to=2025-03-01T09:00:00Z", "ip=" + strings.Repeat("1", 3000)} {
		for _, p := range []string{"/api/v1/flows?", "/?"} {
			if p == "/?" && q == "" {
				continue
			}
			if code, body := get(p + q); code != 400 {
				t.Errorf("%s%.40s: %d %.200s", p, q, code, body)
			}
		}
	}
	if after := [...]int32{listed.Load(), gHits.Load()}; after != before || aStore.Calls() != aCalls || bStore.Calls() != bCalls {
		t.Errorf("bad queries reached the nodes: listed %v→%v", before, after)
	}
}

// archiveDouble answers as the install's archive does (internal/flow/archive's
// Reader): records of several nodes, each with its node, and a holding per
// node.
type archiveDouble struct {
	memStore
	holdings []lookup.Holding
}

func (a *archiveDouble) QueryPartial(ctx context.Context, q flow.Query) (lookup.Partial, error) {
	recs, err := a.memStore.Query(ctx, q)
	return lookup.Partial{Records: recs, Asked: len(a.holdings), Holdings: a.holdings}, err
}

// TestArchive: the archive is asked with the nodes; its records keep their
// node and say they are the archive's; a flow a node still holds is the
// node's, once; the archive's holdings come back as its; an archive that
// does not answer is said, and answers when no node does.
func TestArchive(t *testing.T) {
	live := rec(10*time.Second, "plc.a", 1)
	live.Node = "node-a"
	old := rec(-20*time.Minute, "plc.a", 2)
	old.Node = "node-a"
	gone := rec(5*time.Second, "plc.b", 3)
	gone.Node = "node-z" // a node reinstalled, or deleted
	since := t0.Add(-30 * 24 * time.Hour)
	arch := &archiveDouble{memStore: memStore{recs: []flow.Record{old, live, gone}},
		holdings: []lookup.Holding{{Node: "node-a", RecordsSince: &since, RetentionSeconds: 90 * 86400}, {Node: "node-z", RecordsSince: &since}}}
	archSrv := httptest.NewServer(lookup.NewHandler(arch, nil, lookup.Options{RatePerSecond: 1e6, Burst: 1 << 20}))
	defer archSrv.Close()
	a, _ := agent(t, "node-a", 100, rec(10*time.Second, "plc.a", 1))
	q := dstQuery(100)
	q.From = t0.Add(-time.Hour)
	s := fanout.New(fanout.StaticTargets(fanout.Target{Node: "node-a", URL: a.URL}), fanout.Options{Archive: archSrv.URL})
	res, err := s.QueryPartial(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Records {
		got = append(got, fmt.Sprintf("%s %s %d", r.Node, r.Source, r.OrigBytes))
	}
	if want := []string{"node-a archive 2", "node-z archive 3", "node-a  1"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if !res.ArchiveAsked || res.ArchiveError != "" || res.Asked != 1 || len(res.Errors) != 0 {
		t.Errorf("coverage %+v", res)
	}
	var sources []string
	for _, h := range res.Holdings {
		sources = append(sources, h.Node+":"+h.Source)
	}
	if want := []string{"node-a:archive", "node-z:archive"}; !slices.Equal(sources, want) {
		t.Errorf("holdings %q, want %q (the agent here says none)", sources, want)
	}

	// An archive that does not answer is said; the nodes still answer.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	res, err = fanout.New(fanout.StaticTargets(fanout.Target{Node: "node-a", URL: a.URL}), fanout.Options{Archive: dead.URL}).QueryPartial(context.Background(), q)
	if err != nil || res.ArchiveError != "connection refused" || len(res.Records) != 1 {
		t.Errorf("a dead archive: %+v, %v", res, err)
	}
	// No node answers, the archive does: an answer, not an error.
	res, err = fanout.New(fanout.StaticTargets(fanout.Target{Node: "node-a", URL: dead.URL}), fanout.Options{Archive: archSrv.URL}).QueryPartial(context.Background(), q)
	if err != nil || len(res.Records) != 3 || len(res.Errors) != 1 {
		t.Errorf("only the archive answers: %+v, %v", res, err)
	}
	// An archive naming a node that cannot be one is refused.
	bad := rec(time.Second, "plc.a", 1)
	bad.Node = "<b>node</b>"
	evil := httptest.NewServer(lookup.NewHandler(&archiveDouble{memStore: memStore{recs: []flow.Record{bad}}}, nil, lookup.Options{RatePerSecond: 1e6, Burst: 1 << 20}))
	defer evil.Close()
	res, _ = fanout.New(fanout.StaticTargets(), fanout.Options{Archive: evil.URL}).QueryPartial(context.Background(), q)
	if res.ArchiveError != "bad response: flow 0: invalid node" {
		t.Errorf("an archive naming an invalid node: %+v", res)
	}
}
