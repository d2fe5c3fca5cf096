package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// SliceReconciler gives a Slice its namespace, access for its users and one
// sliver Pod on every node it chose.
type SliceReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Authority is the first part of slice full names.
	Authority string
	// SliverWriters bounds the parallel sliver writes of one reconcile.
	SliverWriters int
	// SharesPerNode divides a node's unreserved CPU into share units.
	SharesPerNode int32
	// Workers is the number of slices reconciled at once.
	Workers int
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;patch

// Reconcile brings a slice's namespace, access and slivers to its spec.
func (r *SliceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	slice := &planetv1.Slice{}
	if err := r.Get(ctx, req.NamespacedName, slice); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !slice.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, slice)
	}
	if !controllerutil.ContainsFinalizer(slice, planetv1.SliceFinalizer) {
		patch := client.MergeFrom(slice.DeepCopy())
		controllerutil.AddFinalizer(slice, planetv1.SliceFinalizer)
		if err := r.Patch(ctx, slice, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	old := slice.DeepCopy()

	g, err := r.gate(ctx, slice)
	if err != nil {
		return ctrl.Result{}, err
	}
	var ns *corev1.Namespace
	if g.ownNamespace {
		var err error
		if ns, err = r.ensureSliceNamespace(ctx, slice); err != nil {
			if !errorsAs(err, new(*conflictError)) {
				return ctrl.Result{}, err
			}
			g.block(ReasonNamespaceConflict, err.Error())
		}
	}
	if !g.runSlivers {
		ns = nil
	}
	rsv, err := sliceReservations(ctx, r.Client, slice, r.Now())
	if err != nil {
		return ctrl.Result{}, err
	}
	obs, syncErr := r.syncSlivers(ctx, slice, ns, rsv)
	r.setStatus(slice, g, obs)
	r.emitTransitionEvent(old, slice)
	if !equality.Semantic.DeepEqual(old.Status, slice.Status) {
		if err := r.Status().Patch(ctx, slice, client.MergeFrom(old)); err != nil {
			return ctrl.Result{}, fmt.Errorf("patching slice status: %w", err)
		}
	}
	if syncErr != nil {
		return ctrl.Result{}, syncErr
	}
	requeue := g.requeueAfter
	if len(rsv.bound) > 0 {
		// A binding of this slice may end before the pool controller's
		// status change reaches us.
		requeue = soonest(requeue, untilNext(rsv.nextChange, r.Now()))
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// untilNext returns the time from now until t plus a second (so that the
// wake-up is past t), or 0 when t is zero.
func untilNext(t, now time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return max(t.Sub(now), 0) + time.Second
}

// soonest returns the shortest positive duration, or 0 when there is none.
func soonest(ds ...time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// finalize deletes the slice namespace (with every sliver, the secret and the
// binding in it) and releases the Slice.
func (r *SliceReconciler) finalize(ctx context.Context, slice *planetv1.Slice) error {
	if !controllerutil.ContainsFinalizer(slice, planetv1.SliceFinalizer) {
		return nil
	}
	ns := &corev1.Namespace{}
	name := naming.SliceNamespace(slice.Namespace, slice.Name)
	err := r.Get(ctx, types.NamespacedName{Name: name}, ns)
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	if err == nil && ownsNamespace(slice, ns) && ns.DeletionTimestamp.IsZero() {
		if err := r.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting slice namespace %s: %w", name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted slice namespace", "namespace", name)
	}
	patch := client.MergeFrom(slice.DeepCopy())
	controllerutil.RemoveFinalizer(slice, planetv1.SliceFinalizer)
	return r.Patch(ctx, slice, patch)
}

// emitTransitionEvent records an event when the Ready reason changes to one
// a user must act on, so that a steady state does not repeat it.
func (r *SliceReconciler) emitTransitionEvent(old, cur *planetv1.Slice) {
	was := meta.FindStatusCondition(old.Status.Conditions, planetv1.ConditionReady)
	now := meta.FindStatusCondition(cur.Status.Conditions, planetv1.ConditionReady)
	if now == nil || (was != nil && was.Reason == now.Reason) {
		return
	}
	switch now.Reason {
	case ReasonSiteNotFound, ReasonSiteDisabled, ReasonSiteSliceLimit, ReasonInvalidExpiry,
		ReasonNoMatchingNodes, ReasonNamespaceConflict:
		r.Recorder.Eventf(cur, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", now.Message)
	case ReasonExpired, ReasonSuspended:
		r.Recorder.Eventf(cur, nil, corev1.EventTypeNormal, now.Reason, "Reconcile", now.Message)
	}
}

// sliverChanged passes the pod events that change a slice's status: create,
// delete, and updates of phase, readiness or deletion.
var sliverChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*corev1.Pod)
		n, okN := e.ObjectNew.(*corev1.Pod)
		if !okO || !okN {
			return true
		}
		return o.Status.Phase != n.Status.Phase || podReady(o) != podReady(n) ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

// sliceOfObject maps an object labelled with a slice and site (a sliver or a
// slice namespace) to its Slice: the site namespace is the site's name.
func sliceOfObject(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[planetv1.LabelManagedBy] != planetv1.ManagedByValue || l[planetv1.LabelSlice] == "" || l[planetv1.LabelSite] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: l[planetv1.LabelSite], Name: l[planetv1.LabelSlice]}}}
}

// boundSlice maps a pool (old or new, as the handler calls it for both) to
// the slice its binding names.
func boundSlice(_ context.Context, o client.Object) []reconcile.Request {
	p, ok := o.(*planetv1.ResourcePool)
	if !ok || p.Spec.Binding == nil {
		return nil
	}
	ns, name, found := strings.Cut(p.Spec.Binding.Slice, "/")
	if !found {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// SetupWithManager registers the controller. Node changes re-place every
// slice; site changes and slice deletions re-check the site's slices; pool
// changes (spec or status: a binding that ends) re-check the bound slice.
func (r *SliceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	allSlices := func(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
		list := &planetv1.SliceList{}
		if err := r.List(ctx, list, opts...); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing slices")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&planetv1.Slice{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject), builder.WithPredicates(sliverChanged)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject)).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return allSlices(ctx)
		}), builder.WithPredicates(nodeChanged)).
		Watches(&planetv1.ResourcePool{}, handler.EnqueueRequestsFromMapFunc(boundSlice)).
		Watches(&planetv1.Site{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return allSlices(ctx, client.InNamespace(o.GetName()))
		})).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return allSlices(ctx, client.InNamespace(o.GetNamespace()))
		}), builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
			},
		})).
		Complete(r)
}

// setCondition sets a condition with the slice's generation.
func setCondition(s *planetv1.Slice, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: s.Generation,
	})
}
