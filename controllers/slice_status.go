package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/sliverplan"
)

// setStatus writes what the reconcile decided and observed into the slice's
// status: counts, how the selected nodes stand, expiry and the Ready,
// Expired and Suspended conditions. A step that failed (fail) shows in
// Ready; the counts and issues of a reconcile that did not get to its
// slivers stay as they were.
func (r *SliceReconciler) setStatus(slice *planetv1.Slice, id sliceIdentity, g gate, obs sliverplan.Plan, summary *planetv1.PlacementSummary, fail *stepError) {
	st := &slice.Status
	st.FullName = id.fullName()
	st.Namespace = ""
	if g.ownNamespace {
		st.Namespace = id.namespace()
	}
	st.ObservedGeneration = slice.Generation
	if fail != nil && (fail.reason == planetv1.ReasonSiteLookupFailed || g.expiresAt.IsZero()) {
		setSliceReady(slice, metav1.ConditionFalse, fail.reason, health.Truncate(fail.Error(), 1024))
		return
	}
	st.ExpiresAt = &metav1.Time{Time: g.expiresAt.UTC().Truncate(1e9)}
	if fail == nil || fail.reason == planetv1.ReasonSliversFailed {
		st.DesiredSlivers = int32(obs.Desired)
		st.ReadySlivers = int32(obs.Ready)
		st.PendingSlivers = int32(obs.Desired - obs.Ready)
		st.Slivers = fmt.Sprintf("%d/%d", obs.Ready, obs.Desired)
		st.NotReady = obs.Issues
		st.Placement = summary
	}

	if g.expired {
		setCondition(slice, planetv1.ConditionExpired, metav1.ConditionTrue, planetv1.ReasonExpired, g.blockMessageOr("the slice expired"))
	} else {
		setCondition(slice, planetv1.ConditionExpired, metav1.ConditionFalse, planetv1.ReasonNotExpired, "the slice expires at "+st.ExpiresAt.Format("2006-01-02T15:04:05Z"))
	}
	if g.suspended {
		setCondition(slice, planetv1.ConditionSuspended, metav1.ConditionTrue, planetv1.ReasonSuspended, "the slice is suspended: it runs no slivers")
	} else {
		setCondition(slice, planetv1.ConditionSuspended, metav1.ConditionFalse, planetv1.ReasonActive, "the slice is active")
	}

	status, reason, msg := readiness(g, obs)
	if fail != nil {
		status, reason, msg = metav1.ConditionFalse, fail.reason, health.Truncate(fail.Error(), 1024)
	}
	setSliceReady(slice, status, reason, msg)
}

// statusUrgent says whether a slice's status change is written at once
// rather than held with the changes after it (SliceReconciler.StatusHolds):
// the first status (no Ready condition yet), a new generation observed
// (kstatus and GitOps tools wait for it), the slice's full name, namespace
// or expiry. Sliver counts, placement and issues, and the conditions that
// follow them (Ready's state and message, Reconciling coming and going as
// a node's sliver starts) may wait.
func statusUrgent(old, cur *planetv1.SliceStatus) bool {
	return meta.FindStatusCondition(old.Conditions, planetv1.ConditionReady) == nil ||
		old.ObservedGeneration != cur.ObservedGeneration || old.FullName != cur.FullName || old.Namespace != cur.Namespace ||
		!old.ExpiresAt.Equal(cur.ExpiresAt)
}

// setSliceReady sets the slice's Ready condition and the Reconciling or
// Stalled condition it implies.
func setSliceReady(slice *planetv1.Slice, status metav1.ConditionStatus, reason, msg string) {
	health.Set(&slice.Status.Conditions, metav1.Condition{
		Status: status, Reason: reason, Message: msg, ObservedGeneration: slice.Generation,
	}, health.SliceRules)
}

// blockMessageOr returns the gate's block message, or def when there is none.
func (g gate) blockMessageOr(def string) string {
	if g.blockMessage != "" {
		return g.blockMessage
	}
	return def
}

// readiness is the slice's Ready condition. A refused expiry outranks the
// rest, since the user must fix the spec; a suspended slice is Ready (it is
// as asked, which keeps GitOps health checks green); slivers on nodes that
// are not ready do not hold Ready back, as a large testbed always has some.
func readiness(g gate, obs sliverplan.Plan) (metav1.ConditionStatus, string, string) {
	switch {
	case g.invalidExpiry != "":
		return metav1.ConditionFalse, planetv1.ReasonInvalidExpiry, g.invalidExpiry
	case g.blockReason == planetv1.ReasonSuspended:
		return metav1.ConditionTrue, planetv1.ReasonSuspended, g.blockMessage
	case g.blockReason != "":
		return metav1.ConditionFalse, g.blockReason, g.blockMessage
	case obs.Desired == 0 && obs.Matching == 0:
		return metav1.ConditionFalse, planetv1.ReasonNoMatchingNodes, "the slice's node selection matches no node"
	case obs.Desired == 0:
		return metav1.ConditionFalse, planetv1.ReasonNoReadyNodes, fmt.Sprintf("%d nodes match the slice's node selection but none is ready", obs.Matching)
	case obs.Pending > 0:
		msg := fmt.Sprintf("%d of %d slivers ready", obs.Ready, obs.Desired)
		if obs.NoRoom > 0 {
			msg += fmt.Sprintf("; %d nodes have no room for one (status.placement says why)", obs.NoRoom)
		}
		return metav1.ConditionFalse, planetv1.ReasonSliversPending, msg
	}
	msg := fmt.Sprintf("%d of %d slivers ready", obs.Ready, obs.Desired)
	if obs.Ready < obs.Desired {
		msg += fmt.Sprintf("; %d on nodes that are not ready", obs.Desired-obs.Ready)
	}
	return metav1.ConditionTrue, planetv1.ReasonSliversReady, msg
}
