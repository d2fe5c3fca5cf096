package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/pools"
)

// Condition types and reasons of ResourcePools.
const (
	ConditionBound         = "Bound"
	ConditionOvercommitted = "Overcommitted"

	ReasonPoolAccepted   = "Accepted"
	ReasonPoolInvalid    = "Invalid"
	ReasonOvercommitted  = "Overcommitted"
	ReasonFits           = "Fits"
	ReasonBindingActive  = "BindingActive"
	ReasonNotBound       = "NotBound"
	ReasonBindingExpired = "BindingExpired"
)

// maxPoolNodeStatus bounds ResourcePoolStatus.Nodes.
const maxPoolNodeStatus = 100

// ResourcePoolReconciler keeps every pool's accounting in its status.
// Accounting is global (root pools share nodes; sub-pools share parents), so
// every pool or node event queues one request, accountingKey: its reconcile
// does the accounting once and patches the statuses that changed, instead of
// doing it once per pool.
type ResourcePoolReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// accountingKey is the one request the pool controller works on.
var accountingKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "planetkube-pool-accounting"}}

// +kubebuilder:rbac:groups=planetkube.io,resources=resourcepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=resourcepools/status,verbs=get;update;patch

// Reconcile does the accounting of every pool and writes their statuses.
func (r *ResourcePoolReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	now := r.Now()
	view, err := accountPools(ctx, r.Client, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	var errs []error
	for i := range view.pools {
		pool := &view.pools[i]
		old := pool.DeepCopy()
		setPoolStatus(pool, view.result.Pools[pools.KeyOf(pool)], view.nodes[pools.KeyOf(pool)])
		if equality.Semantic.DeepEqual(old.Status, pool.Status) {
			continue
		}
		r.emitPoolEvents(old, pool)
		if err := r.Status().Patch(ctx, pool, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("patching the status of pool %s: %w", pools.KeyOf(pool), err))
		}
	}
	if len(errs) > 0 {
		return ctrl.Result{}, errors.Join(errs...)
	}
	var after time.Duration
	if next := view.result.NextChange; !next.IsZero() {
		// Wake just after the next binding ends.
		after = next.Sub(now) + time.Second
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// setPoolStatus writes a pool's accounting into its status.
func setPoolStatus(pool *planetv1.ResourcePool, res *pools.PoolResult, nodes []string) {
	st := &pool.Status
	st.ObservedGeneration = pool.Generation
	st.NodeCount = int32(len(nodes))
	st.Nodes = nil
	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pool.Generation})
	}
	switch {
	case res == nil:
		cond(planetv1.ConditionReady, false, ReasonPoolInvalid, "the pool is not accounted yet")
		return
	case res.Invalid != "":
		cond(planetv1.ConditionReady, false, ReasonPoolInvalid, res.Invalid)
		cond(ConditionOvercommitted, false, ReasonPoolInvalid, "the pool is invalid: "+res.Invalid)
	case res.Overcommitted != "":
		cond(planetv1.ConditionReady, false, ReasonOvercommitted, "the pool does not fit and holds nothing: "+res.Overcommitted)
		cond(ConditionOvercommitted, true, ReasonOvercommitted, res.Overcommitted)
	default:
		cond(planetv1.ConditionReady, true, ReasonPoolAccepted, fmt.Sprintf("the pool holds its amounts on %d nodes", len(nodes)))
		cond(ConditionOvercommitted, false, ReasonFits, "the pool fits")
		st.Nodes = poolNodeStatus(res.Nodes)
	}
	b := pool.Spec.Binding
	switch {
	case b == nil:
		cond(ConditionBound, false, ReasonNotBound, "the pool has no binding")
		meta.RemoveStatusCondition(&st.Conditions, planetv1.ConditionExpired)
	case res.BindingExpired:
		cond(ConditionBound, false, ReasonBindingExpired, fmt.Sprintf("the binding to %s ended at %s", b.Slice, b.Until.UTC().Format(time.RFC3339)))
		cond(planetv1.ConditionExpired, true, ReasonBindingExpired, fmt.Sprintf("the binding to %s ended at %s", b.Slice, b.Until.UTC().Format(time.RFC3339)))
	default:
		cond(ConditionBound, res.Contributes(), ReasonBindingActive, fmt.Sprintf("bound to %s until %s", b.Slice, b.Until.UTC().Format(time.RFC3339)))
		cond(planetv1.ConditionExpired, false, ReasonBindingActive, fmt.Sprintf("the binding ends at %s", b.Until.UTC().Format(time.RFC3339)))
	}
}

// poolNodeStatus lists at most maxPoolNodeStatus nodes' accounting, those
// with the least free first (then by name).
func poolNodeStatus(nodes map[string]pools.NodeAccount) []planetv1.PoolNodeStatus {
	out := make([]planetv1.PoolNodeStatus, 0, len(nodes))
	for n, a := range nodes {
		out = append(out, planetv1.PoolNodeStatus{Node: n, Allocated: a.Allocated, Free: a.Free})
	}
	sort.Slice(out, func(i, j int) bool {
		fi, fj := freeScore(out[i].Free), freeScore(out[j].Free)
		if fi != fj {
			return fi < fj
		}
		return out[i].Node < out[j].Node
	})
	if len(out) > maxPoolNodeStatus {
		out = out[:maxPoolNodeStatus]
	}
	return out
}

// freeScore orders nodes by free CPU, then memory.
func freeScore(free corev1.ResourceList) float64 {
	return float64(free.Cpu().MilliValue())*1e12 + float64(free.Memory().Value())/1e6
}

// emitPoolEvents records the transitions a pool's owners must see.
func (r *ResourcePoolReconciler) emitPoolEvents(old, cur *planetv1.ResourcePool) {
	for _, t := range []string{ConditionOvercommitted, ConditionBound, planetv1.ConditionExpired} {
		was := meta.FindStatusCondition(old.Status.Conditions, t)
		now := meta.FindStatusCondition(cur.Status.Conditions, t)
		if now == nil || now.Status != metav1.ConditionTrue || (was != nil && was.Status == now.Status && was.Reason == now.Reason) {
			continue
		}
		kind := corev1.EventTypeNormal
		if t == ConditionOvercommitted {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(cur, nil, kind, now.Reason, "Account", now.Message)
	}
}

// SetupWithManager registers the controller: a change of a pool's spec
// (not its status) or of a node queues the accounting.
func (r *ResourcePoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	account := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{accountingKey}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("resourcepool").
		WatchesRawSource(source.Kind(mgr.GetCache(), &planetv1.ResourcePool{},
			handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *planetv1.ResourcePool) []reconcile.Request {
				return []reconcile.Request{accountingKey}
			}), predicate.TypedGenerationChangedPredicate[*planetv1.ResourcePool]{})).
		Watches(&corev1.Node{}, account, builder.WithPredicates(nodeChanged)).
		Complete(r)
}
