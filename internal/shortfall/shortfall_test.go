package shortfall

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/placement"
)

func TestSummary(t *testing.T) {
	var tl Tally
	tl.Running()
	tl.Running()
	for i := range 5 {
		tl.Add(planetv1.ReasonNotTrusted, fmt.Sprintf("mit-%d", i), "mit", "the site does not trust plc")
	}
	tl.Add(planetv1.ReasonNotTrusted, "ucb-0", "ucb", "another detail is not kept")
	tl.Add(planetv1.ReasonNodeNotReady, "a-1", "a", "node a-1 is not ready")
	tl.Add(planetv1.ReasonMaxNodes, "b-1", "b", "capped")

	got := tl.Summary()
	if got.Selected != 10 || got.Running != 2 || got.NotRunning != 8 {
		t.Fatalf("counts: %+v", got)
	}
	want := []planetv1.NodeGroup{
		{Reason: planetv1.ReasonNotTrusted, Count: 6, Message: "the site does not trust plc", Sites: []string{"mit", "ucb"}, Nodes: []string{"mit-0", "mit-1", "mit-2"}},
		{Reason: planetv1.ReasonMaxNodes, Count: 1, Message: "capped", Sites: []string{"b"}, Nodes: []string{"b-1"}},
		{Reason: planetv1.ReasonNodeNotReady, Count: 1, Message: "node a-1 is not ready", Sites: []string{"a"}, Nodes: []string{"a-1"}},
	}
	if g, w := mustJSON(t, got.Groups), mustJSON(t, want); g != w {
		t.Errorf("groups:\n got %s\nwant %s", g, w)
	}
}

// TestSummaryExamplesInAnyOrder: the examples are the first by name
// whatever the order the nodes come in (a map's).
func TestSummaryExamplesInAnyOrder(t *testing.T) {
	var a, b Tally
	names := []string{"n5", "n1", "n4", "n2", "n3", "n0"}
	for i, n := range names {
		a.Add(planetv1.ReasonNotTrusted, n, fmt.Sprintf("s%d", i), "x")
		b.Add(planetv1.ReasonNotTrusted, names[len(names)-1-i], fmt.Sprintf("s%d", len(names)-1-i), "x")
	}
	ga, gb := a.Summary().Groups[0], b.Summary().Groups[0]
	if mustJSON(t, ga.Nodes) != `["n0","n1","n2"]` || mustJSON(t, ga.Sites) != `["s0","s1","s2","s3"]` || mustJSON(t, ga) != mustJSON(t, gb) {
		t.Fatalf("examples: %+v and %+v", ga, gb)
	}
}

// TestSummarizeReadyRetained: a cordoned node whose kept sliver is ready
// runs one.
func TestSummarizeReadyRetained(t *testing.T) {
	got := Summarize(Input{
		Nodes:         []placement.Node{{Name: "a1", Site: "a"}, {Name: "a2", Site: "a"}},
		Placement:     placement.Result{Run: []string{"a1", "a2"}, Retained: []string{"a2"}},
		Issues:        []planetv1.SliverIssue{{Node: "a2", Reason: planetv1.ReasonNodeUnschedulable, Message: "node a2 is cordoned"}},
		ReadyRetained: []string{"a2"},
	})
	if got.Running != 2 || got.NotRunning != 0 || len(got.Groups) != 0 {
		t.Fatalf("summary %+v, want both running", got)
	}
}

func TestSummaryEmpty(t *testing.T) {
	var tl Tally
	got := tl.Summary()
	if got.Selected != 0 || got.NotRunning != 0 || len(got.Groups) != 0 {
		t.Fatalf("empty tally: %+v", got)
	}
}

// TestSummaryBounded: a 100,000-node slice with 40 reasons, long site names
// and messages, stays within the bounds the CRD declares.
func TestSummaryBounded(t *testing.T) {
	var tl Tally
	long := strings.Repeat("é", 400) // 800 bytes, cut on a rune boundary
	for i := range 100_000 {
		reason := fmt.Sprintf("Reason%02d", i%40)
		// Names at their longest: nodes 253 bytes, sites 63.
		tl.Add(reason, fmt.Sprintf("node-%06d-%s", i, strings.Repeat("n", 241)), fmt.Sprintf("site%02d%s", i%50, strings.Repeat("s", 57)), long)
	}
	got := tl.Summary()
	if len(got.Groups) != planetv1.MaxPlacementGroups {
		t.Fatalf("%d groups, want %d", len(got.Groups), planetv1.MaxPlacementGroups)
	}
	var sum int32
	for _, g := range got.Groups {
		sum += g.Count
		if len(g.Message) > maxMessage || !json.Valid([]byte(`"`+g.Message+`"`)) || strings.ContainsRune(g.Message, '\uFFFD') {
			t.Errorf("%s: message of %d bytes", g.Reason, len(g.Message))
		}
		if len(g.Nodes) > planetv1.MaxPlacementExamples || len(g.Sites) > planetv1.MaxPlacementSites {
			t.Errorf("%s: %d nodes, %d sites", g.Reason, len(g.Nodes), len(g.Sites))
		}
	}
	if sum != 100_000 || got.NotRunning != 100_000 {
		t.Errorf("the groups count %d nodes, notRunning %d; want 100000", sum, got.NotRunning)
	}
	last := got.Groups[len(got.Groups)-1]
	if last.Reason != planetv1.ReasonOtherReasons || last.Count != 29*2500 {
		t.Errorf("last group %s of %d, want OtherReasons of %d", last.Reason, last.Count, 29*2500)
	}
	// The bound this gives, every field at its longest: 12 groups of a
	// 512-byte message, 3 nodes and 4 sites.
	if n := len(mustJSON(t, got)); n > 20<<10 {
		t.Errorf("summary of %d bytes, want at most 20 KiB", n)
	}
}

func TestCompact(t *testing.T) {
	s := &planetv1.PlacementSummary{Selected: 20, NotRunning: 20}
	for i := range 10 {
		s.Groups = append(s.Groups, planetv1.NodeGroup{Reason: fmt.Sprintf("R%d", i), Count: 2})
	}
	got := Compact(s, planetv1.MaxPeerPlacementGroups)
	last := planetv1.MaxPeerPlacementGroups - 1
	if len(got.Groups) != planetv1.MaxPeerPlacementGroups || got.Groups[last].Reason != planetv1.ReasonOtherReasons || got.Groups[last].Count != 2*int32(10-last) {
		t.Fatalf("compact: %+v", got.Groups)
	}
	if len(s.Groups) != 10 {
		t.Errorf("Compact changed its input")
	}
	// What a peer sends is cut to the CRD's bounds.
	huge := &planetv1.PlacementSummary{Selected: -1, Groups: []planetv1.NodeGroup{{
		Reason: strings.Repeat("R", 500), Count: -4, Message: strings.Repeat("m", 5000),
		Nodes: []string{strings.Repeat("n", 999), "b", "c", "d", "e"}, Sites: []string{"a", "b", "c", "d", "e", strings.Repeat("s", 99)},
	}}}
	g := Compact(huge, 6)
	if g.Selected != 0 || len(g.Groups[0].Reason) != 128 || g.Groups[0].Count != 0 || len(g.Groups[0].Message) != peerMessage ||
		len(g.Groups[0].Nodes) != 1 || len(g.Groups[0].Nodes[0]) != 253 || len(g.Groups[0].Sites) != 1 {
		t.Errorf("compact of a huge summary: %+v", g)
	}
	if Compact(nil, 6) != nil {
		t.Errorf("Compact(nil) is not nil")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSummarize(t *testing.T) {
	nodes := []placement.Node{{Name: "a1", Site: "a"}, {Name: "a2", Site: "a"}, {Name: "b1", Site: "b"}, {Name: "b2", Site: "b"}, {Name: "c1", Site: "c"}}
	got := Summarize(Input{
		Refused: []Refusal{{Node: "m1", Site: "mit", Reason: planetv1.ReasonNotTrusted, Message: "the site does not trust plc"}},
		Nodes:   nodes,
		Placement: placement.Result{
			Run:    []string{"a1", "a2", "b1"},
			Capped: []string{"c1"},
		},
		Issues: []planetv1.SliverIssue{
			{Node: "a2", Reason: "OutOfcpu", Message: "Node didn't have enough resource: cpu"},
			{Node: "b1", Reason: planetv1.SliverIssueNotCreated, Message: "the sliver is being created"},
			{Node: "b2", Reason: planetv1.ReasonNodeNotReady, Message: "node b2 is not ready"},
		},
	})
	want := &planetv1.PlacementSummary{Selected: 6, Running: 1, NotRunning: 5, Groups: []planetv1.NodeGroup{
		{Reason: planetv1.ReasonMaxNodes, Count: 1, Message: "spec.nodes.maxNodes caps the slivers: these nodes are ready but not among those kept", Sites: []string{"c"}, Nodes: []string{"c1"}},
		{Reason: planetv1.ReasonNodeFull, Count: 1, Message: "node a2: the kubelet refused the sliver (OutOfcpu): Node didn't have enough resource: cpu", Sites: []string{"a"}, Nodes: []string{"a2"}},
		{Reason: planetv1.ReasonNodeNotReady, Count: 1, Message: "node b2 is not ready", Sites: []string{"b"}, Nodes: []string{"b2"}},
		{Reason: planetv1.ReasonNotTrusted, Count: 1, Message: "the site does not trust plc", Sites: []string{"mit"}, Nodes: []string{"m1"}},
		{Reason: planetv1.SliverIssueNotCreated, Count: 1, Message: "node b1: the sliver is being created", Sites: []string{"b"}, Nodes: []string{"b1"}},
	}}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("summary:\n got %s\nwant %s", g, w)
	}
}

// TestWarningsBounded: a preview of many sites and reasons stays within
// what the API server keeps, never cuts a site's line, and says what it
// left out.
func TestWarningsBounded(t *testing.T) {
	p := &Preview{FullName: "plc.princeton.big", Summary: &planetv1.PlacementSummary{Selected: 3000, NotRunning: 3000}}
	for i := range 12 {
		p.Summary.Groups = append(p.Summary.Groups, planetv1.NodeGroup{Reason: fmt.Sprintf("Reason%02d", i), Count: 250,
			Nodes: []string{strings.Repeat("n", 60)}, Message: strings.Repeat("m", 500)})
	}
	for i := range 30 {
		sp := SitePreview{Site: fmt.Sprintf("site%02d%s", i, strings.Repeat("s", 50)), Summary: &planetv1.PlacementSummary{Selected: 100}}
		for j := range 12 {
			sp.Summary.Groups = append(sp.Summary.Groups, planetv1.NodeGroup{Reason: fmt.Sprintf("Reason%02d", j), Count: 8})
		}
		p.Sites = append(p.Sites, sp)
	}
	ws := p.Warnings()
	var total, sites int
	for _, w := range ws {
		total += len([]rune(w))
		if c, ok := ParseSiteWarning(w); ok {
			sites++
			if c.Selected != 100 || len(c.Reasons) != 12 {
				t.Errorf("a site's line read back as %+v", c)
			}
		}
	}
	if total > 4096-100 || sites == 0 || !strings.Contains(ws[len(ws)-1], "more lines left out") {
		t.Fatalf("%d warnings of %d characters, %d sites read back; last: %q", len(ws), total, sites, ws[len(ws)-1])
	}
}
