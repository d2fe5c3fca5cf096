package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/pools"
)

// poolView is the accounting of every pool at one time.
type poolView struct {
	// pools are the ResourcePools read, as in the cache.
	pools  []planetv1.ResourcePool
	result pools.Result
	// nodes holds each pool's resolved nodes, by key.
	nodes map[string][]string
	// reserved holds, per node, what contributing root pools reserve.
	reserved map[string]corev1.ResourceList
}

// accountPools reads every pool and node from the cache, resolves each
// pool's nodes and does the accounting.
func accountPools(ctx context.Context, c client.Reader, now time.Time) (poolView, error) {
	list := &planetv1.ResourcePoolList{}
	if err := c.List(ctx, list); err != nil || len(list.Items) == 0 {
		return poolView{}, err
	}
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.HasLabels{planetv1.LabelSite}, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return poolView{}, err
	}
	infos, capacity := pools.NodesOf(nodes.Items)
	specs := make([]pools.Spec, 0, len(list.Items))
	for i := range list.Items {
		specs = append(specs, pools.SpecOf(&list.Items[i]))
	}
	resolved := pools.Resolve(specs, infos)
	view := poolView{pools: list.Items, result: pools.Account(resolved, capacity, now), nodes: map[string][]string{}}
	for _, p := range resolved {
		view.nodes[p.Key] = p.Nodes
	}
	view.reserved = pools.Reserved(resolved, view.result)
	return view, nil
}

// reservations are what resource pools mean for one slice's slivers.
type reservations struct {
	// bound holds, per node, the amounts bound to the slice.
	bound map[string]corev1.ResourceList
	// reserved holds, per node, what root pools reserve (taken out of the
	// fair share).
	reserved map[string]corev1.ResourceList
	// nextChange is when a binding ends next (zero: none).
	nextChange time.Time
}

// sliceReservations does the pool accounting (nothing when there is no pool)
// and returns what it means for the slice.
func sliceReservations(ctx context.Context, c client.Reader, slice *planetv1.Slice, now time.Time) (reservations, error) {
	view, err := accountPools(ctx, c, now)
	if err != nil {
		return reservations{}, err
	}
	return reservations{
		bound:      view.result.Bound[slice.Namespace+"/"+slice.Name],
		reserved:   view.reserved,
		nextChange: view.result.NextChange,
	}, nil
}
