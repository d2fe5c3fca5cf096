package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
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
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/federation/peerclient"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Requeue periods of the federation controller: while a pushed ticket is
// not redeemed or the peer's slivers converge, and afterwards (to follow
// them).
const (
	pushPending = 10 * time.Second
	pushSteady  = 2 * time.Minute
)

// FederationReconciler gives a home slice that names peer authorities
// (spec.nodes.authorities) a signed sliver ticket for each, kept in a
// Secret of the manager's namespace (the feed serves it from there), and
// applies it at the peers whose Authority says how to reach them (push).
// A peer the slice stops naming, or every peer when the slice is deleted,
// is sent a withdrawal: a newer ticket that revokes every older one of the
// slice at the peer, however many copies of them were applied there. It is
// the Slice kind's second controller and writes only status.federation:
// the Slice controller keeps the local slivers and the rest of the status.
type FederationReconciler struct {
	client.Client
	// APIReader reads the tickets' Secrets without a cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Authority is this install's name.
	Authority string
	// Namespace is the manager's: it holds the tickets' Secrets.
	Namespace string
	// Secrets, when set, is the cache of the tickets' Secrets, whose
	// listing at start brings back the withdrawals of slices deleted
	// while the manager was down.
	Secrets cache.Cache
	// Signer gives this install's key.
	Signer *authority.SignerSource
	// Peers gives the peers' clients.
	Peers *peerclient.Clients
	// Workers is the number of slices reconciled at once.
	Workers int
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=secrets,verbs=get;list;watch;create;update;delete

// Reconcile issues, pushes and withdraws the slice's tickets for its peers;
// for a slice that is gone, it delivers and prunes its withdrawals.
func (r *FederationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	if naming.IsAuthorityNamespace(req.Namespace) {
		return ctrl.Result{}, nil // foreign slices are granted here, not from here
	}
	full := naming.FullName(r.Authority, req.Namespace, req.Name)
	slice := &planetv1.Slice{}
	if err := r.Get(ctx, req.NamespacedName, slice); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return r.sweep(ctx, full)
	}
	if !slice.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, slice, full)
	}
	peers := federation.Peers(slice, r.Authority)
	federated := controllerutil.ContainsFinalizer(slice, planetv1.FederationFinalizer)
	if len(peers) == 0 && !federated {
		return ctrl.Result{}, nil // never federated: no tickets to look after
	}
	store, err := r.loadTickets(ctx, full)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(peers) == 0 && len(slice.Status.Federation) == 0 && len(store.tokens) == 0 {
		// Every withdrawal delivered and expired: nothing left to look after.
		return ctrl.Result{}, setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, false)
	}
	if !federated {
		if err := setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	exp := slice.Status.ExpiresAt
	if exp == nil {
		return ctrl.Result{}, nil // the Slice controller has not set the expiry yet; its status update queues the slice again
	}
	old := slice.DeepCopy()
	defer func() {
		// The federation controller owns status.federation alone.
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, old, slice, old.Status.Federation, slice.Status.Federation))
	}()

	// An expired slice is withdrawn from every peer like a deleted one: a
	// renewal may have shortened its expiry, and an older ticket outlive it.
	expired := !exp.After(r.Now())
	named := map[string]bool{}
	have := map[string]planetv1.SliceFederation{}
	for _, e := range slice.Status.Federation {
		have[e.Authority] = e
	}
	// First every ticket is signed and kept, then sent: what a peer may
	// hold is in the Secret before it can get it.
	entries := make([]planetv1.SliceFederation, 0, len(peers))
	for _, peer := range peers {
		if expired {
			continue
		}
		named[peer] = true
		e, err := r.issue(ctx, slice, full, peer, have[peer], store)
		if err != nil {
			return ctrl.Result{}, err
		}
		entries = append(entries, e)
	}
	dropped, requeue := store.pruneExpired(r.Now())
	gone := r.withdrawOthers(ctx, store, named)
	if err := r.saveTickets(ctx, store); err != nil {
		return ctrl.Result{}, err
	}
	r.removeDropped(ctx, full, dropped)
	var errs []error
	for i := range entries {
		e, after, err := r.deliver(ctx, full, entries[i], store)
		entries[i] = e
		requeue = soonest(requeue, after)
		errs = append(errs, err)
	}
	var pending []planetv1.SliceFederation
	for _, peer := range gone {
		e, after, confirmed := r.deliverWithdrawal(ctx, full, peer, store)
		if expired && slices.Contains(peers, peer) {
			// Shown for as long as the slice is expired.
			if confirmed {
				e.Message = "the slice expired: no ticket is offered to " + peer + ", and a withdrawal revokes those it had"
			}
			e.Reason = planetv1.ReasonExpired
			entries = append(entries, e)
		} else if !confirmed {
			// Shown until the peer confirms it (a peer that pulls reads it in the feed).
			pending = append(pending, e)
		}
		if !confirmed {
			requeue = soonest(requeue, after)
		}
	}
	byName := func(a, b planetv1.SliceFederation) int { return strings.Compare(a.Authority, b.Authority) }
	slices.SortFunc(entries, byName)
	slices.SortFunc(pending, byName)
	// The named peers first; withdrawals still pending fill what room is left.
	entries = append(entries, pending[:min(len(pending), max(0, planetv1.MaxFederationEntries-len(entries)))]...)
	slices.SortFunc(entries, byName)
	stampSince(entries, have, r.Now())
	slice.Status.Federation = entries
	if !expired {
		requeue = soonest(requeue, exp.Sub(r.Now())+time.Second) // withdraw at expiry
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// refusalReason finds the reason a peer's webhook gives for a ticket it
// refuses: its field error reads `Invalid value: "(token)": NotTrusted: ...`.
var refusalReason = regexp.MustCompile(`Invalid value: "[^"]*": ([A-Z][A-Za-z0-9]{0,127}): `)

// pushRefusal says whether an error applying a ticket at a peer is the
// peer's refusal (its webhook found the ticket invalid, or the push
// identity may not apply it), not a failure to reach it, and with which
// reason: the webhook's (NotTrusted, Expired ...), else Invalid or
// Forbidden.
func pushRefusal(err error) (string, bool) {
	switch {
	case err == nil:
		return "", false
	case apierrors.IsInvalid(err):
		if m := refusalReason.FindStringSubmatch(err.Error()); m != nil {
			return m[1], true
		}
		return string(metav1.StatusReasonInvalid), true
	case apierrors.IsForbidden(err):
		return string(metav1.StatusReasonForbidden), true
	}
	return "", false
}

// stampSince sets each entry's since: kept from the entry before while its
// phase stays, now when the phase changed.
func stampSince(entries []planetv1.SliceFederation, before map[string]planetv1.SliceFederation, now time.Time) {
	for i := range entries {
		e := &entries[i]
		if b, ok := before[e.Authority]; ok && b.Phase == e.Phase && b.Since != nil {
			e.Since = b.Since
			continue
		}
		e.Since = &metav1.Time{Time: now.UTC().Truncate(time.Second)}
	}
}

// issue brings one named peer's ticket up to date in the store: a new one
// is signed when what the slice grants changed, or when the peer holds
// none (or a withdrawal, or an expired one). The store, not the status, is
// what the peer was given. It returns the peer's entry.
func (r *FederationReconciler) issue(ctx context.Context, slice *planetv1.Slice, full, peer string, e planetv1.SliceFederation, store *ticketStore) (planetv1.SliceFederation, error) {
	e.Authority = peer
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil {
		if !apierrors.IsNotFound(err) {
			return e, err
		}
		msg := fmt.Sprintf("no Authority %s is known here: add it (its keys, feed and push) to federate with it", peer)
		if c := store.claims(peer); c != nil && c.Sliver != nil {
			msg += fmt.Sprintf("; a ticket given to it before cannot be withdrawn and runs until it expires at %s", c.Expires().Format(time.RFC3339))
		}
		return failed(e, planetv1.ReasonUnknownAuthority, msg), nil
	}
	grant := federation.Grant(slice, full, slice.Status.ExpiresAt.Time)
	hash := federation.GrantHash(peer, grant)
	if c := store.claims(peer); c != nil && c.Sliver != nil && store.grants[peer] == hash && c.Expires().After(r.Now()) {
		if e.TicketID != c.ID || e.GrantHash != hash { // the status lags what was signed
			e = planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationIssued, TicketID: c.ID,
				IssuedAt: &metav1.Time{Time: time.Unix(c.IssuedAt, 0)}, GrantHash: hash}
		}
		return e, nil
	}
	signer, err := r.Signer.Signer(ctx)
	if err != nil {
		return failed(e, planetv1.ReasonNoKey, err.Error()), nil
	}
	claims := federation.Claims(peer, grant, r.nextIssuedAt(store, peer), newJTI())
	token, err := signer.Issue(claims)
	if err != nil {
		return failed(e, string(ticket.InvalidGrant), "the slice cannot be granted: "+err.Error()), nil
	}
	store.set(peer, token, hash)
	ctrl.LoggerFrom(ctx).Info("Issued a sliver ticket for a peer", "authority", peer, "slice", full, "jti", claims.ID)
	return planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationIssued, TicketID: claims.ID,
		IssuedAt: &metav1.Time{Time: time.Unix(claims.IssuedAt, 0)}, GrantHash: hash}, nil
}

// nextIssuedAt is the iat of the next ticket for a peer: now, or one
// second after the ticket it holds, so that each ticket of a slice for a
// peer is newer than the last by its iat alone (two signed in one second
// would otherwise be ordered by their hashes, not by when they were made).
func (r *FederationReconciler) nextIssuedAt(store *ticketStore, peer string) time.Time {
	now := r.Now().Truncate(time.Second)
	if c := store.claims(peer); c != nil && c.IssuedAt >= now.Unix() {
		return time.Unix(c.IssuedAt+1, 0)
	}
	return now
}

// withdrawOthers makes sure every peer the store holds a sliver ticket for
// that is not named (any longer) holds a withdrawal instead, and returns
// those peers: a withdrawal is signed once, and kept until it expires.
func (r *FederationReconciler) withdrawOthers(ctx context.Context, store *ticketStore, named map[string]bool) []string {
	var gone []string
	for _, peer := range store.peers() {
		if named[peer] {
			continue
		}
		gone = append(gone, peer)
		if c := store.claims(peer); c != nil && c.Withdraw != nil {
			continue
		}
		signer, err := r.Signer.Signer(ctx)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Cannot sign a withdrawal; retried", "authority", peer, "slice", store.full)
			continue
		}
		claims := federation.WithdrawClaims(peer, store.full, r.nextIssuedAt(store, peer), newJTI())
		token, err := signer.Issue(claims)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Cannot sign a withdrawal", "authority", peer, "slice", store.full)
			continue
		}
		store.set(peer, token, "")
		ctrl.LoggerFrom(ctx).Info("Withdrew a slice from a peer", "authority", peer, "slice", store.full, "jti", claims.ID)
	}
	return gone
}

// removeDropped deletes, at the peers reached by push, the Tickets of the
// slice whose tickets expired and were forgotten (best effort: they are
// expired, and refused there anyway).
func (r *FederationReconciler) removeDropped(ctx context.Context, full string, peers []string) {
	for _, peer := range peers {
		if err := r.removePushed(ctx, full, peer); err != nil {
			ctrl.LoggerFrom(ctx).Info("Could not delete the expired tickets of a slice at a peer", "authority", peer, "slice", full, "error", err.Error())
		}
	}
}

// deliver pushes a named peer's ticket when the peer is reached by push,
// and says where it stands. It returns when to look again.
func (r *FederationReconciler) deliver(ctx context.Context, full string, e planetv1.SliceFederation, store *ticketStore) (planetv1.SliceFederation, time.Duration, error) {
	peer := e.Authority
	if c := store.claims(peer); e.Phase == planetv1.FederationFailed || c == nil || c.Sliver == nil || c.ID != e.TicketID {
		if e.Reason == planetv1.ReasonNoKey {
			return e, pushPending, nil // the key may be readable soon
		}
		return e, 0, nil // a change of the slice or of the Authority looks again
	}
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil {
		return e, 0, client.IgnoreNotFound(err)
	}
	if a.Spec.Push == nil {
		e.Phase, e.Reason, e.Message = planetv1.FederationIssued, "", "listed in this install's feed for "+peer+" to pull (a peer that pulls does not report its slivers)"
		e.DesiredSlivers, e.ReadySlivers, e.Slivers, e.Placement = 0, 0, "", nil
		return e, 0, nil
	}
	return r.push(ctx, a, full, e, store.tokens[peer])
}

// deliverWithdrawal pushes a withdrawal to a peer reached by push, and
// deletes the slice's other tickets there once the peer redeemed it; a
// peer that pulls reads it in the feed. It returns where it stands, when
// to look again, and whether it is done (confirmed by the peer, or left
// to the feed).
func (r *FederationReconciler) deliverWithdrawal(ctx context.Context, full, peer string, store *ticketStore) (planetv1.SliceFederation, time.Duration, bool) {
	e := planetv1.SliceFederation{Authority: peer, Phase: planetv1.FederationWithdrawn, Reason: planetv1.ReasonWithdrawn,
		Message: "the slice no longer names " + peer + ": a withdrawal revokes its tickets there"}
	c := store.claims(peer)
	if c == nil || c.Withdraw == nil {
		return e, pushPending, false // not signed yet (the key was not readable): retried
	}
	e.TicketID, e.IssuedAt = c.ID, &metav1.Time{Time: time.Unix(c.IssuedAt, 0)}
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil || a.Spec.Push == nil {
		if err != nil && !apierrors.IsNotFound(err) {
			e.Phase, e.Reason, e.Message = planetv1.FederationUnreachable, planetv1.ReasonPeerUnreachable, health.Truncate(err.Error(), 1024)
			return e, pushPending, false
		}
		return e, 0, true
	}
	pushed, after, err := r.push(ctx, a, full, planetv1.SliceFederation{Authority: peer, TicketID: c.ID}, store.tokens[peer])
	switch {
	case err != nil:
		pushed.Phase, pushed.Reason, pushed.Message = planetv1.FederationUnreachable, planetv1.ReasonPeerUnreachable, err.Error()
	case pushed.Phase == planetv1.FederationRedeemed:
		return e, 0, true
	case pushed.Phase == planetv1.FederationPushed:
		pushed.Phase = planetv1.FederationWithdrawn
	}
	pushed.Message = health.Truncate("withdrawing: "+pushed.Message, 1024)
	pushed.DesiredSlivers, pushed.ReadySlivers, pushed.Slivers, pushed.Placement = 0, 0, "", nil
	return pushed, max(after, pushPending), false
}

// push applies a ticket at the peer and reads back what it made of it;
// the slice's other tickets there are deleted once it is redeemed.
func (r *FederationReconciler) push(ctx context.Context, a *planetv1.Authority, full string, e planetv1.SliceFederation, token string) (planetv1.SliceFederation, time.Duration, error) {
	unreachable := func(reason string, err error) (planetv1.SliceFederation, time.Duration, error) {
		e.Phase, e.Reason = planetv1.FederationUnreachable, reason
		e.Message = health.Truncate(err.Error()+"; the ticket stays in this install's feed", 1024)
		return e, pushPending, nil
	}
	pc, ns, err := r.Peers.Client(ctx, a)
	if err != nil {
		var bad *peerclient.ConfigError
		if errors.As(err, &bad) {
			e, _, _ = unreachable(planetv1.ReasonInvalidKubeconfig, err)
			return e, pushSteady, nil // until the Secret is fixed
		}
		return e, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerclient.Timeout)
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
			Spec: planetv1.TicketSpec{Token: token},
		}
		err = pc.Create(ctx, remote)
	}
	if reason, refused := pushRefusal(err); refused {
		// The peer answered: its webhook (or its RBAC) turned the ticket
		// down. Looked at again in a while, or when the slice changes.
		e.Phase, e.Reason = planetv1.FederationRefused, reason
		e.Message = health.Truncate(a.Name+" refused the ticket: "+err.Error(), 1024)
		e.DesiredSlivers, e.ReadySlivers, e.Slivers, e.Placement = 0, 0, "", nil
		return e, pushSteady, nil
	}
	if err != nil {
		return unreachable(planetv1.ReasonPeerUnreachable, fmt.Errorf("applying ticket %s/%s at %s: %w", ns, name, a.Name, err))
	}
	wasRedeemed := e.Phase == planetv1.FederationRedeemed
	ready := meta.FindStatusCondition(remote.Status.Conditions, planetv1.ConditionReady)
	e.DesiredSlivers, e.ReadySlivers = remote.Status.DesiredSlivers, remote.Status.ReadySlivers
	e.Slivers = fmt.Sprintf("%d/%d", e.ReadySlivers, e.DesiredSlivers)
	// The peer's account of its nodes, bounded whatever it sends.
	e.Placement = shortfall.Compact(remote.Status.Placement, planetv1.MaxPeerPlacementGroups)
	switch {
	case ready == nil || ready.ObservedGeneration != remote.Generation:
		e.Phase, e.Reason, e.Message = planetv1.FederationPushed, "", fmt.Sprintf("applied at %s as ticket %s/%s, not redeemed yet", a.Name, ns, name)
		return e, pushPending, nil
	case ready.Status != metav1.ConditionTrue:
		e.Phase, e.Reason, e.Message = planetv1.FederationRefused, health.Truncate(ready.Reason, 128), health.Truncate(a.Name+" refused the ticket: "+ready.Message, 1024)
		return e, pushSteady, nil
	}
	e.Phase, e.Reason, e.Message = planetv1.FederationRedeemed, "", fmt.Sprintf("redeemed at %s (ticket %s/%s)", a.Name, ns, name)
	if !wasRedeemed {
		if err := r.deleteRemote(ctx, pc, ns, full, name); err != nil {
			return unreachable(planetv1.ReasonPeerUnreachable, err)
		}
		return e, pushPending, nil // the peer's slivers are only starting
	}
	if e.ReadySlivers != e.DesiredSlivers {
		return e, pushPending, nil // follow them while they converge
	}
	return e, pushSteady, nil
}

// removePushed deletes every pushed Ticket of the slice at a peer reached
// by push.
func (r *FederationReconciler) removePushed(ctx context.Context, full, peer string) error {
	a := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: peer}, a); err != nil || a.Spec.Push == nil {
		return client.IgnoreNotFound(err)
	}
	pc, ns, err := r.Peers.Client(ctx, a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, peerclient.Timeout)
	defer cancel()
	return r.deleteRemote(ctx, pc, ns, full, "")
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

// finalize withdraws a deleted slice from every peer it was given to: a
// withdrawal for each is signed and kept (before the finalizer goes, so
// that nothing is forgotten), pushed where the peer is reached by push,
// and served in the feed until it expires. A peer that cannot be reached
// does not hold the deletion: the withdrawal is pushed again later (the
// slice's key is looked at again when it is gone, see sweep).
func (r *FederationReconciler) finalize(ctx context.Context, slice *planetv1.Slice, full string) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(slice, planetv1.FederationFinalizer) {
		return ctrl.Result{}, nil
	}
	store, err := r.loadTickets(ctx, full)
	if errors.Is(err, errForeignSecret) {
		// Someone else's Secret holds the name: nothing can be withdrawn
		// through it, and the deletion does not wait on it.
		ctrl.LoggerFrom(ctx).Error(err, "Cannot withdraw the deleted slice from its peers", "slice", full)
		r.Recorder.Eventf(slice, nil, corev1.EventTypeWarning, planetv1.ReasonNamespaceConflict, "Withdraw", "cannot withdraw the slice from its peers: %s", health.Truncate(err.Error(), 512))
		return ctrl.Result{}, setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, false)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	requeue, pending, err := r.withdrawAll(ctx, store)
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, e := range pending {
		ctrl.LoggerFrom(ctx).Info("Could not withdraw the slice from a peer yet; retried", "authority", e.Authority, "reason", e.Reason, "message", e.Message)
		r.Recorder.Eventf(slice, nil, corev1.EventTypeWarning, planetv1.ReasonPeerUnreachable, "Withdraw",
			"could not withdraw the slice from %s yet (retried; its tickets there are revoked once it is): %s", e.Authority, health.Truncate(e.Message, 512))
	}
	if err := setFinalizer(ctx, r.Client, slice, planetv1.FederationFinalizer, false); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// sweep looks after the tickets of a slice that is gone: it withdraws what
// was not withdrawn yet, pushes the withdrawals not confirmed yet, and
// forgets them when they expire (the Secret goes with the last).
func (r *FederationReconciler) sweep(ctx context.Context, full string) (ctrl.Result, error) {
	store, err := r.loadTickets(ctx, full)
	if errors.Is(err, errForeignSecret) {
		return ctrl.Result{}, nil // not the slice's: left alone
	}
	if err != nil || store.secret == nil {
		return ctrl.Result{}, err
	}
	requeue, _, err := r.withdrawAll(ctx, store)
	return ctrl.Result{RequeueAfter: requeue}, err
}

// withdrawAll withdraws a slice that is gone from every peer its store
// holds a ticket for, forgets what expired, and delivers the withdrawals.
// It returns when to look again (the next expiry, or a retry) and the
// entries of the withdrawals not confirmed yet.
func (r *FederationReconciler) withdrawAll(ctx context.Context, store *ticketStore) (time.Duration, []planetv1.SliceFederation, error) {
	dropped, requeue := store.pruneExpired(r.Now())
	gone := r.withdrawOthers(ctx, store, nil)
	if err := r.saveTickets(ctx, store); err != nil {
		return 0, nil, err
	}
	r.removeDropped(ctx, store.full, dropped)
	var pending []planetv1.SliceFederation
	for _, peer := range gone {
		if e, after, confirmed := r.deliverWithdrawal(ctx, store.full, peer, store); !confirmed {
			requeue = soonest(requeue, after)
			pending = append(pending, e)
		}
	}
	return requeue, pending, nil
}

// failed is an entry that carries no ticket, with the reason.
func failed(e planetv1.SliceFederation, reason, msg string) planetv1.SliceFederation {
	return planetv1.SliceFederation{Authority: e.Authority, Phase: planetv1.FederationFailed, Reason: reason, Message: health.Truncate(msg, 1024)}
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
	b := ctrl.NewControllerManagedBy(mgr).
		Named("federation").
		For(&planetv1.Slice{}, builder.WithPredicates(federationChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Watches(&planetv1.Authority{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.slicesNaming(ctx, o.GetName())
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	if r.Secrets != nil {
		// The tickets' Secrets as listed at start: a slice deleted while
		// the manager was down still has its withdrawals delivered.
		b = b.WatchesRawSource(source.Kind(r.Secrets, &corev1.Secret{}, handler.TypedEnqueueRequestsFromMapFunc(r.sliceOfTickets),
			predicate.TypedFuncs[*corev1.Secret]{
				CreateFunc:  func(event.TypedCreateEvent[*corev1.Secret]) bool { return true },
				UpdateFunc:  func(event.TypedUpdateEvent[*corev1.Secret]) bool { return false },
				DeleteFunc:  func(event.TypedDeleteEvent[*corev1.Secret]) bool { return false },
				GenericFunc: func(event.TypedGenericEvent[*corev1.Secret]) bool { return false },
			}))
	}
	return b.Complete(r)
}

// sliceOfTickets maps a tickets' Secret to its home slice.
func (r *FederationReconciler) sliceOfTickets(_ context.Context, s *corev1.Secret) []reconcile.Request {
	a, site, slice, ok := naming.ParseFullName(s.Annotations[planetv1.AnnotationSliceFullName])
	if !ok || a != r.Authority || s.Labels[planetv1.LabelFederationTickets] != "true" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: site, Name: slice}}}
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
