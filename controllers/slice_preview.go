package controllers

import (
	"context"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/placement"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/sliverplan"
)

// Preview computes what the slice would get if it were applied now: the
// same decisions as a reconcile (its site's admission, expiry and state,
// trust, placement, room on each node), with the same reasons, writing
// nothing (the slice need not exist: a dry run of its creation).
func (r *SliceReconciler) Preview(ctx context.Context, in *planetv1.Slice) (*shortfall.Preview, error) {
	slice := in.DeepCopy()
	if slice.CreationTimestamp.IsZero() {
		slice.CreationTimestamp = metav1.NewTime(r.Now()) // its default expiry counts from now
	}
	id := r.identity(slice)
	out := &shortfall.Preview{FullName: id.fullName(), Peers: federation.Peers(slice, r.Authority)}
	g, err := r.gate(ctx, slice, id)
	if err != nil {
		return nil, err
	}
	total, bySite := shortfall.Tally{}, map[string]*shortfall.Tally{}
	site := func(name string) *shortfall.Tally {
		if bySite[name] == nil {
			bySite[name] = &shortfall.Tally{}
		}
		return bySite[name]
	}
	siteOf := map[string]string{}
	running := func(n, _ string) { total.Running(); site(siteOf[n]).Running() }
	notRunning := func(reason, node, s, detail string) {
		total.Add(reason, node, s, detail)
		site(s).Add(reason, node, s, detail)
	}
	if g.invalidExpiry != "" && g.blockReason == "" {
		g.block(planetv1.ReasonInvalidExpiry, g.invalidExpiry)
	}
	if g.blockReason != "" {
		out.Blocked, out.BlockMessage = g.blockReason, g.blockMessage
		if err := r.walkBlocked(slice, g, notRunning); err != nil {
			return nil, err
		}
	} else if err := r.previewPlacement(ctx, slice, id, siteOf, running, notRunning); err != nil {
		return nil, err
	}
	out.Summary = total.Summary()
	for name, t := range bySite {
		out.Sites = append(out.Sites, shortfall.SitePreview{Site: name, Summary: t.Summary()})
	}
	sort.Slice(out.Sites, func(i, j int) bool { return out.Sites[i].Site < out.Sites[j].Site })
	return out, nil
}

// previewPlacement walks the selected nodes of a slice that would run:
// placed (keeping the slivers it has), with room for a sliver, or why not.
// It records the site of each node placement chose from in siteOf.
func (r *SliceReconciler) previewPlacement(ctx context.Context, slice *planetv1.Slice, id sliceIdentity, siteOf map[string]string,
	running func(node, site string), notRunning func(reason, node, site, detail string)) error {
	pods, err := r.sliversOf(slice, id.namespace())
	if err != nil {
		return err
	}
	slivers := sliversFrom(pods)
	req, err := placementRequest(slice, sliverplan.Existing(slice.Name, slivers))
	if err != nil {
		return err
	}
	nodes, refused, err := r.trustedNodes(ctx, id, r.View.Candidates(slice.Spec.Nodes.Sites, slice.Spec.Nodes.Names), req)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		siteOf[n.Name] = n.Site
	}
	res := placement.Place(nodes, req)
	bound := r.View.Reservations(sliceKey(slice)).Bound
	parts := r.View.Parts(id.authority)
	issues := make([]planetv1.SliverIssue, 0, len(res.Issues))
	retained := map[string]bool{}
	for _, is := range res.Issues {
		issues = append(issues, planetv1.SliverIssue{Node: is.Node, Reason: is.Reason, Message: is.Message})
		retained[is.Node] = true // not ready or cordoned: it keeps what it has
	}
	for _, n := range res.Run {
		if retained[n] {
			continue
		}
		if reason, msg, _ := r.roomFor(slice, n, bound[n], parts[n]); reason != "" {
			issues = append(issues, planetv1.SliverIssue{Node: n, Reason: reason, Message: msg})
		}
	}
	sort.Slice(issues, func(i, j int) bool { return issues[i].Node < issues[j].Node })
	// A node not ready or cordoned keeps the sliver it has.
	shortfall.Walk(shortfall.Input{Refused: refused, Nodes: nodes, Placement: res, Issues: issues, ReadyRetained: res.Retained}, running, notRunning)
	return nil
}
