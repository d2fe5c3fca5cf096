package controllers

import planetv1 "github.com/planetkube/planetkube/api/v1alpha1"

// noteExpiry tells a slice's PI that its expiry nears (stub: issue 24's
// expiry notice fills it in).
func (r *SliceReconciler) noteExpiry(_, _ *planetv1.Slice, _ gate) {}
