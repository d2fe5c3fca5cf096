package shortfall

import (
	"strings"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/placement"
)

// Refusal is a node the slice's selection names whose site does not run
// the slice (it does not trust the slice's authority, or is disabled).
type Refusal struct {
	Node, Site      string
	Reason, Message string
}

// Input is what a reconcile decided about a slice's selected nodes.
type Input struct {
	// Refused are the matching nodes whose site does not run the slice.
	Refused []Refusal
	// Nodes are the nodes placement chose from (their sites are read
	// from here).
	Nodes []placement.Node
	// Placement is where the slice runs.
	Placement placement.Result
	// Issues are the sliver plan's issues for every node (sliverplan's
	// NodeIssues): each matching node not ready or cordoned, and each node
	// of the placement without a ready current sliver.
	Issues []planetv1.SliverIssue
	// ReadyRetained are the nodes with an issue (not ready, cordoned)
	// whose kept sliver is ready (sliverplan's): they run one.
	ReadyRetained []string
}

// Summarize tallies a slice's selected nodes: the nodes of the placement
// without an issue run a ready sliver; the others are grouped by the
// issue's reason (a sliver the kubelet refused for want of a resource,
// OutOfcpu ..., counts as NodeFull), the nodes MaxNodes left out as
// MaxNodes, and the refused ones by their reason.
func Summarize(in Input) *planetv1.PlacementSummary {
	var t Tally
	Walk(in, func(_, _ string) { t.Running() }, t.Add)
	return t.Summary()
}

// Walk calls running for each node of the summary that runs a ready
// sliver (without its site), and notRunning for each of the others with its
// site, reason and why, as Summarize counts them. Issues and
// Placement.Run must be sorted by node name, as sliverplan and placement
// give them.
func Walk(in Input, running func(node, site string), notRunning func(reason, node, site, detail string)) {
	site := make(map[string]string, len(in.Issues)+len(in.Placement.Capped))
	for _, is := range in.Issues {
		site[is.Node] = ""
	}
	for _, n := range in.Placement.Capped {
		site[n] = ""
	}
	for i := range in.Nodes {
		if _, ok := site[in.Nodes[i].Name]; ok {
			site[in.Nodes[i].Name] = in.Nodes[i].Site
		}
	}
	runs := make(map[string]bool, len(in.ReadyRetained))
	for _, n := range in.ReadyRetained {
		runs[n] = true
	}
	for _, is := range in.Issues {
		if runs[is.Node] {
			continue
		}
		reason, detail := is.Reason, is.Message
		if strings.HasPrefix(reason, "OutOf") {
			reason, detail = planetv1.ReasonNodeFull, "the kubelet refused the sliver ("+is.Reason+"): "+is.Message
		}
		if detail == "" {
			detail = is.Reason
		}
		if !strings.HasPrefix(detail, "node ") {
			detail = "node " + is.Node + ": " + detail
		}
		notRunning(reason, is.Node, site[is.Node], detail)
	}
	// Both lists are sorted by name: the nodes of the placement without an
	// issue run.
	issues := in.Issues
	for _, n := range in.Placement.Run {
		for len(issues) > 0 && issues[0].Node < n {
			issues = issues[1:]
		}
		if len(issues) == 0 || issues[0].Node != n || runs[n] {
			running(n, "")
		}
	}
	for _, n := range in.Placement.Capped {
		notRunning(planetv1.ReasonMaxNodes, n, site[n], "spec.nodes.maxNodes caps the slivers: these nodes are ready but not among those kept")
	}
	for _, r := range in.Refused {
		notRunning(r.Reason, r.Node, r.Site, r.Message)
	}
}
