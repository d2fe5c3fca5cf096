// Package placement decides which nodes get a sliver of a slice.
//
// A node matches a slice's selection when it is a PlanetKube node (it has a
// site), its labels match the selector, and its site and name are in the
// selection's lists when those are set. Matching nodes that are ready and
// schedulable are eligible for a new sliver. Like a DaemonSet, a slice keeps
// the sliver it already has on a matching node that became not ready or
// unschedulable, and reports the node. A cap on the number of slivers keeps
// existing slivers first and spreads new ones round-robin across sites, so
// that adding an unrelated node never moves a sliver.
package placement

import (
	"container/heap"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
)

// Reasons of an Issue.
const (
	// ReasonNodeNotReady: the node's Ready condition is not True.
	ReasonNodeNotReady = "NodeNotReady"
	// ReasonNodeUnschedulable: the node is cordoned.
	ReasonNodeUnschedulable = "NodeUnschedulable"
)

// Node is what placement needs to know about a cluster node.
type Node struct {
	// Name is the node's name, unique in the cluster.
	Name string
	// Site is the node's planetkube.io/site label; "" means the node is not a
	// PlanetKube node and never gets a sliver.
	Site string
	// Labels are the node's labels, matched against Request.Selector.
	Labels map[string]string
	// Ready is whether the node's Ready condition is True.
	Ready bool
	// Unschedulable is the node's spec.unschedulable (cordoned).
	Unschedulable bool
	// NotReadyReason and NotReadyMessage come from the Ready condition when
	// the node is not ready.
	NotReadyReason, NotReadyMessage string
}

// Request is a slice's node selection.
type Request struct {
	// Selector matches node labels; nil matches every node.
	Selector labels.Selector
	// Sites, when not empty, limits the nodes to those of these sites.
	Sites []string
	// Names, when not empty, limits the nodes to these names.
	Names []string
	// MaxNodes caps the number of slivers; 0 (or less) means no cap.
	MaxNodes int
	// Existing holds the names of the nodes that have a sliver of the slice now.
	Existing map[string]bool
}

// Issue reports a matching node that is not ready or not schedulable.
type Issue struct {
	// Node is the node's name.
	Node string
	// Reason is ReasonNodeNotReady or ReasonNodeUnschedulable.
	Reason string
	// Message is a human-readable explanation.
	Message string
}

// Result is the outcome of Place.
type Result struct {
	// Run holds the sorted names of the nodes that must have a sliver.
	Run []string
	// Retained holds the sorted names of the nodes in Run that are not ready
	// or not schedulable but keep the sliver they already have.
	Retained []string
	// Issues reports every matching node that is not ready or not
	// schedulable, sliver or not, sorted by node name.
	Issues []Issue
	// Matching is the number of nodes that match the selection, whatever
	// their readiness.
	Matching int
	// Capped holds the sorted names of the ready, schedulable matching
	// nodes left out by MaxNodes.
	Capped []string
}

// Place returns the nodes that must run a sliver of the slice described by
// req. The result depends only on the set of nodes, not on their order.
func Place(nodes []Node, req Request) Result {
	var (
		res      Result
		retained []string // matching, not eligible, with a sliver
		existing []string // eligible, with a sliver
		fresh    []*Node  // eligible, without a sliver
	)
	for _, n := range sortedMatching(nodes, req) {
		res.Matching++
		has := req.Existing[n.Name]
		switch {
		case n.Ready && !n.Unschedulable && has:
			existing = append(existing, n.Name)
		case n.Ready && !n.Unschedulable:
			fresh = append(fresh, n)
		default:
			res.Issues = append(res.Issues, issue(n))
			if has {
				retained = append(retained, n.Name)
			}
		}
	}

	if req.MaxNodes <= 0 {
		res.Retained = retained
		res.Run = make([]string, 0, len(retained)+len(existing)+len(fresh))
		res.Run = append(append(res.Run, retained...), existing...)
		for _, n := range fresh {
			res.Run = append(res.Run, n.Name)
		}
		slices.Sort(res.Run)
		return res
	}

	// Fill the slots: retained slivers, then existing slivers on eligible
	// nodes, then new nodes spread across sites.
	slots := req.MaxNodes
	res.Retained = retained[:min(len(retained), slots)]
	slots -= len(res.Retained)
	kept := existing[:min(len(existing), slots)]
	slots -= len(kept)
	res.Run = append(append([]string{}, res.Retained...), kept...)
	var chosen []string
	if slots > 0 && len(fresh) > 0 {
		chosen = spread(fresh, siteCounts(nodes, res.Run), slots)
		res.Run = append(res.Run, chosen...)
	}
	slices.Sort(res.Run)
	// What the cap left out: existing slivers past it, fresh nodes not
	// chosen.
	res.Capped = append(res.Capped, existing[len(kept):]...)
	if len(chosen) < len(fresh) {
		picked := toSet(chosen)
		for _, n := range fresh {
			if !picked[n.Name] {
				res.Capped = append(res.Capped, n.Name)
			}
		}
	}
	slices.Sort(res.Capped)
	return res
}

// sortedMatching returns the nodes that match req, sorted by name.
func sortedMatching(nodes []Node, req Request) []*Node {
	sites := toSet(req.Sites)
	names := toSet(req.Names)
	var out []*Node
	for i := range nodes {
		n := &nodes[i]
		if matches(n, req, sites, names) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Matches says whether a node matches the request's selection (whatever its
// readiness). To test many nodes, use Matcher.
func Matches(n *Node, req Request) bool {
	return matches(n, req, toSet(req.Sites), toSet(req.Names))
}

// Matcher returns Matches for req, its lists made into sets once.
func (req Request) Matcher() func(*Node) bool {
	sites, names := toSet(req.Sites), toSet(req.Names)
	return func(n *Node) bool { return matches(n, req, sites, names) }
}

func matches(n *Node, req Request, sites, names map[string]bool) bool {
	return n.Site != "" &&
		(sites == nil || sites[n.Site]) &&
		(names == nil || names[n.Name]) &&
		(req.Selector == nil || req.Selector.Matches(labels.Set(n.Labels)))
}

func toSet(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	set := make(map[string]bool, len(list))
	for _, s := range list {
		set[s] = true
	}
	return set
}

// issue describes why a matching node is not eligible.
func issue(n *Node) Issue {
	if n.Unschedulable && n.Ready {
		return Issue{Node: n.Name, Reason: ReasonNodeUnschedulable, Message: "node " + n.Name + " is cordoned (unschedulable)"}
	}
	msg := "node " + n.Name + " is not ready"
	for _, detail := range []string{n.NotReadyReason, n.NotReadyMessage} {
		if detail != "" {
			msg += ": " + detail
		}
	}
	return Issue{Node: n.Name, Reason: ReasonNodeNotReady, Message: msg}
}

// siteCounts counts the slivers in run by site.
func siteCounts(nodes []Node, run []string) map[string]int {
	inRun := make(map[string]bool, len(run))
	for _, name := range run {
		inRun[name] = true
	}
	counts := map[string]int{}
	for _, n := range nodes {
		if inRun[n.Name] {
			counts[n.Site]++
		}
	}
	return counts
}

// spread takes up to slots of the name-sorted nodes, round-robin across
// sites: each pick goes to the site with the fewest slivers so far (counts,
// updated as it goes), ties broken by site name, and within a site to the
// first node by name. With no slivers yet this is plain round-robin over the
// sites in name order; with some it first evens out the sites that have few.
func spread(fresh []*Node, counts map[string]int, slots int) []string {
	bySite := map[string][]*Node{}
	for _, n := range fresh {
		bySite[n.Site] = append(bySite[n.Site], n)
	}
	h := make(siteHeap, 0, len(bySite))
	for site, ns := range bySite {
		h = append(h, &siteQueue{site: site, count: counts[site], nodes: ns})
	}
	heap.Init(&h)
	var out []string
	for len(out) < slots && h.Len() > 0 {
		q := h[0]
		out = append(out, q.nodes[0].Name)
		q.nodes = q.nodes[1:]
		q.count++
		if len(q.nodes) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return out
}

// siteQueue holds a site's remaining candidate nodes and its sliver count.
type siteQueue struct {
	site  string
	count int
	nodes []*Node
}

// siteHeap orders sites by sliver count, then by name.
type siteHeap []*siteQueue

func (h siteHeap) Len() int { return len(h) }
func (h siteHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count < h[j].count
	}
	return h[i].site < h[j].site
}
func (h siteHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *siteHeap) Push(x any)   { *h = append(*h, x.(*siteQueue)) }
func (h *siteHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
