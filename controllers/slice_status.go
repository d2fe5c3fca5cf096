package controllers

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// setStatus writes what the reconcile decided and observed into the slice's
// status: counts, expiry and the Ready, Expired and Suspended conditions.
func (r *SliceReconciler) setStatus(slice *planetv1.Slice, g gate, obs sliverObservation) {
	st := &slice.Status
	st.FullName = naming.FullName(r.Authority, slice.Namespace, slice.Name)
	st.Namespace = ""
	if g.ownNamespace {
		st.Namespace = naming.SliceNamespace(slice.Namespace, slice.Name)
	}
	st.ExpiresAt = &metav1.Time{Time: g.expiresAt.UTC().Truncate(1e9)}
	st.DesiredSlivers = int32(obs.desired)
	st.ReadySlivers = int32(obs.ready)
	st.PendingSlivers = int32(obs.desired - obs.ready)
	st.Slivers = fmt.Sprintf("%d/%d", obs.ready, obs.desired)
	st.NotReady = obs.issues
	st.ObservedGeneration = slice.Generation

	if g.expired {
		setCondition(slice, planetv1.ConditionExpired, metav1.ConditionTrue, ReasonExpired, g.blockMessageOr("the slice expired"))
	} else {
		setCondition(slice, planetv1.ConditionExpired, metav1.ConditionFalse, ReasonNotExpired, "the slice expires at "+st.ExpiresAt.Format("2006-01-02T15:04:05Z"))
	}
	if g.suspended {
		setCondition(slice, planetv1.ConditionSuspended, metav1.ConditionTrue, ReasonSuspended, "the slice is suspended: it runs no slivers")
	} else {
		setCondition(slice, planetv1.ConditionSuspended, metav1.ConditionFalse, ReasonActive, "the slice is active")
	}

	status, reason, msg := readiness(g, obs)
	setCondition(slice, planetv1.ConditionReady, status, reason, msg)
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
func readiness(g gate, obs sliverObservation) (metav1.ConditionStatus, string, string) {
	switch {
	case g.invalidExpiry != "":
		return metav1.ConditionFalse, ReasonInvalidExpiry, g.invalidExpiry
	case g.blockReason == ReasonSuspended:
		return metav1.ConditionTrue, ReasonSuspended, g.blockMessage
	case g.blockReason != "":
		return metav1.ConditionFalse, g.blockReason, g.blockMessage
	case obs.desired == 0 && obs.matching == 0:
		return metav1.ConditionFalse, ReasonNoMatchingNodes, "the slice's node selection matches no node"
	case obs.desired == 0:
		return metav1.ConditionFalse, ReasonNoMatchingNodes, fmt.Sprintf("%d nodes match the slice's node selection but none is ready", obs.matching)
	case obs.pending > 0:
		return metav1.ConditionFalse, ReasonSliversPending, fmt.Sprintf("%d of %d slivers ready", obs.ready, obs.desired)
	}
	msg := fmt.Sprintf("%d of %d slivers ready", obs.ready, obs.desired)
	if obs.ready < obs.desired {
		msg += fmt.Sprintf("; %d on nodes that are not ready", obs.desired-obs.ready)
	}
	return metav1.ConditionTrue, ReasonSliversReady, msg
}
