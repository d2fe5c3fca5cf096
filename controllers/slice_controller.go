package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
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
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/coalesce"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
	"github.com/planetkube/planetkube/internal/sliverplan"
)

// SliceReconciler gives a Slice its namespace, access for its users and one
// sliver Pod on every node it chose.
type SliceReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// View is the shared view of nodes, their free room and the pool
	// accounting.
	View *clusterview.View
	// Backoff spaces out the replacement of failed slivers, per slice and
	// node (default: 1 s doubling up to 15 min, as the DaemonSet
	// controller's).
	Backoff *flowcontrol.Backoff
	// Authority is the first part of slice full names.
	Authority string
	// DefaultTrust is whom a site that sets no trustedAuthorities trusts
	// (empty: Authority alone).
	DefaultTrust []string
	// SliverWriters bounds the parallel sliver writes (creations and
	// deletions) of every reconcile together: more slices reconciled at
	// once do not put more writes in flight.
	SliverWriters int
	// SharesPerNode divides a node's unreserved CPU into share units.
	SharesPerNode int32
	// Workers is the number of slices reconciled at once.
	Workers int
	// StatusHolds holds a slice's status changes for its window while only
	// its slivers' counts, placement and messages move, so that a node
	// joining costs a slice one status write, not one per sliver
	// transition; the first status, a new generation or an error is
	// written at once (statusUrgent). nil writes every change at once.
	StatusHolds *coalesce.Holds
	// KeysRecheck bounds how often new slivers write a slice's keys Secret
	// again although its hash on the namespace says it is as it must be
	// (the manager does not watch Secrets: the write brings back one
	// deleted by hand): at most once per slice per KeysRecheck, the
	// manager's start counting as a write. 0 writes it with every new
	// sliver.
	KeysRecheck time.Duration
	// Now returns the current time; tests may set it.
	Now func() time.Time

	// notices remembers, per slice UID, the expiry notice last sent as an
	// event (a sentNotice). A reconcile compares the condition with the
	// slice it read from the cache, which may not have the previous
	// reconcile's status write yet: without this, a slice reconciled twice
	// in a row as it enters its last week (created, then its namespace
	// made) would be told twice. An entry goes when its slice leaves its
	// last week and day, or, once its expiry has passed, when another
	// notice is sent (a slice deleted in its last week is not reconciled
	// again).
	notices sync.Map
	// keysWritten remembers, per slice UID, when this manager last wrote
	// the slice's keys Secret (a time.Time); started is when it started.
	keysWritten sync.Map
	started     time.Time
	// writeSlots holds a token for each sliver write in flight, at most
	// SliverWriters across every reconcile (writeEach).
	writeSlots chan struct{}
	// pods is the pod informer's store, which slivers are read from as
	// they are cached (sliversOf).
	pods toolscache.Indexer
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;patch

// Reconcile brings a slice's namespace, access and slivers to its spec. The
// status is written on every exit, errors included, with the failing step's
// reason.
func (r *SliceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	slice := &planetv1.Slice{}
	if err := r.Get(ctx, req.NamespacedName, slice); err != nil {
		if apierrors.IsNotFound(err) {
			r.StatusHolds.Forget(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !slice.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, slice)
	}
	if !controllerutil.ContainsFinalizer(slice, planetv1.SliceFinalizer) {
		if err := setFinalizer(ctx, r.Client, slice, planetv1.SliceFinalizer, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := slice.DeepCopy()
	// Whose the slice is, worked out once for the whole reconcile.
	id := r.identity(slice)
	var (
		g       gate
		plan    sliverplan.Plan
		summary *planetv1.PlacementSummary
		fail    *stepError
	)
	defer func() {
		if retErr != nil && !errorsAs(retErr, &fail) {
			fail = &stepError{reason: planetv1.ReasonSliversFailed, err: retErr}
		}
		r.setStatus(slice, id, g, plan, summary, fail)
		r.noteExpiry(old, slice, g)
		if after := r.holdStatus(req, old, slice, retErr != nil); after > 0 {
			res.RequeueAfter = soonest(res.RequeueAfter, after)
			return
		}
		r.emitTransitionEvent(old, slice)
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, old, slice, &old.Status, &slice.Status))
	}()

	g, err := r.gate(ctx, slice, id)
	if err != nil {
		return ctrl.Result{}, &stepError{reason: planetv1.ReasonSiteLookupFailed, err: err}
	}
	var ns *corev1.Namespace
	if g.ownNamespace {
		if ns, err = r.ensureSliceNamespace(ctx, slice, id); err != nil {
			var conflict *conflictError
			if errorsAs(err, &fail) && fail.reason == planetv1.ReasonNamespaceTerminating {
				// Not an error to retry: the namespace's deletion queues
				// the slice again.
				return ctrl.Result{}, nil
			}
			if !errorsAs(err, &conflict) {
				return ctrl.Result{}, err
			}
			// The namespace is someone else's: say so without naming
			// anything of theirs in this slice's status.
			g.ownNamespace = false
			g.block(planetv1.ReasonNamespaceConflict, conflict.Error())
		}
	}
	if !g.runSlivers {
		ns = nil
	}
	plan, summary, backOff, err := r.syncSlivers(ctx, slice, id, ns, g)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: soonest(g.requeueAfter, backOff)}, nil
}

// holdStatus says how long the slice's changed status waits to be written
// with the changes after it (StatusHolds), or 0 to write it now; a status
// as written, or a reconcile that failed, holds nothing.
func (r *SliceReconciler) holdStatus(req ctrl.Request, old, cur *planetv1.Slice, failed bool) time.Duration {
	if equality.Semantic.DeepEqual(old.Status, cur.Status) {
		r.StatusHolds.Forget(req.String())
		return 0
	}
	// The wall clock, not r.Now: the window paces writes, and a test's
	// frozen clock must not hold a change for ever.
	write, after := r.StatusHolds.Decide(req.String(), failed || statusUrgent(&old.Status, &cur.Status), time.Now())
	if write {
		return 0
	}
	return after
}

// stepError is an error of one step of a reconcile, with the reason the
// slice's Ready condition shows for it.
type stepError struct {
	reason string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

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
	name := r.identity(slice).namespace()
	if name == "" {
		return setFinalizer(ctx, r.Client, slice, planetv1.SliceFinalizer, false)
	}
	err := r.Get(ctx, types.NamespacedName{Name: name}, ns)
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	r.keysWritten.Delete(slice.UID)
	if err == nil && ownsNamespace(slice, ns) && ns.DeletionTimestamp.IsZero() {
		if err := r.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting slice namespace %s: %w", name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted slice namespace", "namespace", name)
	}
	return setFinalizer(ctx, r.Client, slice, planetv1.SliceFinalizer, false)
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
	case planetv1.ReasonSiteNotFound, planetv1.ReasonSiteDisabled, planetv1.ReasonSiteSliceLimit, planetv1.ReasonInvalidExpiry,
		planetv1.ReasonNoMatchingNodes, planetv1.ReasonNamespaceConflict:
		r.Recorder.Eventf(cur, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", now.Message)
	case planetv1.ReasonExpired, planetv1.ReasonSuspended:
		r.Recorder.Eventf(cur, nil, corev1.EventTypeNormal, now.Reason, "Reconcile", now.Message)
	}
}

// sliverChanged passes the pod events that change a slice's status or plan:
// create, delete, and updates of phase, readiness, deletion or the reasons
// shown for a sliver that is not ready (ContainerCreating, then
// ErrImagePull ...).
var sliverChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*corev1.Pod)
		n, okN := e.ObjectNew.(*corev1.Pod)
		if !okO || !okN {
			return true
		}
		return sliverplan.SliverOf(o, annotationTemplateHash, annotationReservedHash) !=
			sliverplan.SliverOf(n, annotationTemplateHash, annotationReservedHash)
	},
}

// allocatedTo says whether the slice's authority is one of authorities or
// a delegate of one.
func (r *SliceReconciler) allocatedTo(s *planetv1.Slice, authorities []string) bool {
	id := r.identity(s)
	for _, a := range authorities {
		if id.invalid == "" && naming.WithinAuthority(id.authority, a) {
			return true
		}
	}
	return false
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

// viewChanged maps a change of the view to the slices it concerns: those
// whose selection matches the node before or after (and only those), those
// whose bound amounts changed, and those of the authorities (delegates
// included) whose allocations changed.
func (r *SliceReconciler) viewChanged(ctx context.Context, c clusterview.Change) []reconcile.Request {
	var out []reconcile.Request
	for _, key := range c.BoundSlices {
		if ns, name, ok := strings.Cut(key, "/"); ok {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
		}
	}
	if c.Node == nil && len(c.Allocations) == 0 {
		return out
	}
	list := &planetv1.SliceList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil { // read-only
		ctrl.LoggerFrom(ctx).Error(err, "Listing slices")
		return out
	}
	for i := range list.Items {
		s := &list.Items[i]
		if len(c.Allocations) > 0 && r.allocatedTo(s, c.Allocations) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
			continue
		}
		if c.Node == nil {
			continue
		}
		req, err := placementRequest(s, nil)
		if err != nil {
			continue
		}
		if (c.Node.Old != nil && placement.Matches(c.Node.Old, req)) || (c.Node.New != nil && placement.Matches(c.Node.New, req)) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(s)})
		}
	}
	return out
}

// SetupWithManager registers the controller. Changes of the view (nodes
// that the slice's selection matches, amounts bound to it) re-place the
// slice; site changes, and slices created or deleted, re-check the site's
// slices (the maxSlices rank).
func (r *SliceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	r.started = time.Now()
	inf, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("getting the pod informer: %w", err)
	}
	s, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return fmt.Errorf("the pod informer (%T) has no store to read slivers from", inf)
	}
	r.pods = s.GetIndexer()
	r.writeSlots = make(chan struct{}, max(1, r.SliverWriters))
	if r.Backoff == nil {
		r.Backoff = flowcontrol.NewBackOff(time.Second, 15*time.Minute)
	}
	// siteSlices lists the slices of a site's namespace ("": of every
	// namespace).
	siteSlices := func(ctx context.Context, site string) []reconcile.Request {
		return listRequests(ctx, r, &planetv1.SliceList{}, client.InNamespace(site))
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&planetv1.Slice{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject), builder.WithPredicates(sliverChanged)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject)).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(sliceOfObject)).
		WatchesRawSource(r.View.Source(r.viewChanged)).
		// Its spec (maxSlices, state), not its status (the usage
		// gatherer writes the site's contribution every round).
		Watches(&planetv1.Site{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return siteSlices(ctx, o.GetName())
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A site that changes whom it trusts (or is disabled) changes
		// which slices its nodes run: every slice may gain or lose slivers.
		Watches(&planetv1.Site{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return siteSlices(ctx, "")
		}), builder.WithPredicates(trustChanged)).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return siteSlices(ctx, o.GetNamespace())
		}), builder.WithPredicates(predicate.Funcs{
			// A slice created or deleted moves the others' maxSlices rank:
			// two created in the same second must not both run.
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
