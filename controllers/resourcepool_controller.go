package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
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

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/pools"
	"github.com/planetkube/planetkube/internal/trust"
)

// maxPoolNodeStatus bounds ResourcePoolStatus.Nodes.
const maxPoolNodeStatus = 100

// ResourcePoolReconciler keeps every pool's accounting in its status.
// Accounting is global (root pools share nodes; sub-pools share parents) and
// the shared view does it once per change of pools or nodes; every new
// accounting queues one request, accountingKey, whose reconcile patches the
// statuses that changed.
type ResourcePoolReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// View does the accounting.
	View *clusterview.View
	// Trust is the install's trust policy: an allocation to an authority
	// the pool's site does not trust gives nothing and says so.
	Trust trust.Policy
}

// accountingKey is the one request the pool controller works on.
var accountingKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "planetkube-pool-accounting"}}

// +kubebuilder:rbac:groups=planetkube.io,resources=resourcepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=resourcepools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=sites,verbs=get;list;watch

// Reconcile writes the latest accounting into the pools' statuses.
func (r *ResourcePoolReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	result := r.View.Accounting()
	list := &planetv1.ResourcePoolList{}
	if err := r.List(ctx, list); err != nil {
		return ctrl.Result{}, err
	}
	sites := &planetv1.SiteList{}
	if err := r.List(ctx, sites); err != nil {
		return ctrl.Result{}, err
	}
	trusts := func(site, authority string) bool {
		for i := range sites.Items {
			if sites.Items[i].Name == site {
				return r.Trust.MayAllocate(&sites.Items[i], authority)
			}
		}
		return r.Trust.MayAllocate(nil, authority)
	}
	var errs []error
	for i := range list.Items {
		pool := &list.Items[i]
		res := result.Pools[pools.KeyOf(pool)]
		if res == nil {
			continue // not accounted yet: the next accounting queues us again
		}
		old := pool.DeepCopy()
		setPoolStatus(pool, res, trusts)
		r.emitPoolEvents(old, pool)
		errs = append(errs, patchStatus(ctx, r.Client, old, pool, &old.Status, &pool.Status))
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// setPoolStatus writes a pool's accounting into its status; trusts says
// whether a site trusts an authority.
func setPoolStatus(pool *planetv1.ResourcePool, res *pools.PoolResult, trusts func(site, authority string) bool) {
	st := &pool.Status
	st.ObservedGeneration = pool.Generation
	st.NodeCount = 0
	st.Nodes = nil
	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		c := metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pool.Generation}
		if t == planetv1.ConditionReady {
			health.Set(&st.Conditions, c, health.PoolRules)
			return
		}
		meta.SetStatusCondition(&st.Conditions, c)
	}
	switch {
	case res == nil:
		cond(planetv1.ConditionReady, false, planetv1.ReasonPoolAccounting, "the pool is not accounted yet")
		return
	case res.Invalid != "":
		cond(planetv1.ConditionReady, false, planetv1.ReasonPoolInvalid, res.Invalid)
		cond(planetv1.ConditionOvercommitted, false, planetv1.ReasonPoolInvalid, "the pool is invalid: "+res.Invalid)
	default:
		held := len(res.Nodes)
		st.NodeCount = int32(held)
		st.Nodes = poolNodeStatus(res.Nodes)
		if res.Overcommitted != "" {
			cond(planetv1.ConditionOvercommitted, true, planetv1.ReasonOvercommitted, res.Overcommitted)
		} else {
			cond(planetv1.ConditionOvercommitted, false, planetv1.ReasonFits, "the pool fits")
		}
		if len(res.Lost) == 0 {
			cond(planetv1.ConditionReady, true, planetv1.ReasonPoolAccepted, fmt.Sprintf("the pool holds its amounts on %d nodes", held))
			break
		}
		reason := planetv1.ReasonNodesMissing
		if res.Overcommitted != "" {
			reason = planetv1.ReasonOvercommitted
		}
		first := slices.Min(slices.Collect(maps.Keys(res.Lost)))
		cond(planetv1.ConditionReady, false, reason, fmt.Sprintf("the pool holds its amounts on %d of %d nodes and nothing on the others; %s",
			held, held+len(res.Lost), res.Lost[first]))
	}
	b := pool.Spec.Binding
	switch {
	case b == nil:
		cond(planetv1.ConditionBound, false, planetv1.ReasonNotBound, "the pool has no binding")
		meta.RemoveStatusCondition(&st.Conditions, planetv1.ConditionExpired)
	case res.BindingExpired:
		cond(planetv1.ConditionBound, false, planetv1.ReasonBindingExpired, fmt.Sprintf("the binding to %s ended at %s", boundTo(b), b.Until.UTC().Format(time.RFC3339)))
		cond(planetv1.ConditionExpired, true, planetv1.ReasonBindingExpired, fmt.Sprintf("the binding to %s ended at %s", boundTo(b), b.Until.UTC().Format(time.RFC3339)))
	case b.Authority != "" && !trusts(pool.Namespace, b.Authority):
		cond(planetv1.ConditionBound, false, planetv1.ReasonNotTrusted, fmt.Sprintf(
			"site %s does not trust authority %s (Site spec.trustedAuthorities): its slivers do not run here, and the pool's amounts stay reserved for it", pool.Namespace, b.Authority))
		bindingEnds(b, cond)
	default:
		cond(planetv1.ConditionBound, res.Contributes(), planetv1.ReasonBindingActive, fmt.Sprintf("bound to %s %s", boundTo(b), until(b)))
		bindingEnds(b, cond)
	}
}

// boundTo names what a binding gives the pool to.
func boundTo(b *planetv1.PoolBinding) string {
	if b.Authority != "" {
		return "authority " + b.Authority
	}
	return b.Slice
}

// until says when a binding ends.
func until(b *planetv1.PoolBinding) string {
	if b.Until.IsZero() {
		return "until the binding is removed"
	}
	return "until " + b.Until.UTC().Format(time.RFC3339)
}

// bindingEnds sets the Expired condition of an active binding: False, with
// its end if it has one; removed for an allocation that stands.
func bindingEnds(b *planetv1.PoolBinding, cond func(t string, ok bool, reason, msg string)) {
	if b.Until.IsZero() {
		cond(planetv1.ConditionExpired, false, planetv1.ReasonBindingActive, "the binding has no end")
		return
	}
	cond(planetv1.ConditionExpired, false, planetv1.ReasonBindingActive, fmt.Sprintf("the binding ends at %s", b.Until.UTC().Format(time.RFC3339)))
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
	for _, t := range []string{planetv1.ConditionOvercommitted, planetv1.ConditionBound, planetv1.ConditionExpired} {
		was := meta.FindStatusCondition(old.Status.Conditions, t)
		now := meta.FindStatusCondition(cur.Status.Conditions, t)
		if now == nil || now.Status != metav1.ConditionTrue || (was != nil && was.Status == now.Status && was.Reason == now.Reason) {
			continue
		}
		kind := corev1.EventTypeNormal
		if t == planetv1.ConditionOvercommitted {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(cur, nil, kind, now.Reason, "Account", now.Message)
	}
}

// SetupWithManager registers the controller: every new accounting of the
// view queues the accounting key.
func (r *ResourcePoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("resourcepool").
		WatchesRawSource(r.View.Source(func(_ context.Context, c clusterview.Change) []reconcile.Request {
			if !c.Accounting {
				return nil
			}
			return []reconcile.Request{accountingKey}
		})).
		// A site's trust decides whether its allocations give anything.
		Watches(&planetv1.Site{}, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return []reconcile.Request{accountingKey}
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
