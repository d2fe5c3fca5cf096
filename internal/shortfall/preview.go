package shortfall

import (
	"fmt"
	"strconv"
	"strings"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/health"
)

// Preview is what a slice would get if it were applied now.
type Preview struct {
	// FullName is the slice's full name.
	FullName string
	// Blocked and BlockMessage say why the slice would run no sliver at
	// all ("" when it would run).
	Blocked, BlockMessage string
	// Summary counts the selected nodes: Running is those that would run
	// a sliver.
	Summary *planetv1.PlacementSummary
	// Sites is the same per site, by site name.
	Sites []SitePreview
	// Peers are the peer authorities of spec.nodes.authorities: their
	// nodes are chosen there, once they redeem the slice's ticket.
	Peers []string
}

// SitePreview is a Preview's count of one site's selected nodes.
type SitePreview struct {
	Site    string
	Summary *planetv1.PlacementSummary
}

// Bounds of Warnings: the API server keeps 4,096 characters of warnings
// in all; past that it drops or cuts them. Warnings stays within
// maxWarnings, cuts a reason's line to maxWarning, and never cuts a site's
// line (planetkube slice plan reads them back).
const (
	maxWarningSites = 12
	maxWarning      = 200
	maxWarnings     = 3900
)

// Warning prefixes: Warnings writes them and ParseSiteWarning reads them
// back (planetkube slice plan prints them as a table).
const (
	warnPrefix     = "planetkube: "
	warnSitePrefix = "planetkube: site "
	warnPeerPrefix = "planetkube: peer "
	warnWhyPrefix  = "planetkube: why "
)

// Warnings says the preview in admission warnings, within 3,900
// characters: the whole, why it would run none, one line per site (the
// first 12 by name, the rest summed), one per reason with its message, one
// per peer. Lines past the budget are left out, and a last line says how
// many.
func (p *Preview) Warnings() []string {
	s := p.Summary
	var out []string
	size, left := 0, 0
	add := func(w string) {
		if n := len([]rune(w)); size+n <= maxWarnings-100 {
			out, size = append(out, w), size+n
		} else {
			left++
		}
	}
	add(fmt.Sprintf("%sslice %s would run %d slivers on the %d nodes its selection names here (%d sites); %d would not run one",
		warnPrefix, p.FullName, s.Running, s.Selected, len(p.Sites), s.NotRunning))
	if p.Blocked != "" {
		add(cut(fmt.Sprintf("%s%s: %s", warnPrefix, p.Blocked, p.BlockMessage)))
	}
	var rest SiteCount
	for i, sp := range p.Sites {
		c := countOf(sp)
		if i >= maxWarningSites {
			rest.Selected, rest.Running = rest.Selected+c.Selected, rest.Running+c.Running
			continue
		}
		add(warnSitePrefix + c.String())
	}
	if n := len(p.Sites) - maxWarningSites; n > 0 {
		add(fmt.Sprintf("%s%d more sites: %d of %d nodes would run a sliver", warnPrefix, n, rest.Running, rest.Selected))
	}
	if p.Blocked == "" {
		for _, g := range s.Groups {
			add(cut(fmt.Sprintf("%s%s (%d nodes, e.g. %s): %s", warnWhyPrefix, g.Reason, g.Count, strings.Join(g.Nodes, ", "), g.Message)))
		}
	}
	for _, peer := range p.Peers {
		add(cut(fmt.Sprintf("%s%s: its nodes are chosen there when it redeems the slice's ticket (status.federation shows them)", warnPeerPrefix, peer)))
	}
	if left > 0 {
		out = append(out, fmt.Sprintf("%s%d more lines left out: the API server keeps 4,096 characters of warnings", warnPrefix, left))
	}
	return out
}

// SiteCount is one site's line of a preview.
type SiteCount struct {
	Site              string
	Selected, Running int32
	// Reasons are the counts of the nodes that would not run a sliver, by
	// reason, largest first.
	Reasons []ReasonCount
}

// ReasonCount is a count of nodes for a reason.
type ReasonCount struct {
	Reason string
	Count  int32
}

func countOf(sp SitePreview) SiteCount {
	c := SiteCount{Site: sp.Site, Selected: sp.Summary.Selected, Running: sp.Summary.Running}
	for _, g := range sp.Summary.Groups {
		c.Reasons = append(c.Reasons, ReasonCount{Reason: g.Reason, Count: g.Count})
	}
	return c
}

// String is the site's warning: "princeton: 9 of 11 nodes would run a
// sliver; not: NodeNotReady 1, NodeFull 1".
func (c SiteCount) String() string {
	s := fmt.Sprintf("%s: %d of %d nodes would run a sliver", c.Site, c.Running, c.Selected)
	for i, r := range c.Reasons {
		sep := ", "
		if i == 0 {
			sep = "; not: "
		}
		s += fmt.Sprintf("%s%s %d", sep, r.Reason, r.Count)
	}
	return s
}

// ParseSiteWarning reads back a site's warning; false for any other.
func ParseSiteWarning(w string) (SiteCount, bool) {
	rest, ok := strings.CutPrefix(w, warnSitePrefix)
	if !ok {
		return SiteCount{}, false
	}
	var c SiteCount
	head, reasons, _ := strings.Cut(rest, "; not: ")
	site, counts, ok := strings.Cut(head, ": ")
	if !ok {
		return SiteCount{}, false
	}
	if _, err := fmt.Sscanf(counts, "%d of %d nodes would run a sliver", &c.Running, &c.Selected); err != nil {
		return SiteCount{}, false
	}
	c.Site = site
	if reasons != "" {
		for _, r := range strings.Split(reasons, ", ") {
			name, n, ok := strings.Cut(r, " ")
			count, err := strconv.ParseInt(n, 10, 32)
			if !ok || err != nil {
				return SiteCount{}, false
			}
			c.Reasons = append(c.Reasons, ReasonCount{Reason: name, Count: int32(count)})
		}
	}
	return c, true
}

// cut bounds a warning to maxWarning bytes.
func cut(s string) string {
	if len(s) <= maxWarning {
		return s
	}
	return health.Truncate(s, maxWarning-3) + "..."
}
