package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/pools"
	"github.com/planetkube/planetkube/internal/ticket"
)

// redeemPool splits the named pool and binds the part to the named slice:
// a sub-pool named after the ticket, with the same accounting and refusals
// as a hand-made one. The slice must be here (its sliver ticket redeemed
// first), not withdrawn since the ticket was issued, and the pool's site
// must trust the issuer. Every check comes before the pool is made.
func (r *TicketReconciler) redeemPool(ctx context.Context, tk *planetv1.Ticket, v *ticket.Verified, out *redemption) error {
	g := v.Pool
	poolNS, parentName, _ := strings.Cut(g.Pool, "/") // checked by Verify
	a, site, slice, _ := naming.ParseFullName(g.Slice)
	sliceKey := client.ObjectKey{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}
	bad := func(reason ticket.Reason, format string, args ...any) error {
		return out.refuse(&ticket.Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)})
	}

	if err := r.checkFloor(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	if err := r.Get(ctx, sliceKey, &planetv1.Slice{}); err != nil {
		if apierrors.IsNotFound(err) {
			return bad(ticket.InvalidGrant, "slice %s is not here: redeem its sliver ticket first", g.Slice)
		}
		return err
	}
	siteObj := &planetv1.Site{}
	if err := r.Get(ctx, client.ObjectKey{Name: poolNS}, siteObj); err != nil {
		if apierrors.IsNotFound(err) {
			return bad(ticket.InvalidGrant, "pool %s is not in a site's namespace", g.Pool)
		}
		return err
	}
	if !r.trust().Trusts(siteObj, a) {
		return bad(ticket.NotTrusted, "site %s, whose pool %s the ticket splits, does not trust %s (Site spec.trustedAuthorities)", poolNS, g.Pool, a)
	}
	root, err := r.rootPool(ctx, poolNS, parentName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return bad(ticket.InvalidGrant, "pool %s does not exist", g.Pool)
		}
		return err
	}
	if b := root.Spec.Binding; b != nil && b.Authority != "" && !naming.WithinAuthority(a, b.Authority) {
		return bad(ticket.InvalidGrant, "pool %s is part of site %s's allocation to authority %s (pool %s): only that authority's slices take parts of it, not %s's",
			g.Pool, poolNS, b.Authority, root.Name, a)
	}

	until := g.Until
	if until == 0 {
		until = v.Expiry
	}
	want := &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: poolNS, Name: recordName(v.Issuer, v.ID),
			Labels: map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelAuthority: a},
			Annotations: map[string]string{
				planetv1.AnnotationTicketID: v.ID, planetv1.AnnotationTicketSHA256: v.Hash,
				planetv1.AnnotationSliceFullName: g.Slice, planetv1.AnnotationGrantedBy: tk.Namespace + "/" + tk.Name,
			},
		},
		Spec: planetv1.ResourcePoolSpec{
			Parent:  parentName,
			Nodes:   g.Nodes,
			PerNode: g.PerNode,
			Binding: &planetv1.PoolBinding{Slice: sliceKey.Namespace + "/" + sliceKey.Name, Until: metav1.Unix(until, 0)},
		},
	}
	out.redeemed = "ResourcePool/" + want.Namespace + "/" + want.Name
	err = r.Get(ctx, client.ObjectKeyFromObject(want), &planetv1.ResourcePool{})
	switch {
	case err == nil:
		return r.checkJTI(ctx, v, out) // made by this ticket before
	case !apierrors.IsNotFound(err):
		return err
	}
	if err := r.checkJTI(ctx, v, out); err != nil || out.reason != "" {
		return err
	}

	if why, err := r.poolFits(ctx, want); err != nil || why != "" {
		if err != nil {
			return err
		}
		return bad(ticket.Overcommitted, "the part of pool %s it grants %s", g.Pool, why)
	}
	if err := r.Create(ctx, want.DeepCopy(), client.DryRunAll); err != nil {
		switch {
		case (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) && strings.Contains(err.Error(), "does not fit"):
			return bad(ticket.Overcommitted, "the part of pool %s it grants is refused here: %v", g.Pool, err)
		case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err):
			return bad(ticket.InvalidGrant, "the pool it grants is refused here: %v", err)
		}
		return err
	}
	if err := r.record(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	if err := r.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating pool %s/%s: %w", want.Namespace, want.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Bound a part of a pool to a foreign slice", "pool", g.Pool, "part", want.Name, "slice", g.Slice, "jti", v.ID)
	return nil
}

// rootPool returns the root pool above a pool (the pool itself for a
// root), reading up its parents in its namespace; NotFound when the pool
// does not exist. A cycle of parents (which the accounting marks Invalid)
// ends the walk where it closes.
func (r *TicketReconciler) rootPool(ctx context.Context, ns, name string) (*planetv1.ResourcePool, error) {
	p := &planetv1.ResourcePool{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return nil, err
	}
	seen := map[string]bool{name: true}
	for p.Spec.Parent != "" && !seen[p.Spec.Parent] {
		seen[p.Spec.Parent] = true
		parent := &planetv1.ResourcePool{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Spec.Parent}, parent); err != nil {
			return p, client.IgnoreNotFound(err) // an orphan: Invalid in the accounting, which refuses it below
		}
		p = parent
	}
	return p, nil
}

// poolFits judges the new sub-pool as the ResourcePool webhook does, from
// the cached pools and nodes: "" when it fits on every node it spans.
func (r *TicketReconciler) poolFits(ctx context.Context, p *planetv1.ResourcePool) (string, error) {
	list := &planetv1.ResourcePoolList{}
	if err := r.List(ctx, list); err != nil {
		return "", err
	}
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes, client.HasLabels{planetv1.LabelSite}); err != nil {
		return "", err
	}
	specs := make([]pools.Spec, len(list.Items))
	for i := range list.Items {
		specs[i] = pools.SpecOf(&list.Items[i])
	}
	infos, capacity := pools.NodesOf(nodes.Items)
	verdict := pools.Judge(specs, infos, capacity, pools.SpecOf(p), r.Now())
	return verdict.Why, nil
}
