package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/expiry"
)

// gate is what a slice's site, expiry and state allow this reconcile to do.
type gate struct {
	// ownNamespace: the slice is admitted by its site, so it has a namespace.
	ownNamespace bool
	// runSlivers: the slice should run slivers now.
	runSlivers bool
	// blockReason and blockMessage explain why the slice runs no slivers.
	blockReason, blockMessage string
	// invalidExpiry explains why spec.expiresAt was refused.
	invalidExpiry string
	expiresAt     time.Time
	expired       bool
	suspended     bool
	requeueAfter  time.Duration

	// notice is how near the expiry in force is (expiry.Notice).
	notice expiry.Stage
}

// block stops the slice's slivers for a reason.
func (g *gate) block(reason, msg string) {
	g.runSlivers, g.blockReason, g.blockMessage = false, reason, msg
}

// gate decides, from the slice's site and its own expiry and state, whether
// the slice is admitted and whether it runs slivers now.
func (r *SliceReconciler) gate(ctx context.Context, slice *planetv1.Slice, id sliceIdentity) (gate, error) {
	now := r.Now()
	var inForce *time.Time
	if slice.Status.ExpiresAt != nil {
		inForce = &slice.Status.ExpiresAt.Time
	}
	var requested *time.Time
	if slice.Spec.ExpiresAt != nil {
		requested = &slice.Spec.ExpiresAt.Time
	}
	d := expiry.Evaluate(slice.CreationTimestamp.Time, requested, inForce, now)
	g := gate{
		runSlivers: true, invalidExpiry: d.Invalid, expiresAt: d.ExpiresAt, expired: d.Expired,
		suspended: slice.Spec.State == planetv1.SliceSuspended,
	}
	if d.RequeueAfter > 0 {
		// Wake just after the expiry, not just before it.
		g.requeueAfter = d.RequeueAfter + time.Second
	}
	// Wake just after the slice enters its last week and its last day,
	// to tell its PI (noteExpiry); a suspended slice gets no notice, and
	// its resumption (a spec change) wakes it.
	var next time.Duration
	g.notice, next = expiry.Notice(d.ExpiresAt, now)
	if next > 0 && !g.suspended {
		g.requeueAfter = soonest(g.requeueAfter, next+time.Second)
	}

	if id.foreign {
		// A foreign slice has no site here: no maxSlices and no site
		// state; the sites that trust its authority run it.
		if id.invalid != "" {
			g.block(planetv1.ReasonNotAForeignSlice, id.invalid)
			return g, nil
		}
	} else if admitted, err := r.siteAdmits(ctx, slice, &g); err != nil || !admitted {
		return g, err
	}
	g.ownNamespace = true
	switch {
	case g.expired:
		g.block(planetv1.ReasonExpired, fmt.Sprintf("the slice expired at %s: renew it by setting spec.expiresAt up to 8 weeks ahead", d.ExpiresAt.UTC().Format(time.RFC3339)))
	case g.suspended:
		g.block(planetv1.ReasonSuspended, "the slice is suspended: set spec.state to Active to run its slivers")
	}
	return g, nil
}

// siteAdmits checks a local slice against its site: the site exists, is
// enabled, and the slice is within its maxSlices.
func (r *SliceReconciler) siteAdmits(ctx context.Context, slice *planetv1.Slice, g *gate) (bool, error) {
	site := &planetv1.Site{}
	if err := r.Get(ctx, client.ObjectKey{Name: slice.Namespace}, site); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return false, err
		}
		g.block(planetv1.ReasonSiteNotFound, fmt.Sprintf("namespace %s is not a site's namespace: a Slice lives in the namespace of its Site", slice.Namespace))
		return false, nil
	}
	if site.Spec.State == planetv1.SiteDisabled {
		g.block(planetv1.ReasonSiteDisabled, fmt.Sprintf("site %s is disabled: its slices run no slivers", site.Name))
		return false, nil
	}
	rank, limit, err := r.sliceRank(ctx, slice, site)
	if err != nil {
		return false, err
	}
	if rank >= limit {
		g.block(planetv1.ReasonSiteSliceLimit, fmt.Sprintf("site %s is at its limit of %d slices (maxSlices); this slice is number %d by creation time: delete a slice or raise maxSlices", site.Name, limit, rank+1))
		return false, nil
	}
	return true, nil
}

// sliceRank returns the slice's position among its site's live slices, oldest
// first, and the site's slice limit: the first maxSlices slices run.
func (r *SliceReconciler) sliceRank(ctx context.Context, slice *planetv1.Slice, site *planetv1.Site) (rank, limit int, err error) {
	limit = planetv1.DefaultMaxSlices
	if site.Spec.MaxSlices != nil {
		limit = int(*site.Spec.MaxSlices)
	}
	list := &planetv1.SliceList{}
	if err := r.List(ctx, list, client.InNamespace(slice.Namespace)); err != nil {
		return 0, 0, err
	}
	live := make([]*planetv1.Slice, 0, len(list.Items))
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp.IsZero() {
			live = append(live, &list.Items[i])
		}
	}
	sort.Slice(live, func(i, j int) bool { return olderFirst(live[i].ObjectMeta, live[j].ObjectMeta) })
	for i, s := range live {
		if s.Name == slice.Name {
			return i, limit, nil
		}
	}
	return len(live), limit, nil
}

// olderFirst orders objects by creation time, then name.
func olderFirst(a, b metav1.ObjectMeta) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}
