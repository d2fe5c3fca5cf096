package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Requeue periods of the federation controller: while a pushed ticket is
// not redeemed, and afterwards (to follow the peer's slivers).
const (
	pushPending = 10 * time.Second
	pushSteady  = 2 * time.Minute
	// peerTimeout bounds the calls to one peer in one reconcile.
	peerTimeout = 15 * time.Second
)

// FederationReconciler gives a home slice that names peer authorities
// (spec.nodes.authorities) a signed sliver ticket for each, kept in the
// slice's status.federation (the feed serves it from there), and applies
// it at the peers whose Authority says how to reach them (push). It is the
// Slice kind's second controller and writes only status.federation: the
// Slice controller keeps the local slivers and the rest of the status.
type FederationReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Authority is this install's name.
	Authority string
	// Signer gives this install's key.
	Signer *authority.SignerSource
	// Peers gives the peers' clients.
	Peers *PeerClients
	// Workers is the number of slices reconciled at once.
	Workers int
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=secrets,verbs=get

// Reconcile issues, pushes and withdraws the slice's tickets for its peers.
func (r *FederationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	slice := &planetv1.Slice{}
	if err := r.Get(ctx, req.NamespacedName, slice); err != nil || naming.IsAuthorityNamespace(slice.Namespace) {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	peers := federation.Peers(slice, r.Authority)
	if !slice.DeletionTimestamp.IsZero() || (len(peers) == 0 && len(slice.Status.Federation) == 0) {
		return ctrl.Result{}, r.finalize(ctx, slice)
	}
	if !controllerutil.ContainsFinalizer(slice, planetv1.FederationFinalizer) {
		if err := setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := slice.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(old.Status.Federation, slice.Status.Federation) {
			return
		}
		if err := r.Status().Patch(ctx, slice, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patching slice federation status: %w", err))
		}
	}()

	have := map[string]planetv1.SliceFederation{}
	for _, e := range slice.Status.Federation {
		have[e.Authority] = e
	}
	var (
		entries []planetv1.SliceFederation
		requeue time.Duration
		errs    []error
	)
	for _, peer := range peers {
		e, after, err := r.syncPeer(ctx, slice, peer, have[peer])
		entries = append(entries, e)
		requeue = soonest(requeue, after)
		errs = append(errs, err)
		delete(have, peer)
	}
	var pending []planetv1.SliceFederation
	for peer := range have { // no longer named: withdraw
		if err := r.withdraw(ctx, slice, peer); err != nil {
			// Kept without its ticket (the feed no longer offers it) until
			// the pushed copy is withdrawn.
			pending = append(pending, planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationUnreachable, Reason: planetv1.ReasonPeerUnreachable,
				Message: truncate("the slice no longer names "+peer+"; withdrawing its pushed ticket failed (retried): "+err.Error(), 1024)})
			requeue = soonest(requeue, pushPending)
		}
	}
	byName := func(a, b planetv1.SliceFederation) int { return strings.Compare(a.Authority, b.Authority) }
	slices.SortFunc(entries, byName)
	slices.SortFunc(pending, byName)
	// The named peers first; withdrawals still pending fill what room is left.
	entries = append(entries, pending[:min(len(pending), max(0, planetv1.MaxFederationEntries-len(entries)))]...)
	slices.SortFunc(entries, byName)
	slice.Status.Federation = entries
	if exp := slice.Status.ExpiresAt; exp != nil && exp.After(r.Now()) {
		requeue = soonest(requeue, exp.Sub(r.Now())+time.Second) // withdraw at expiry
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// syncPeer brings one peer's entry up to date: a ticket signed for what the
// slice grants now, pushed when the peer is reachable. It returns when to
// look again.
func (r *FederationReconciler) syncPeer(ctx context.Context, slice *planetv1.Slice, peer string, e planetv1.SliceFederation) (planetv1.SliceFederation, time.Duration, error) {
	e.Authority = peer
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil {
		if !apierrors.IsNotFound(err) {
			return e, 0, err
		}
		msg := fmt.Sprintf("no Authority %s is known here: add it (its keys, feed and push) to federate with it", peer)
		if e.Ticket != "" {
			if c, _, err := ticket.Inspect(e.Ticket); err == nil {
				msg += fmt.Sprintf("; a ticket pushed there before cannot be withdrawn and runs until it expires at %s", c.Expires().Format(time.RFC3339))
			}
		}
		return failed(e, planetv1.ReasonUnknownAuthority, msg), 0, nil
	}
	now := r.Now()
	exp := slice.Status.ExpiresAt
	if exp == nil {
		return e, 0, nil // the Slice controller has not set the expiry yet; its status update queues the slice again
	}
	if !exp.After(now) {
		err := r.withdraw(ctx, slice, peer)
		e = planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationWithdrawn, Reason: planetv1.ReasonExpired,
			Message: "the slice expired: no ticket is offered to " + peer}
		if err != nil {
			e.Phase, e.Reason, e.Message = planetv1.FederationUnreachable, planetv1.ReasonPeerUnreachable, truncate("withdrawing the expired slice's ticket: "+err.Error(), 1024)
			return e, pushPending, nil
		}
		return e, 0, nil
	}
	full := naming.FullName(r.Authority, slice.Namespace, slice.Name)
	grant := federation.Grant(slice, full, exp.Time)
	if hash := federation.GrantHash(peer, grant); hash != e.GrantHash || e.Ticket == "" {
		signer, err := r.Signer.Signer(ctx)
		if err != nil {
			return failed(e, planetv1.ReasonNoKey, err.Error()), pushPending, nil
		}
		token, err := signer.Issue(federation.Claims(peer, grant, now, newJTI()))
		if err != nil {
			return failed(e, string(ticket.InvalidGrant), "the slice cannot be granted: "+err.Error()), 0, nil
		}
		c, _, err := ticket.Inspect(token)
		if err != nil {
			return e, 0, err
		}
		e = planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationIssued, TicketID: c.ID,
			IssuedAt: &metav1.Time{Time: time.Unix(c.IssuedAt, 0)}, GrantHash: hash, Ticket: token}
		ctrl.LoggerFrom(ctx).Info("Issued a sliver ticket for a peer", "authority", peer, "slice", full, "jti", c.ID)
	}
	if a.Spec.Push == nil {
		e.Phase, e.Reason, e.Message = planetv1.FederationIssued, "", "listed in this install's feed for "+peer+" to pull (a peer that pulls does not report its slivers)"
		e.DesiredSlivers, e.ReadySlivers, e.Slivers = 0, 0, ""
		return e, 0, nil
	}
	return r.push(ctx, a, full, e)
}

// push applies the entry's ticket at the peer and reads back what it made
// of it; older tickets of the slice there are deleted once it is redeemed.
func (r *FederationReconciler) push(ctx context.Context, a *planetv1.Authority, full string, e planetv1.SliceFederation) (planetv1.SliceFederation, time.Duration, error) {
	unreachable := func(reason string, err error) (planetv1.SliceFederation, time.Duration, error) {
		e.Phase, e.Reason = planetv1.FederationUnreachable, reason
		e.Message = truncate(err.Error()+"; the ticket stays in this install's feed", 1024)
		return e, pushPending, nil
	}
	pc, ns, err := r.Peers.Client(ctx, a)
	if err != nil {
		var bad *kubeconfigError
		if errors.As(err, &bad) {
			e, _, _ = unreachable(planetv1.ReasonInvalidKubeconfig, err)
			return e, pushSteady, nil // until the Secret is fixed
		}
		return e, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	name := federation.TicketName("push", full, e.TicketID)
	remote := &planetv1.Ticket{}
	err = pc.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, remote)
	if apierrors.IsNotFound(err) {
		remote = &planetv1.Ticket{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
				planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelTicketSource: "push",
				planetv1.LabelAuthority: r.Authority, planetv1.LabelSliceID: federation.SliceID(full),
			}, Annotations: map[string]string{planetv1.AnnotationSliceFullName: full}},
			Spec: planetv1.TicketSpec{Token: e.Ticket},
		}
		err = pc.Create(ctx, remote)
	}
	if err != nil {
		return unreachable(planetv1.ReasonPeerUnreachable, fmt.Errorf("applying ticket %s/%s at %s: %w", ns, name, a.Name, err))
	}
	wasRedeemed := e.Phase == planetv1.FederationRedeemed
	ready := meta.FindStatusCondition(remote.Status.Conditions, planetv1.ConditionReady)
	e.DesiredSlivers, e.ReadySlivers = remote.Status.DesiredSlivers, remote.Status.ReadySlivers
	e.Slivers = fmt.Sprintf("%d/%d", e.ReadySlivers, e.DesiredSlivers)
	switch {
	case ready == nil || ready.ObservedGeneration != remote.Generation:
		e.Phase, e.Reason, e.Message = planetv1.FederationPushed, "", fmt.Sprintf("applied at %s as ticket %s/%s, not redeemed yet", a.Name, ns, name)
		return e, pushPending, nil
	case ready.Status != metav1.ConditionTrue:
		e.Phase, e.Reason, e.Message = planetv1.FederationRefused, ready.Reason, truncate(a.Name+" refused the ticket: "+ready.Message, 1024)
		return e, pushSteady, nil
	}
	e.Phase, e.Reason, e.Message = planetv1.FederationRedeemed, "", fmt.Sprintf("redeemed at %s (ticket %s/%s)", a.Name, ns, name)
	if !wasRedeemed {
		if err := r.deleteRemote(ctx, pc, ns, full, name); err != nil {
			return unreachable(planetv1.ReasonPeerUnreachable, err)
		}
	}
	return e, pushSteady, nil
}

// withdraw deletes the slice's pushed tickets at a peer (its slice there
// goes with them). A peer without push has nothing to delete: its next poll
// of the feed drops the slice.
func (r *FederationReconciler) withdraw(ctx context.Context, slice *planetv1.Slice, peer string) error {
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil || a.Spec.Push == nil {
		return client.IgnoreNotFound(err)
	}
	pc, ns, err := r.Peers.Client(ctx, a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	return r.deleteRemote(ctx, pc, ns, naming.FullName(r.Authority, slice.Namespace, slice.Name), "")
}

// deleteRemote deletes the slice's pushed Tickets at a peer but keep.
func (r *FederationReconciler) deleteRemote(ctx context.Context, pc client.Client, ns, full, keep string) error {
	list := &planetv1.TicketList{}
	if err := pc.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{planetv1.LabelSliceID: federation.SliceID(full), planetv1.LabelAuthority: r.Authority}); err != nil {
		return fmt.Errorf("listing the slice's tickets at the peer: %w", err)
	}
	for i := range list.Items {
		if t := &list.Items[i]; t.Name != keep {
			if err := pc.Delete(ctx, t); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting ticket %s/%s at the peer: %w", t.Namespace, t.Name, err)
			}
		}
	}
	return nil
}

// finalize withdraws the pushed tickets of a deleted slice (or of one that
// no longer names peers) and drops the finalizer. A peer that cannot be
// reached does not hold the deletion: its copy lives until its ticket
// expires (or its next poll of the feed, which no longer lists it).
func (r *FederationReconciler) finalize(ctx context.Context, slice *planetv1.Slice) error {
	if !controllerutil.ContainsFinalizer(slice, planetv1.FederationFinalizer) {
		return nil
	}
	for _, e := range slice.Status.Federation {
		if err := r.withdraw(ctx, slice, e.Authority); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Could not withdraw the slice's ticket from a peer; it runs there until the ticket expires", "authority", e.Authority)
			r.Recorder.Eventf(slice, nil, corev1.EventTypeWarning, planetv1.ReasonPeerUnreachable, "Withdraw",
				"could not withdraw the ticket from %s (it runs there until the ticket expires): %s", e.Authority, truncate(err.Error(), 512))
		}
	}
	if slice.DeletionTimestamp.IsZero() && len(slice.Status.Federation) > 0 {
		old := slice.DeepCopy()
		slice.Status.Federation = nil
		if err := r.Status().Patch(ctx, slice, client.MergeFrom(old)); err != nil {
			return err
		}
	}
	return setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, false)
}

// failed is an entry that carries no ticket, with the reason.
func failed(e planetv1.SliceFederation, reason, msg string) planetv1.SliceFederation {
	return planetv1.SliceFederation{Authority: e.Authority, Phase: planetv1.FederationFailed, Reason: reason, Message: truncate(msg, 1024)}
}

// newJTI returns 128 random bits in hex.
func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// federationChanged passes the slice events the federation controller acts
// on: a spec change, the expiry in force changing (a renewal the Slice
// controller accepted), deletion.
var federationChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*planetv1.Slice)
		n, okN := e.ObjectNew.(*planetv1.Slice)
		if !okO || !okN {
			return true
		}
		return o.Generation != n.Generation || !n.DeletionTimestamp.IsZero() ||
			!equality.Semantic.DeepEqual(o.Status.ExpiresAt, n.Status.ExpiresAt)
	},
}

// SetupWithManager registers the controller under its own name; an
// Authority that changes (push added, keys) re-runs the slices naming it.
func (r *FederationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("federation").
		For(&planetv1.Slice{}, builder.WithPredicates(federationChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Watches(&planetv1.Authority{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.slicesNaming(ctx, o.GetName())
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// slicesNaming lists the home slices that name an authority.
func (r *FederationReconciler) slicesNaming(ctx context.Context, name string) []reconcile.Request {
	list := &planetv1.SliceList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing slices")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if slices.Contains(list.Items[i].Spec.Nodes.Authorities, name) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}
