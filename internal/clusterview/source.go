package clusterview

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/pools"
)

// Feed registers the view's handlers on the node, ResourcePool and pod
// informers of c (whose pods are PlanetKube's) and on the pod informer of
// pods (a cache of every other pod bound to a node), so that the view
// follows them.
func (v *View) Feed(ctx context.Context, c, pods cache.Cache) error {
	podHandler := handler(func(p *corev1.Pod) { v.SetPod(p) }, func(p *corev1.Pod) { v.DeletePodOf(p) })
	feeds := []struct {
		from cache.Cache
		obj  client.Object
		h    toolscache.ResourceEventHandler
	}{
		{c, &corev1.Node{}, handler(func(n *corev1.Node) { v.SetNode(n) }, func(n *corev1.Node) { v.DeleteNode(n.Name) })},
		{c, &planetv1.ResourcePool{}, handler(func(p *planetv1.ResourcePool) { v.SetPool(p) }, func(p *planetv1.ResourcePool) { v.DeletePool(pools.KeyOf(p)) })},
		{c, &corev1.Pod{}, podHandler},
		{pods, &corev1.Pod{}, podHandler},
	}
	for _, f := range feeds {
		inf, err := f.from.GetInformer(ctx, f.obj)
		if err != nil {
			return err
		}
		reg, err := inf.AddEventHandler(f.h)
		if err != nil {
			return err
		}
		v.AddFeed(reg.HasSynced)
	}
	return nil
}

// handler adapts set and del to an informer event handler, tombstones
// included.
func handler[T any](set, del func(T)) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { call(o, set) },
		UpdateFunc: func(_, o any) { call(o, set) },
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			call(o, del)
		},
	}
}

func call[T any](o any, fn func(T)) {
	if t, ok := o.(T); ok {
		fn(t)
	}
}

// Source is a controller source: at every change of the view it adds the
// requests map returns, and it holds the controller's workers back until
// the view is synced.
func (v *View) Source(mapFn func(context.Context, Change) []reconcile.Request) *Source {
	return &Source{view: v, mapFn: mapFn}
}

// Source is the controller source of View.Source.
type Source struct {
	view  *View
	mapFn func(context.Context, Change) []reconcile.Request
}

// Start subscribes the controller's queue to the view's changes.
func (s *Source) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	s.view.Subscribe(func(c Change) {
		if ctx.Err() != nil {
			return
		}
		for _, r := range s.mapFn(ctx, c) {
			q.Add(r)
		}
	})
	return nil
}

// WaitForSync returns once the view is synced, or with ctx's error.
func (s *Source) WaitForSync(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !s.view.Synced() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// String names the source in the controller's logs.
func (s *Source) String() string { return "clusterview" }
