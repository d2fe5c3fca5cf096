package controllers

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/expiry"
)

// noteExpiry tells a slice's PI that its expiry nears, as PlanetLab mailed
// the PIs: the ExpiresSoon condition is True in the slice's last week
// (reason LastWeek) and last day (LastDay), and a Warning event with the
// same reason says so once, when the slice enters each. An expired slice
// (its Expired condition and event say so) and a suspended one (it runs
// nothing that the expiry would stop) get no notice. The messages carry
// absolute times only, so that a converged slice makes no write. With the
// expiry unknown (g.expiresAt zero) the condition stays as it was.
func (r *SliceReconciler) noteExpiry(old, slice *planetv1.Slice, g gate) {
	if g.expiresAt.IsZero() {
		return
	}
	at := g.expiresAt.UTC().Format(time.RFC3339)
	renew := r.renewalHint(slice)
	status, reason, msg := metav1.ConditionFalse, planetv1.ReasonNotExpiringSoon, "the slice expires at "+at+", more than a week ahead"
	switch {
	case g.expired || g.notice == expiry.Expired:
		reason, msg = planetv1.ReasonExpired, "the slice expired at "+at+" (see the Expired condition)"
	case g.suspended:
		reason, msg = planetv1.ReasonSuspended, "the slice is suspended: its expiry at "+at+" stops nothing, so it gets no notice"
	case g.notice == expiry.LastWeek:
		status, reason, msg = metav1.ConditionTrue, planetv1.ReasonLastWeek, "the slice expires at "+at+", within a week: "+renew
	case g.notice == expiry.LastDay:
		status, reason, msg = metav1.ConditionTrue, planetv1.ReasonLastDay, "the slice expires at "+at+", within a day: "+renew
	}
	setCondition(slice, planetv1.ConditionExpiresSoon, status, reason, msg)

	if status != metav1.ConditionTrue {
		r.notices.Delete(slice.UID)
		return
	}
	if was := meta.FindStatusCondition(old.Status.Conditions, planetv1.ConditionExpiresSoon); was != nil && was.Reason == reason {
		return
	}
	if sent, ok := r.notices.Load(slice.UID); ok && sent.(sentNotice).reason == reason {
		return
	}
	now := r.Now()
	r.notices.Store(slice.UID, sentNotice{reason: reason, expiresAt: g.expiresAt})
	r.pruneNotices(now)
	name := slice.Status.FullName
	if name == "" {
		name = slice.Namespace + "/" + slice.Name
	}
	r.Recorder.Eventf(slice, nil, corev1.EventTypeWarning, reason, "Expiry",
		"slice %s expires at %s, in %s: %s", name, at, expiry.Humanize(g.expiresAt.Sub(now)), renew)
}

// sentNotice is a notice sent: its reason, and the expiry it was about.
type sentNotice struct {
	reason    string
	expiresAt time.Time
}

// pruneNotices forgets the notices whose expiry is past.
func (r *SliceReconciler) pruneNotices(now time.Time) {
	r.notices.Range(func(uid, sent any) bool {
		if !sent.(sentNotice).expiresAt.After(now) {
			r.notices.Delete(uid)
		}
		return true
	})
}

// renewalHint says how the slice is renewed: with the command line or
// spec.expiresAt for a local slice, at its home authority for a foreign one
// (its expiry is its ticket's).
func (r *SliceReconciler) renewalHint(slice *planetv1.Slice) string {
	if id := r.identity(slice); id.foreign {
		return fmt.Sprintf("it is renewed at its home authority %s, whose newer ticket extends it here", id.authority)
	}
	return fmt.Sprintf("renew it with `planetkube slice renew %s -n %s --for 14d`, or set spec.expiresAt (in Git, for GitOps), at most 8 weeks ahead",
		slice.Name, slice.Namespace)
}
