package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Cache indexes of the Ticket controller: foreign Slices by the Ticket in
// force for them (annotation planetkube.io/granted-by), and Tickets by what
// they redeemed (status.redeemed).
const (
	indexGrantedBy = "planetkube.io/granted-by"
	indexRedeemed  = "status.redeemed"
)

// indexTicketsAndGrants registers the two indexes.
func indexTicketsAndGrants(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &planetv1.Slice{}, indexGrantedBy, func(o client.Object) []string {
		if v := o.GetAnnotations()[planetv1.AnnotationGrantedBy]; v != "" {
			return []string{v}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing slices by ticket: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &planetv1.Ticket{}, indexRedeemed, func(o client.Object) []string {
		if t, ok := o.(*planetv1.Ticket); ok && t.Status.Redeemed != "" {
			return []string{t.Status.Redeemed}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing tickets by what they redeemed: %w", err)
	}
	return nil
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=delete

// release handles a deleted Ticket: each foreign slice it was the ticket in
// force for passes to another redeemed Ticket of the same slice (one pulled
// and one pushed carry the same token), or, when none is left, is deleted
// with its slivers. A foreign slice lives while a ticket grants it: this is
// how a peer withdraws one (push), and how a feed that stops listing it
// removes it (pull).
func (r *TicketReconciler) release(ctx context.Context, key types.NamespacedName) error {
	ref := key.Namespace + "/" + key.Name
	list := &planetv1.SliceList{}
	if err := r.List(ctx, list, client.MatchingFields{indexGrantedBy: ref}); err != nil {
		return err
	}
	for i := range list.Items {
		if err := r.releaseSlice(ctx, &list.Items[i], ref); err != nil {
			return err
		}
	}
	return nil
}

// releaseSlice re-reads the slice from the API server (the cache may not
// have seen a newer ticket take it over yet) and hands it over or deletes
// it, on the condition that it is unchanged since.
func (r *TicketReconciler) releaseSlice(ctx context.Context, cached *planetv1.Slice, ref string) error {
	s := &planetv1.Slice{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cached), s); err != nil {
		return client.IgnoreNotFound(err)
	}
	if s.Annotations[planetv1.AnnotationGrantedBy] != ref || !s.DeletionTimestamp.IsZero() {
		return nil
	}
	log := ctrl.LoggerFrom(ctx)
	if next, err := r.otherGrant(ctx, s, ref); err != nil || next != "" {
		if err != nil {
			return err
		}
		patch := client.MergeFromWithOptions(s.DeepCopy(), client.MergeFromWithOptimisticLock{})
		s.Annotations[planetv1.AnnotationGrantedBy] = next
		if err := r.Patch(ctx, s, patch); client.IgnoreNotFound(err) != nil {
			// A conflict is retried: the slice changed (its status, say) since it was read.
			return fmt.Errorf("handing slice %s/%s to ticket %s: %w", s.Namespace, s.Name, next, err)
		}
		log.Info("Foreign slice passed to another ticket", "slice", s.Annotations[planetv1.AnnotationSliceFullName], "ticket", next)
		return nil
	}
	err := r.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		// A conflict (the slice changed since it was read: its status, or a
		// newer ticket took it) is retried: the next look reads it again.
		return fmt.Errorf("deleting foreign slice %s/%s: %w", s.Namespace, s.Name, err)
	}
	log.Info("Deleted a foreign slice whose ticket was deleted", "slice", s.Annotations[planetv1.AnnotationSliceFullName], "ticket", ref)
	r.Recorder.Eventf(s, nil, corev1.EventTypeNormal, "TicketWithdrawn", "Delete", "ticket %s, the last that granted this slice, was deleted", ref)
	return nil
}

// otherGrant returns another live, redeemed Ticket (namespace/name) that
// carries the very ticket the slice runs (the same jti: a pushed and a
// pulled copy of one token), or "". An older ticket of the slice does not
// take it over.
func (r *TicketReconciler) otherGrant(ctx context.Context, s *planetv1.Slice, ref string) (string, error) {
	tickets := &planetv1.TicketList{}
	if err := r.List(ctx, tickets, client.MatchingFields{indexRedeemed: "Slice/" + s.Namespace + "/" + s.Name}); err != nil {
		return "", err
	}
	for i := range tickets.Items {
		t := &tickets.Items[i]
		name := t.Namespace + "/" + t.Name
		if name == ref || !t.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(t.Status.Conditions, planetv1.ConditionReady) {
			continue
		}
		if c, _, err := ticket.Inspect(t.Spec.Token); err != nil || c.ID != s.Annotations[planetv1.AnnotationTicketID] {
			continue
		}
		return name, nil
	}
	return "", nil
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
	CreateFunc:  func(e event.CreateEvent) bool { return e.Object.GetAnnotations()[planetv1.AnnotationGrantedBy] != "" },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		n := e.ObjectNew.GetAnnotations()[planetv1.AnnotationGrantedBy]
		return n != "" && n != e.ObjectOld.GetAnnotations()[planetv1.AnnotationGrantedBy]
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
			(o.Status.DesiredSlivers != n.Status.DesiredSlivers || o.Status.ReadySlivers != n.Status.ReadySlivers)
	},
}
