package placement

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// node returns a ready, schedulable node of a site with the given labels
// ("k=v" pairs).
func node(name, site string, kv ...string) Node {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return Node{Name: name, Site: site, Labels: l, Ready: true}
}

func notReady(n Node) Node {
	n.Ready, n.NotReadyReason, n.NotReadyMessage = false, "KubeletNotReady", "PLEG is not healthy"
	return n
}

func cordoned(n Node) Node {
	n.Unschedulable = true
	return n
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	out, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	notReadyIssue = func(n string) Issue {
		return Issue{Node: n, Reason: ReasonNodeNotReady, Message: "node " + n + " is not ready: KubeletNotReady: PLEG is not healthy"}
	}
	cordonIssue = func(n string) Issue {
		return Issue{Node: n, Reason: ReasonNodeUnschedulable, Message: "node " + n + " is cordoned (unschedulable)"}
	}
)

// threeSites has three nodes at site a, two at b and one at c, given out of
// order.
var threeSites = []Node{
	node("c1", "c"), node("a3", "a"), node("b2", "b"), node("a1", "a"), node("b1", "b"), node("a2", "a"),
}

func TestPlace(t *testing.T) {
	mixed := []Node{
		node("n3", "mit", "hw", "gpu"),
		node("n1", "princeton", "hw", "gpu"),
		node("n2", "princeton"),
		node("k8s-master", ""), // not a PlanetKube node
		node("n4", "mit"),
	}
	tests := []struct {
		name  string
		nodes []Node
		req   func(t *testing.T) Request
		want  Result
	}{{
		name: "no nodes",
		req:  func(*testing.T) Request { return Request{} },
		want: Result{},
	}, {
		name:  "empty selection: every PlanetKube node",
		nodes: mixed,
		req:   func(*testing.T) Request { return Request{} },
		want:  Result{Run: []string{"n1", "n2", "n3", "n4"}, Matching: 4},
	}, {
		name:  "selector",
		nodes: mixed,
		req:   func(t *testing.T) Request { return Request{Selector: sel(t, "hw=gpu")} },
		want:  Result{Run: []string{"n1", "n3"}, Matching: 2},
	}, {
		name:  "selector everything does not take nodes without a site",
		nodes: mixed,
		req:   func(*testing.T) Request { return Request{Selector: labels.Everything()} },
		want:  Result{Run: []string{"n1", "n2", "n3", "n4"}, Matching: 4},
	}, {
		name:  "sites",
		nodes: mixed,
		req:   func(*testing.T) Request { return Request{Sites: []string{"mit", "nowhere"}} },
		want:  Result{Run: []string{"n3", "n4"}, Matching: 2},
	}, {
		name:  "names",
		nodes: mixed,
		req:   func(*testing.T) Request { return Request{Names: []string{"n2", "n4", "k8s-master", "gone"}} },
		want:  Result{Run: []string{"n2", "n4"}, Matching: 2},
	}, {
		name:  "selector, sites and names together",
		nodes: mixed,
		req: func(t *testing.T) Request {
			return Request{Selector: sel(t, "hw=gpu"), Sites: []string{"princeton"}, Names: []string{"n1", "n2", "n3"}}
		},
		want: Result{Run: []string{"n1"}, Matching: 1},
	}, {
		name:  "existing sliver on a node that no longer matches is dropped",
		nodes: mixed,
		req: func(t *testing.T) Request {
			return Request{Sites: []string{"mit"}, Existing: set("n1", "n3", "k8s-master")}
		},
		want: Result{Run: []string{"n3", "n4"}, Matching: 2},
	}, {
		name:  "not ready without a sliver: reported, not run",
		nodes: []Node{node("n1", "a"), notReady(node("n2", "a"))},
		req:   func(*testing.T) Request { return Request{Existing: set("n1")} },
		want:  Result{Run: []string{"n1"}, Issues: []Issue{notReadyIssue("n2")}, Matching: 2},
	}, {
		name:  "not ready with a sliver: retained and reported",
		nodes: []Node{node("n1", "a"), notReady(node("n2", "a"))},
		req:   func(*testing.T) Request { return Request{Existing: set("n1", "n2")} },
		want: Result{Run: []string{"n1", "n2"}, Retained: []string{"n2"},
			Issues: []Issue{notReadyIssue("n2")}, Matching: 2},
	}, {
		name:  "unschedulable with and without a sliver",
		nodes: []Node{cordoned(node("n1", "a")), cordoned(node("n2", "a")), node("n3", "a")},
		req:   func(*testing.T) Request { return Request{Existing: set("n2")} },
		want: Result{Run: []string{"n2", "n3"}, Retained: []string{"n2"},
			Issues: []Issue{cordonIssue("n1"), cordonIssue("n2")}, Matching: 3},
	}, {
		name:  "not ready and cordoned is reported as not ready",
		nodes: []Node{cordoned(notReady(node("n1", "a")))},
		req:   func(*testing.T) Request { return Request{} },
		want:  Result{Issues: []Issue{notReadyIssue("n1")}, Matching: 1},
	}, {
		name:  "not ready without a reason",
		nodes: []Node{{Name: "n1", Site: "a"}},
		req:   func(*testing.T) Request { return Request{} },
		want: Result{Issues: []Issue{{Node: "n1", Reason: ReasonNodeNotReady, Message: "node n1 is not ready"}},
			Matching: 1},
	}, {
		name:  "cap: round-robin across three sites",
		nodes: threeSites,
		req:   func(*testing.T) Request { return Request{MaxNodes: 4} },
		want:  Result{Run: []string{"a1", "a2", "b1", "c1"}, Matching: 6, Capped: []string{"a3", "b2"}},
	}, {
		name:  "cap above the number of nodes",
		nodes: threeSites,
		req:   func(*testing.T) Request { return Request{MaxNodes: 100} },
		want:  Result{Run: []string{"a1", "a2", "a3", "b1", "b2", "c1"}, Matching: 6},
	}, {
		name:  "cap: existing slivers kept, new ones go to the emptiest sites",
		nodes: threeSites,
		req:   func(*testing.T) Request { return Request{MaxNodes: 4, Existing: set("a3", "b2")} },
		want:  Result{Run: []string{"a1", "a3", "b2", "c1"}, Matching: 6, Capped: []string{"a2", "b1"}},
	}, {
		name:  "cap lowered below the existing slivers keeps the first by name",
		nodes: threeSites,
		req:   func(*testing.T) Request { return Request{MaxNodes: 2, Existing: set("a3", "b2", "c1")} },
		want:  Result{Run: []string{"a3", "b2"}, Matching: 6, Capped: []string{"a1", "a2", "b1", "c1"}},
	}, {
		name:  "cap: retained slivers come first",
		nodes: []Node{node("a1", "a"), notReady(node("b1", "b")), node("c1", "c")},
		req:   func(*testing.T) Request { return Request{MaxNodes: 2, Existing: set("a1", "b1")} },
		want: Result{Run: []string{"a1", "b1"}, Retained: []string{"b1"},
			Issues: []Issue{notReadyIssue("b1")}, Matching: 3, Capped: []string{"c1"}},
	}, {
		name:  "cap: an existing node stops matching and is replaced at its site",
		nodes: []Node{node("a1", "a", "x", "no"), node("a2", "a"), node("b1", "b"), node("b2", "b"), node("c1", "c")},
		req: func(t *testing.T) Request {
			return Request{Selector: sel(t, "x!=no"), MaxNodes: 3, Existing: set("a1", "b1", "c1")}
		},
		want: Result{Run: []string{"a2", "b1", "c1"}, Matching: 4, Capped: []string{"b2"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.nodes, tc.req(t))
			if !reflect.DeepEqual(normalize(got), normalize(tc.want)) {
				t.Errorf("Place =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

// normalize makes empty and nil slices compare equal.
func normalize(r Result) Result {
	for _, s := range []*[]string{&r.Run, &r.Retained, &r.Capped} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	if len(r.Issues) == 0 {
		r.Issues = nil
	}
	return r
}

// TestCapStable checks that slivers stay where they are when nodes are added,
// whatever their names and sites, and that a free slot goes to a new node.
func TestCapStable(t *testing.T) {
	nodes := append([]Node{}, threeSites...)
	first := Place(nodes, Request{MaxNodes: 4})
	existing := set(first.Run...)
	for _, added := range []Node{node("a0", "a"), node("0", "0"), node("zz", "z"), node("b0", "b")} {
		nodes = append(nodes, added)
		got := Place(nodes, Request{MaxNodes: 4, Existing: existing})
		if !reflect.DeepEqual(got.Run, first.Run) {
			t.Errorf("after adding %s: Run = %v, want %v", added.Name, got.Run, first.Run)
		}
	}
	got := Place(nodes, Request{MaxNodes: 5, Existing: existing})
	if want := []string{"0", "a1", "a2", "b1", "c1"}; !reflect.DeepEqual(got.Run, want) {
		t.Errorf("with one more slot: Run = %v, want %v", got.Run, want)
	}
}

func TestInputOrderIndependent(t *testing.T) {
	nodes := bigCluster(300, 7)
	req := Request{MaxNodes: 50, Existing: set("n-00003", "n-00100", "n-00201", "n-00299")}
	want := Place(nodes, req)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		shuffled := append([]Node{}, nodes...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := Place(shuffled, req); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffle %d: Place = %+v, want %+v", i, got, want)
		}
	}
	if len(want.Run) != 50 {
		t.Errorf("len(Run) = %d, want 50", len(want.Run))
	}
}

// bigCluster returns n nodes over the given number of sites, one in 50 not
// ready, one in 70 cordoned, one in 3 labelled hw=gpu.
func bigCluster(n, sites int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nd := node(fmt.Sprintf("n-%05d", i), fmt.Sprintf("site%03d", i%sites), "hw", []string{"gpu", "cpu", "cpu"}[i%3])
		if i%50 == 7 {
			nd = notReady(nd)
		}
		nd.Unschedulable = i%70 == 3
		nodes[i] = nd
	}
	return nodes
}

func BenchmarkPlace(b *testing.B) {
	nodes := bigCluster(10000, 500)
	existing := map[string]bool{}
	for i := 0; i < 10000; i += 3 {
		existing[fmt.Sprintf("n-%05d", i)] = true
	}
	sel, err := labels.Parse("hw in (gpu,cpu)")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		req  Request
	}{
		{"all", Request{Selector: sel, Existing: existing}},
		{"cap", Request{Selector: sel, MaxNodes: 5000, Existing: existing}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Place(nodes, bc.req)
			}
		})
	}
}
