package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
)

// SiteReconciler keeps a Site's namespace and role bindings, and counts its
// nodes and slices.
type SiteReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// View holds the pool accounting and the slivers on each node, for the
	// site's allocations to authorities (nil: none are shown).
	View *clusterview.View
}

// siteRoles maps each site role to the subjects that hold it.
func siteRoles(s *planetv1.Site) map[string][]planetv1.Subject {
	return map[string][]planetv1.Subject{naming.RolePI: s.Spec.PIs, naming.RoleTech: s.Spec.Techs, naming.RoleUser: s.Spec.Users}
}

// +kubebuilder:rbac:groups=planetkube.io,resources=sites,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=sites/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=planetkube-site-pi;planetkube-site-tech;planetkube-site-user;planetkube-slice-user
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=sites/finalizers,verbs=update

// Reconcile brings a Site's namespace and bindings to its spec and updates
// its status.
func (r *SiteReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	site := &planetv1.Site{}
	if err := r.Get(ctx, req.NamespacedName, site); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !site.DeletionTimestamp.IsZero() {
		// The namespace and its bindings are owned by the Site: the garbage
		// collector removes them.
		return ctrl.Result{}, nil
	}
	old := site.DeepCopy()
	ready, err := r.ensure(ctx, site)
	if cerr := r.count(ctx, site); cerr != nil {
		err = errors.Join(err, cerr)
	}
	site.Status.Namespace = site.Name
	site.Status.Allocations = r.allocations(site)
	site.Status.ObservedGeneration = site.Generation
	ready.ObservedGeneration = site.Generation
	health.Set(&site.Status.Conditions, ready, health.SiteRules)
	switch {
	case old.Status.ObservedGeneration == 0:
		// The first status is written whole: a merge patch leaves out
		// counts that are 0, and kubectl would show them blank.
		if uerr := r.Status().Update(ctx, site); uerr != nil {
			err = errors.Join(err, fmt.Errorf("writing site status: %w", uerr))
		}
	default:
		err = errors.Join(err, patchStatus(ctx, r.Client, old, site, &old.Status, &site.Status))
	}
	if len(site.Status.Allocations) > 0 {
		// What the slivers use follows the view, which the sliver events
		// that queue this reconcile may reach after it: look again.
		return ctrl.Result{RequeueAfter: allocationRefresh}, err
	}
	return ctrl.Result{}, err
}

// allocationRefresh is how often a site with allocations to authorities
// reads again what their slivers use.
const allocationRefresh = time.Minute

// allocations lists, by authority, what the site's root pools allocate to
// each authority on its nodes and what that authority's slivers use of it
// (at most maxSiteAllocations, by name).
func (r *SiteReconciler) allocations(site *planetv1.Site) []planetv1.AuthorityAllocation {
	if r.View == nil {
		return nil
	}
	if !r.View.Synced() {
		return site.Status.Allocations // not accounted yet: keep what was written
	}
	byAuthority := r.View.Allocations(site.Name)
	out := make([]planetv1.AuthorityAllocation, 0, len(byAuthority))
	for _, a := range slices.Sorted(maps.Keys(byAuthority)) {
		u := byAuthority[a]
		out = append(out, planetv1.AuthorityAllocation{Authority: a, Nodes: int32(u.Nodes), Allocated: u.Allocated, Used: u.Used})
	}
	if len(out) > maxSiteAllocations {
		out = out[:maxSiteAllocations]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// siteOfNode maps a sliver to the site of its node.
func (r *SiteReconciler) siteOfNode(ctx context.Context, o client.Object) []reconcile.Request {
	p, ok := o.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return nil
	}
	n := &corev1.Node{}
	if err := r.Get(ctx, types.NamespacedName{Name: p.Spec.NodeName}, n); err != nil || n.Labels[planetv1.LabelSite] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: n.Labels[planetv1.LabelSite]}}}
}

// maxSiteAllocations bounds SiteStatus.Allocations.
const maxSiteAllocations = 32

// ensure makes the site's namespace and role bindings and returns the
// Ready condition they give; a failed step is Ready=False with its reason
// (and the error, which retries the reconcile).
func (r *SiteReconciler) ensure(ctx context.Context, site *planetv1.Site) (metav1.Condition, error) {
	err := r.ensureNamespace(ctx, site)
	reason := planetv1.ReasonNamespaceFailed
	if err == nil {
		err, reason = r.ensureRoleBindings(ctx, site), planetv1.ReasonAccessFailed
	}
	var conflict *conflictError
	switch {
	case errorsAs(err, &conflict):
		r.Recorder.Eventf(site, nil, corev1.EventTypeWarning, planetv1.ReasonNamespaceConflict, "Reconcile", conflict.Error())
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: planetv1.ReasonNamespaceConflict, Message: conflict.Error()}, nil
	case err != nil:
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: reason, Message: health.Truncate(err.Error(), 1024)}, err
	case site.Spec.State == planetv1.SiteDisabled:
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: planetv1.ReasonSiteDisabled, Message: "the site is disabled, as its owner asked: its slices run no slivers"}, nil
	}
	return metav1.Condition{Status: metav1.ConditionTrue, Reason: planetv1.ReasonReconciled, Message: "the site's namespace and role bindings are in place"}, nil
}

// ensureNamespace creates the site's namespace, owned by the Site, or checks
// that the existing one is the site's.
func (r *SiteReconciler) ensureNamespace(ctx context.Context, site *planetv1.Site) error {
	ns := &corev1.Namespace{}
	err := r.Get(ctx, types.NamespacedName{Name: site.Name}, ns)
	if apierrors.IsNotFound(err) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: site.Name, Labels: map[string]string{
			planetv1.LabelSite:      site.Name,
			planetv1.LabelManagedBy: planetv1.ManagedByValue,
		}}}
		if err := controllerutil.SetControllerReference(site, ns, r.Scheme()); err != nil {
			return err
		}
		if err := r.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating site namespace: %w", err)
		}
		ctrl.LoggerFrom(ctx).Info("Created site namespace", "namespace", site.Name)
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(ns, site) {
		return &conflictError{fmt.Sprintf("namespace %s exists and is not this site's: delete it or rename the site", site.Name)}
	}
	return nil
}

// ensureRoleBindings binds each site role's ClusterRole to its subjects in
// the site namespace; a role with no subjects has no binding.
func (r *SiteReconciler) ensureRoleBindings(ctx context.Context, site *planetv1.Site) error {
	for role, subjects := range siteRoles(site) {
		name := naming.SiteRoleBinding(role)
		if len(subjects) == 0 {
			// Delete only a binding the cache holds: a site without techs
			// must not send a DELETE on every reconcile.
			rb := &rbacv1.RoleBinding{}
			err := r.Get(ctx, types.NamespacedName{Namespace: site.Name, Name: name}, rb)
			if client.IgnoreNotFound(err) != nil {
				return err
			}
			if err == nil && rb.DeletionTimestamp.IsZero() {
				if err := r.Delete(ctx, rb, client.Preconditions{UID: &rb.UID}); client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("deleting role binding %s: %w", name, err)
				}
			}
			continue
		}
		want := roleBinding(name, site.Name, naming.SiteClusterRole(role), rbacSubjects(subjects), map[string]string{planetv1.LabelSite: site.Name})
		if err := controllerutil.SetControllerReference(site, want, r.Scheme()); err != nil {
			return err
		}
		if err := ensureRoleBinding(ctx, r.Client, want); err != nil {
			return err
		}
	}
	return nil
}

// count fills the node and slice counts of the site's status.
func (r *SiteReconciler) count(ctx context.Context, site *planetv1.Site) error {
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes, client.MatchingLabels{planetv1.LabelSite: site.Name}, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return err
	}
	site.Status.Nodes, site.Status.ReadyNodes = int32(len(nodes.Items)), 0
	for i := range nodes.Items {
		if ok, _, _ := nodeReady(&nodes.Items[i]); ok {
			site.Status.ReadyNodes++
		}
	}
	slices := &planetv1.SliceList{}
	if err := r.List(ctx, slices, client.InNamespace(site.Name)); err != nil {
		return err
	}
	site.Status.Slices = int32(len(slices.Items))
	return nil
}

// SetupWithManager registers the controller: it watches Sites, what they
// own, their nodes and their slices.
func (r *SiteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&planetv1.Site{}).
		Owns(&corev1.Namespace{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if s := o.GetLabels()[planetv1.LabelSite]; s != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: s}}}
			}
			return nil
		}), builder.WithPredicates(nodeChanged)).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		}), builder.WithPredicates(createOrDelete))
	if r.View != nil {
		// A sliver made or deleted on an allocation changes what its
		// authority uses of the site.
		b = b.Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.siteOfNode), builder.WithPredicates(createOrDelete,
			predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetAnnotations()[clusterview.AnnotationAllocation] != "" })))
		// A new accounting that changes allocations may change what the
		// sites allocate (rare: a pool or a node of one changed).
		b = b.WatchesRawSource(r.View.Source(func(ctx context.Context, c clusterview.Change) []reconcile.Request {
			if len(c.Allocations) == 0 {
				return nil
			}
			sites := &planetv1.SiteList{}
			if err := r.List(ctx, sites); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(sites.Items))
			for i := range sites.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: sites.Items[i].Name}})
			}
			return out
		}))
	}
	return b.Complete(r)
}
