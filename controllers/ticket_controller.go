package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/ticket"
	"github.com/planetkube/planetkube/internal/trust"
)

// TicketReconciler redeems Tickets addressed to this install: it verifies
// the token against the known Authorities, refuses it with the failed
// check's reason, and otherwise makes (or renews) what it grants, or
// withdraws the slice a withdrawal names. A refused ticket creates nothing;
// a ticket refused after it was redeemed (its key removed, its issuer no
// longer trusted, revoked) releases what it granted.
type TicketReconciler struct {
	client.Client
	// APIReader reads the redemption records (ConfigMaps, not cached).
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Namespace is the manager's: it holds the redemption records.
	Namespace string
	// Authority is this install's authority: the audience it redeems for;
	// Own gives its key (authority.Keys).
	Authority string
	Own       *authority.SignerSource
	// DefaultTrust is whom a site that sets no trustedAuthorities trusts
	// (empty: Authority alone).
	DefaultTrust []string
	// Skew is the clock skew allowed (default ticket.DefaultSkew).
	Skew time.Duration
	// Workers is the number of tickets redeemed at once (each waits on a
	// few API round trips: the dry run, the jti record, the slice).
	Workers int
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=planetkube.io,resources=tickets,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=tickets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices,verbs=create
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=configmaps,verbs=get;create;update
// +kubebuilder:rbac:groups=planetkube.io,resources=resourcepools,verbs=create;delete;patch

// redemption is the outcome of one reconcile of a Ticket.
type redemption struct {
	verified *ticket.Verified
	claims   *ticket.Claims // what the token says, verified or not
	reason   string
	message  string
	redeemed string
	// desired and ready are the redeemed slice's slivers.
	desired, ready int32
	// placement is the redeemed slice's account of its nodes, compacted.
	placement *planetv1.PlacementSummary
	// withdrawn is set when the ticket is a withdrawal, redeemed.
	withdrawn bool
}

// Reconcile verifies the ticket and redeems its grant; the status is
// written on every exit.
func (r *TicketReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	tk := &planetv1.Ticket{}
	if err := r.Get(ctx, req.NamespacedName, tk); err != nil {
		if apierrors.IsNotFound(err) {
			// A deleted ticket takes away the slices it alone granted.
			return ctrl.Result{}, r.release(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !tk.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	old := tk.DeepCopy()
	out := &redemption{}
	defer func() {
		if retErr != nil && out.reason == "" {
			out.reason, out.message = planetv1.ReasonRedeemFailed, retErr.Error()
		}
		r.setStatus(tk, out)
		r.emitTransitionEvent(old, tk)
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, old, tk, &old.Status, &tk.Status))
	}()

	if err := r.redeem(ctx, tk, out); err != nil {
		return ctrl.Result{}, err
	}
	if releases(out.reason) {
		// Refused now, though it may have been redeemed before: what it
		// holds goes (or passes to another Ticket carrying it that holds).
		if err := r.releaseHeld(ctx, tk, out); err != nil {
			return ctrl.Result{}, err
		}
	}
	switch {
	case out.verified != nil:
		// Look again when the ticket expires, to say so.
		return ctrl.Result{RequeueAfter: time.Until(out.verified.Expires()) + time.Second}, nil
	case out.reason == string(ticket.NotYetValid) && out.claims != nil:
		// Look again when it becomes valid (a withdrawal from a clock a
		// little ahead must not be lost).
		valid := time.Unix(max(out.claims.IssuedAt, out.claims.NotBefore), 0).Add(-r.skew())
		return ctrl.Result{RequeueAfter: max(time.Second, valid.Sub(r.Now())+time.Second)}, nil
	}
	return ctrl.Result{}, nil
}

// redeem runs the checks in order and makes what the ticket grants. A
// refusal is recorded in out and returns nil (nothing to retry); an error
// is retried.
func (r *TicketReconciler) redeem(ctx context.Context, tk *planetv1.Ticket, out *redemption) error {
	out.claims, _, _ = ticket.Inspect(tk.Spec.Token)
	verified, err := authority.Keys{Reader: r, Own: r.Own}.Verify(ctx, r.Authority, r.Skew, tk.Spec.Token, r.Now())
	if err != nil {
		return out.refuse(err) // a list failure is returned, to be retried
	}
	out.verified = verified
	switch {
	case verified.Withdraw != nil:
		return r.redeemWithdrawal(ctx, verified, out)
	case verified.Pool != nil:
		return r.redeemPool(ctx, tk, verified, out)
	}
	sites := &planetv1.SiteList{}
	if err := r.List(ctx, sites); err != nil {
		return err
	}
	grantAuthority, _, _, _ := naming.ParseFullName(verified.Sliver.Slice)
	if err := r.trust().CheckGrant(sites.Items, grantAuthority); err != nil {
		return out.refuse(err)
	}
	return r.redeemSliver(ctx, tk, verified, out)
}

// redeemSliver makes or renews the foreign Slice of a sliver grant. Every
// check comes before any write: the slice not withdrawn nor run here by a
// newer ticket (its floor), the jti not
// redeemed for another token, then a dry run (the API server's validation
// of what the grant asks); then the jti is recorded (atomically: the last
// check), and only then are the namespace and the Slice made.
func (r *TicketReconciler) redeemSliver(ctx context.Context, tk *planetv1.Ticket, v *ticket.Verified, out *redemption) error {
	want := v.ForeignSlice()
	want.Annotations[planetv1.AnnotationGrantedBy] = tk.Namespace + "/" + tk.Name
	out.redeemed = "Slice/" + want.Namespace + "/" + want.Name
	if err := r.checkFloor(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	have := &planetv1.Slice{}
	err := r.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		have = nil
	case err != nil:
		return err
	case runs(have, tk.Spec.Token):
		out.desired, out.ready = have.Status.DesiredSlivers, have.Status.ReadySlivers
		out.placement = shortfall.Compact(have.Status.Placement, planetv1.MaxPeerPlacementGroups)
		// This ticket is the one in force: nothing to write.
		return r.checkJTI(ctx, v, out)
	case ticket.OrderOf(have).After(v.Order()):
		out.reason, out.message = planetv1.ReasonSuperseded, fmt.Sprintf(
			"slice %s runs a newer ticket (jti %s); this one changes nothing", v.Sliver.Slice, have.Annotations[planetv1.AnnotationTicketID])
		return nil
	}
	if err := r.checkJTI(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	nsExists, err := authority.CheckNamespace(ctx, r.Client, want.Labels[planetv1.LabelAuthority], want.Namespace)
	if err != nil {
		return out.refuse(err)
	}

	write := func(dryRun bool) error {
		if have != nil {
			upd := have.DeepCopy()
			upd.Spec = want.Spec
			upd.Labels = mergeMaps(upd.Labels, want.Labels)
			upd.Annotations = mergeMaps(upd.Annotations, want.Annotations)
			if dryRun {
				return r.Update(ctx, upd, client.DryRunAll)
			}
			return r.Update(ctx, upd)
		}
		if !dryRun {
			// With the Slice controller's finalizer from the start, which
			// it would otherwise add with a write of its own.
			s := want.DeepCopy()
			controllerutil.AddFinalizer(s, planetv1.SliceFinalizer)
			return r.Create(ctx, s)
		}
		// The dry run of a first slice goes where a namespace exists: the
		// authority's is made only for a ticket that passed every check.
		try := want.DeepCopy()
		if !nsExists {
			try.Namespace = r.Namespace
		}
		return r.Create(ctx, try, client.DryRunAll)
	}
	if err := write(true); err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) {
			return out.refuse(&ticket.Refusal{Reason: ticket.InvalidGrant, Message: "the slice it grants is refused here: " + err.Error()})
		}
		return err
	}
	if err := r.record(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	if !nsExists {
		if err := authority.EnsureNamespace(ctx, r.Client, want.Labels[planetv1.LabelAuthority], want.Namespace); err != nil {
			return out.refuse(err)
		}
	}
	if err := write(false); err != nil {
		return fmt.Errorf("writing slice %s/%s: %w", want.Namespace, want.Name, err)
	}
	verb := "Created"
	if have != nil {
		verb = "Renewed"
	}
	ctrl.LoggerFrom(ctx).Info(verb+" foreign slice", "slice", v.Sliver.Slice, "namespace", want.Namespace, "name", want.Name, "jti", v.ID)
	return nil
}

// redeemWithdrawal withdraws the slice a withdrawal names: it records the
// withdrawal (every ticket of the slice not newer than it is Revoked from
// now on, wherever it is applied, across restarts, until the withdrawal
// expires) and deletes the foreign Slice when the ticket in force for it is
// older. The Tickets of the slice are looked at again when it goes: those
// that carried it turn Revoked.
func (r *TicketReconciler) redeemWithdrawal(ctx context.Context, v *ticket.Verified, out *redemption) error {
	full := v.Withdraw.Slice
	if err := r.record(ctx, v, out); err != nil || out.reason != "" {
		return err
	}
	rec := about(v)
	rec.withdrawn = true
	if err := r.raiseFloor(ctx, rec); err != nil {
		return err
	}
	out.withdrawn = true
	ns, name, _ := ticket.ForeignSliceKey(full) // checked by Verify
	s := &planetv1.Slice{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return client.IgnoreNotFound(err)
	}
	if s.Annotations[planetv1.AnnotationSliceFullName] != full || !s.DeletionTimestamp.IsZero() || ticket.OrderOf(s).After(v.Order()) {
		return nil // not this slice, going already, or granted again by a newer ticket
	}
	err := r.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting withdrawn slice %s/%s: %w", ns, name, err) // a conflict is retried
	}
	ctrl.LoggerFrom(ctx).Info("Deleted a foreign slice its issuer withdrew", "slice", full, "jti", v.ID)
	r.Recorder.Eventf(s, nil, corev1.EventTypeNormal, planetv1.ReasonWithdrawn, "Delete", "withdrawn by its issuer %s (ticket %s): its older tickets are revoked here", v.Issuer, v.ID)
	return nil
}

// refuse records a refusal; other errors are returned to be retried.
func (out *redemption) refuse(err error) error {
	var ref *ticket.Refusal
	if !errors.As(err, &ref) {
		return err
	}
	out.reason, out.message = string(ref.Reason), ref.Message
	return nil
}

// setStatus writes what the token says and the outcome.
func (r *TicketReconciler) setStatus(tk *planetv1.Ticket, out *redemption) {
	st := &tk.Status
	st.ObservedGeneration = tk.Generation
	if c := out.claims; c != nil {
		st.Issuer, st.Audience = health.Truncate(c.Issuer, 63), health.Truncate(c.Audience, 63)
		if c.Expiry > 0 && c.Expiry <= ticket.MaxUnixTime { // unverified: a time a status can hold
			st.ExpiresAt = &metav1.Time{Time: c.Expires()}
		}
		st.Grant = planetv1.TicketGrantSliver
		switch {
		case c.Pool != nil:
			st.Grant = planetv1.TicketGrantPool
		case c.Withdraw != nil:
			st.Grant = planetv1.TicketGrantWithdraw
		}
		st.Slice = health.Truncate(c.SliceName(), 160)
	}
	if v := out.verified; v != nil {
		st.KeyID = v.KeyID
	}
	expired := st.ExpiresAt != nil && !st.ExpiresAt.After(r.Now())
	ready := metav1.Condition{Status: metav1.ConditionTrue, Reason: planetv1.ReasonRedeemed, Message: "the ticket is redeemed: " + out.redeemed, ObservedGeneration: tk.Generation}
	if out.withdrawn {
		v := out.verified
		ready.Reason, ready.Message = planetv1.ReasonWithdrawn, fmt.Sprintf(
			"the ticket withdrew slice %s: its tickets issued before this one (%s) are revoked here until %s",
			v.Withdraw.Slice, time.Unix(v.IssuedAt, 0).UTC().Format(time.RFC3339), v.Expires().Format(time.RFC3339))
	}
	switch {
	case out.reason != "":
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, out.reason, health.Truncate(out.message, 1024)
	case expired:
		// What it granted ended with it: apply a newer ticket to go on.
		ready.Status, ready.Reason = metav1.ConditionFalse, planetv1.ReasonExpired
		ready.Message = fmt.Sprintf("the ticket expired at %s; it had redeemed %s: apply a newer ticket to renew it", st.ExpiresAt.UTC().Format(time.RFC3339), out.redeemed)
	}
	if out.reason == "" {
		st.Redeemed = out.redeemed
	}
	st.DesiredSlivers, st.ReadySlivers, st.Placement = 0, 0, nil
	if out.reason == "" && !expired {
		st.DesiredSlivers, st.ReadySlivers, st.Placement = out.desired, out.ready, out.placement
	}
	health.Set(&tk.Status.Conditions, ready, health.TicketRules)
	if expired {
		setTicketCondition(tk, planetv1.ConditionExpired, metav1.ConditionTrue, planetv1.ReasonExpired, "the ticket expired at "+st.ExpiresAt.UTC().Format(time.RFC3339))
	} else {
		setTicketCondition(tk, planetv1.ConditionExpired, metav1.ConditionFalse, planetv1.ReasonNotExpired, "the ticket has not expired")
	}
}

// emitTransitionEvent records an event when the outcome changes.
func (r *TicketReconciler) emitTransitionEvent(old, cur *planetv1.Ticket) {
	was := meta.FindStatusCondition(old.Status.Conditions, planetv1.ConditionReady)
	now := meta.FindStatusCondition(cur.Status.Conditions, planetv1.ConditionReady)
	if now == nil || (was != nil && was.Reason == now.Reason) {
		return
	}
	typ := corev1.EventTypeWarning
	if now.Status == metav1.ConditionTrue {
		typ = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(cur, nil, typ, now.Reason, "Redeem", now.Message)
}

func setTicketCondition(tk *planetv1.Ticket, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&tk.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: tk.Generation,
	})
}

// trust is the install's trust policy.
func (r *TicketReconciler) trust() trust.Policy {
	return trust.Policy{Local: r.Authority, Default: r.DefaultTrust}
}

// SetupWithManager registers the controller: Authorities that change (a
// key added or dropped) and Sites whose trust changes re-check the tickets;
// a foreign slice deleted re-checks the tickets for it.
func (r *TicketReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	allTickets := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return listRequests(ctx, r, &planetv1.TicketList{})
	})
	if err := indexTicketsAndGrants(context.Background(), mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&planetv1.Ticket{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(r.ticketsOfSlice), builder.WithPredicates(grantedSliceChanged)).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(grantingTicket), builder.WithPredicates(grantChanged)).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(r.ticketsForSlice), builder.WithPredicates(deleted)).
		Watches(&planetv1.ResourcePool{}, handler.EnqueueRequestsFromMapFunc(grantingTicket), builder.WithPredicates(grantChanged)).
		Watches(&planetv1.Authority{}, allTickets, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&planetv1.Site{}, allTickets, builder.WithPredicates(trustChanged)).
		Complete(r)
}
