package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Cache indexes of the Ticket controller: foreign Slices and ticket-made
// ResourcePools by the Ticket in force for them (annotation
// planetkube.io/granted-by), Tickets by what they redeemed
// (status.redeemed) and by the slice they are for (status.slice).
const (
	indexGrantedBy = "planetkube.io/granted-by"
	indexRedeemed  = "status.redeemed"
	indexSlice     = "status.slice"
)

// indexTicketsAndGrants registers the indexes.
func indexTicketsAndGrants(ctx context.Context, mgr ctrl.Manager) error {
	grantedBy := func(o client.Object) []string {
		if v := o.GetAnnotations()[planetv1.AnnotationGrantedBy]; v != "" && ticketMade(o) {
			return []string{v}
		}
		return nil
	}
	for _, obj := range []client.Object{&planetv1.Slice{}, &planetv1.ResourcePool{}} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, obj, indexGrantedBy, grantedBy); err != nil {
			return fmt.Errorf("indexing %T by ticket: %w", obj, err)
		}
	}
	byStatus := map[string]func(*planetv1.Ticket) string{
		indexRedeemed: func(t *planetv1.Ticket) string { return t.Status.Redeemed },
		indexSlice:    func(t *planetv1.Ticket) string { return t.Status.Slice },
	}
	for name, field := range byStatus {
		if err := mgr.GetFieldIndexer().IndexField(ctx, &planetv1.Ticket{}, name, func(o client.Object) []string {
			if t, ok := o.(*planetv1.Ticket); ok && field(t) != "" {
				return []string{field(t)}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("indexing tickets by %s: %w", name, err)
		}
	}
	return nil
}

// ticketMade says whether obj is one a ticket made here: a foreign Slice
// where its full name says it lives (its authority's namespace, which no
// site's people write), or a pool part managed by PlanetKube and named
// after its ticket. Only those are released, and only those raise a
// slice's floor: the annotations of a Slice in a site's namespace are its
// PI's to write, and must not move another slice's floor.
func ticketMade(obj client.Object) bool {
	a := obj.GetAnnotations()
	switch o := obj.(type) {
	case *planetv1.Slice:
		ns, name, ok := ticket.ForeignSliceKey(a[planetv1.AnnotationSliceFullName])
		return ok && naming.IsAuthorityNamespace(o.Namespace) && o.Namespace == ns && o.Name == name
	case *planetv1.ResourcePool:
		return o.Labels[planetv1.LabelManagedBy] == planetv1.ManagedByValue && o.Labels[planetv1.LabelAuthority] != "" &&
			strings.HasPrefix(o.Name, "ticket-") && a[planetv1.AnnotationTicketID] != ""
	}
	return false
}

// kindOf names what a ticket made, as status.redeemed writes it.
func kindOf(obj client.Object) string {
	if _, ok := obj.(*planetv1.ResourcePool); ok {
		return "ResourcePool"
	}
	return "Slice"
}

// releases says whether a ticket refused for reason gives up what it
// granted: every refusal does (its key removed, its delegation expired,
// its issuer no longer trusted, revoked, its slice gone for a pool grant),
// except expiry (an expired slice keeps its object, to be renewed) and a
// failed write (retried).
func releases(reason string) bool {
	switch reason {
	case "", planetv1.ReasonRedeemFailed, string(ticket.Expired), string(ticket.NotYetValid):
		return false
	}
	return true
}

// releaseHeld gives up what a refused Ticket was in force for: each
// foreign slice and ticket-made pool passes to another Ticket carrying the
// same ticket that is still redeemed, or is deleted. An event on the
// Ticket says so.
func (r *TicketReconciler) releaseHeld(ctx context.Context, tk *planetv1.Ticket, out *redemption) error {
	ref := tk.Namespace + "/" + tk.Name
	released, err := r.releaseGrants(ctx, ref)
	if err != nil || len(released) == 0 {
		return err
	}
	r.Recorder.Eventf(tk, nil, corev1.EventTypeWarning, out.reason, "Release",
		"released %s: the ticket no longer holds (%s)", strings.Join(released, ", "), health.Truncate(out.message, 512))
	return nil
}

// releaseGrants releases what the Ticket ref (namespace/name) is in force
// for, and returns what it released.
func (r *TicketReconciler) releaseGrants(ctx context.Context, ref string) ([]string, error) {
	var released []string
	for _, list := range []client.ObjectList{&planetv1.SliceList{}, &planetv1.ResourcePoolList{}} {
		if err := r.List(ctx, list, client.MatchingFields{indexGrantedBy: ref}); err != nil {
			return released, err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return released, err
		}
		for _, item := range items {
			obj := item.(client.Object)
			if done, err := r.releaseGrant(ctx, obj, obj.DeepCopyObject().(client.Object), ref); err != nil {
				return released, err
			} else if done {
				released = append(released, kindOf(obj)+"/"+obj.GetNamespace()+"/"+obj.GetName())
			}
		}
	}
	return released, nil
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=delete

// release handles a deleted Ticket: each foreign slice it was the ticket in
// force for passes to another redeemed Ticket of the same slice (one pulled
// and one pushed carry the same token), or, when none is left, is deleted
// with its slivers. A foreign slice lives while a ticket grants it: this is
// how a peer withdraws one (push), and how a feed that stops listing it
// removes it (pull).
func (r *TicketReconciler) release(ctx context.Context, key types.NamespacedName) error {
	_, err := r.releaseGrants(ctx, key.Namespace+"/"+key.Name)
	return err
}

// releaseGrant re-reads a foreign slice or ticket-made pool from the API
// server (the cache may not have seen a newer ticket take it over yet) and
// hands it over or deletes it, on the condition that it is unchanged
// since. It says whether it did either.
func (r *TicketReconciler) releaseGrant(ctx context.Context, cached, obj client.Object, ref string) (bool, error) {
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cached), obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if obj.GetAnnotations()[planetv1.AnnotationGrantedBy] != ref || !obj.GetDeletionTimestamp().IsZero() || !ticketMade(obj) {
		return false, nil
	}
	kind := kindOf(obj)
	log := ctrl.LoggerFrom(ctx).WithValues(kind, obj.GetNamespace()+"/"+obj.GetName(), "slice", obj.GetAnnotations()[planetv1.AnnotationSliceFullName])
	if next, err := r.otherGrant(ctx, obj, ref); err != nil || next != "" {
		if err != nil {
			return false, err
		}
		patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
		obj.GetAnnotations()[planetv1.AnnotationGrantedBy] = next
		if err := r.Patch(ctx, obj, patch); client.IgnoreNotFound(err) != nil {
			// A conflict is retried: it changed (its status, say) since it was read.
			return false, fmt.Errorf("handing %s %s/%s to ticket %s: %w", kind, obj.GetNamespace(), obj.GetName(), next, err)
		}
		log.Info("Passed to another ticket", "ticket", next)
		return true, nil
	}
	if s, ok := obj.(*planetv1.Slice); ok {
		// What it ran stays its floor: an older ticket of it does not
		// bring it back.
		rec := recordOf{issuer: s.Labels[planetv1.LabelAuthority], jti: s.Annotations[planetv1.AnnotationTicketID],
			slice: s.Annotations[planetv1.AnnotationSliceFullName], order: ticket.OrderOf(s)}
		if err := r.raiseFloor(ctx, rec); err != nil {
			return false, err
		}
	}
	uid, rv := obj.GetUID(), obj.GetResourceVersion()
	err := r.Delete(ctx, obj, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		// A conflict (it changed since it was read: its status, or a newer
		// ticket took it) is retried: the next look reads it again.
		return false, fmt.Errorf("deleting %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	log.Info("Deleted what a ticket no longer grants", "ticket", ref)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "TicketWithdrawn", "Delete", "ticket %s, the last that granted this %s, is deleted or no longer holds", ref, strings.ToLower(kind))
	return true, nil
}

// otherGrant returns another live, redeemed Ticket (namespace/name) that
// carries the very ticket obj runs (the same token: a pushed and a pulled
// copy), or "". An older ticket, or another with the same jti (a parent's
// and its delegate's), does not take it over.
func (r *TicketReconciler) otherGrant(ctx context.Context, obj client.Object, ref string) (string, error) {
	tickets := &planetv1.TicketList{}
	if err := r.List(ctx, tickets, client.MatchingFields{indexRedeemed: kindOf(obj) + "/" + obj.GetNamespace() + "/" + obj.GetName()}); err != nil {
		return "", err
	}
	for i := range tickets.Items {
		t := &tickets.Items[i]
		name := t.Namespace + "/" + t.Name
		if name == ref || !t.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(t.Status.Conditions, planetv1.ConditionReady) {
			continue
		}
		if runs(obj, t.Spec.Token) {
			return name, nil
		}
	}
	return "", nil
}

// runs says whether obj (a foreign slice or pool part) runs the ticket of
// token: its hash when recorded, its jti for a slice made before hashes
// were recorded.
func runs(obj client.Object, token string) bool {
	a := obj.GetAnnotations()
	if h := a[planetv1.AnnotationTicketSHA256]; h != "" {
		return h == ticket.HashOf(token)
	}
	c, _, err := ticket.Inspect(token)
	return err == nil && c.ID == a[planetv1.AnnotationTicketID]
}

// ticketsForSlice maps a foreign slice that is deleted to the Tickets for
// it (by status.slice): a withdrawal took it, and the copies that carried
// it turn Revoked; a pool grant lost its slice, and releases its pool.
func (r *TicketReconciler) ticketsForSlice(ctx context.Context, o client.Object) []reconcile.Request {
	full := o.GetAnnotations()[planetv1.AnnotationSliceFullName]
	if full == "" || !ticketMade(o) {
		return nil
	}
	return listRequests(ctx, r, &planetv1.TicketList{}, client.MatchingFields{indexSlice: full})
}

// deleted passes delete events only.
var deleted = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
}

// ticketsOfSlice maps a foreign slice to the Tickets that redeemed it, so
// that their status follows its slivers.
func (r *TicketReconciler) ticketsOfSlice(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetAnnotations()[planetv1.AnnotationGrantedBy] == "" {
		return nil
	}
	return listRequests(ctx, r, &planetv1.TicketList{}, client.MatchingFields{indexRedeemed: "Slice/" + o.GetNamespace() + "/" + o.GetName()})
}

// grantingTicket maps a foreign slice to the Ticket in force for it: a
// reconcile of a Ticket that is gone releases the slice. Every foreign slice
// is seen at start (the informer's first list) and when it changes hands,
// so a Ticket deleted while the manager was down, or before the cache
// indexed the slice, still takes its slice away.
func grantingTicket(_ context.Context, o client.Object) []reconcile.Request {
	ns, name, ok := strings.Cut(o.GetAnnotations()[planetv1.AnnotationGrantedBy], "/")
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// grantChanged passes foreign slices seen for the first time and those
// whose Ticket in force changed.
var grantChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool {
		return e.Object.GetAnnotations()[planetv1.AnnotationGrantedBy] != "" && ticketMade(e.Object)
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		n := e.ObjectNew.GetAnnotations()[planetv1.AnnotationGrantedBy]
		return n != "" && n != e.ObjectOld.GetAnnotations()[planetv1.AnnotationGrantedBy] && ticketMade(e.ObjectNew)
	},
}

// grantedSliceChanged passes the updates of a ticket-made slice's sliver
// counts.
var grantedSliceChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*planetv1.Slice)
		n, okN := e.ObjectNew.(*planetv1.Slice)
		return okO && okN && n.Annotations[planetv1.AnnotationGrantedBy] != "" &&
			(o.Status.DesiredSlivers != n.Status.DesiredSlivers || o.Status.ReadySlivers != n.Status.ReadySlivers ||
				!equality.Semantic.DeepEqual(o.Status.Placement, n.Status.Placement))
	},
}
