// Package shortfall tallies why the nodes a slice's selection names run no
// ready sliver, by reason, into a summary of bounded size whatever the
// cluster's: a count per reason, the first detail seen as its message, and
// a few of its sites and nodes as examples.
package shortfall

import (
	"slices"
	"sort"
	"strings"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/health"
)

// maxMessage bounds a group's message (NodeGroup.message); peerMessage a
// peer's, as Compact keeps it.
const (
	maxMessage  = 512
	peerMessage = 256
)

// Tally counts a slice's selected nodes: running, or not and why; the
// examples of a reason are its first nodes and sites by name, whatever the
// order they are added in. The zero value is ready to use.
type Tally struct {
	selected, running int
	groups            map[string]*group
}

// group is one reason's nodes.
type group struct {
	count  int
	detail string
	sites  []string
	nodes  []string
}

// Running counts a selected node that runs a ready sliver.
func (t *Tally) Running() {
	t.selected++
	t.running++
}

// Add counts a selected node that runs no ready sliver, for reason; detail
// says why in words (the first node's by name becomes the reason's
// message).
func (t *Tally) Add(reason, node, site, detail string) {
	t.selected++
	if t.groups == nil {
		t.groups = map[string]*group{}
	}
	g := t.groups[reason]
	if g == nil {
		g = &group{}
		t.groups[reason] = g
	}
	g.count++
	if len(g.nodes) == 0 || node < g.nodes[0] {
		g.detail = detail // the message is the first node's by name
	}
	g.nodes = keepLeast(g.nodes, node, planetv1.MaxPlacementExamples)
	if site != "" {
		g.sites = keepLeast(g.sites, site, planetv1.MaxPlacementSites)
	}
}

// keepLeast adds s to list, sorted, unless it is there, keeping the n
// least: the examples are the first by name, in whatever order they come.
func keepLeast(list []string, s string, n int) []string {
	i, found := slices.BinarySearch(list, s)
	if found || i >= n {
		return list
	}
	list = slices.Insert(list, i, s)
	return list[:min(len(list), n)]
}

// AddAll counts nodes that all run no sliver for one reason (a slice that
// runs none: its site is disabled, it is suspended ...).
func (t *Tally) AddAll(reason, detail string, nodes []Node) {
	for _, n := range nodes {
		t.Add(reason, n.Name, n.Site, detail)
	}
}

// Node names a node and its site.
type Node struct{ Name, Site string }

// Summary returns the tally: groups by count, largest first (then by
// reason), at most planetv1.MaxPlacementGroups of them, the nodes of the
// rest counted under OtherReasons.
func (t *Tally) Summary() *planetv1.PlacementSummary {
	out := &planetv1.PlacementSummary{Selected: int32(t.selected), Running: int32(t.running), NotRunning: int32(t.selected - t.running)}
	for reason, g := range t.groups {
		out.Groups = append(out.Groups, planetv1.NodeGroup{
			Reason: reason, Count: int32(g.count), Message: health.Truncate(g.detail, maxMessage),
			Sites: g.sites, Nodes: g.nodes,
		})
	}
	sortGroups(out.Groups)
	out.Groups = Fold(out.Groups, planetv1.MaxPlacementGroups)
	return out
}

// sortGroups orders groups by count, largest first, then by reason.
func sortGroups(gs []planetv1.NodeGroup) {
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].Count != gs[j].Count {
			return gs[i].Count > gs[j].Count
		}
		return gs[i].Reason < gs[j].Reason
	})
}

// Fold keeps the first max-1 groups of a sorted list longer than max and
// counts the nodes of the others in one OtherReasons group naming them.
func Fold(gs []planetv1.NodeGroup, max int) []planetv1.NodeGroup {
	if len(gs) <= max || max < 1 {
		return gs
	}
	kept := append([]planetv1.NodeGroup(nil), gs[:max-1]...)
	other := planetv1.NodeGroup{Reason: planetv1.ReasonOtherReasons}
	var names []string
	for _, g := range gs[max-1:] {
		other.Count += g.Count
		names = append(names, g.Reason)
	}
	other.Message = health.Truncate("nodes of further reasons: "+strings.Join(names, ", "), maxMessage)
	return append(kept, other)
}

// Compact returns a copy of s fit for another install's status: at most
// maxGroups groups (the others folded into OtherReasons), one site and one
// node as examples, 256 bytes of message, every string within the CRD's
// bounds, no negative count; nil for nil. A peer's
// summary is read through it, so that what a peer sends cannot make the
// home's status write fail.
func Compact(s *planetv1.PlacementSummary, maxGroups int) *planetv1.PlacementSummary {
	if s == nil {
		return nil
	}
	out := &planetv1.PlacementSummary{Selected: max(0, s.Selected), Running: max(0, s.Running), NotRunning: max(0, s.NotRunning)}
	for _, g := range s.Groups {
		out.Groups = append(out.Groups, planetv1.NodeGroup{
			Reason: health.Truncate(g.Reason, 128), Count: max(0, g.Count), Message: health.Truncate(g.Message, peerMessage),
			Sites: bounded(g.Sites, 1, 63), Nodes: bounded(g.Nodes, 1, 253),
		})
	}
	sortGroups(out.Groups)
	out.Groups = Fold(out.Groups, maxGroups)
	return out
}

// bounded returns the first n strings of list, each cut to size bytes.
func bounded(list []string, n, size int) []string {
	var out []string
	for _, s := range list[:min(len(list), n)] {
		out = append(out, health.Truncate(s, size))
	}
	return out
}
