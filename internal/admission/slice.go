// Package admission holds PlanetKube's validating webhooks: the rules that
// need more than the CRD schema and its CEL rules can say (CEL has no clock).
package admission

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/expiry"
)

// +kubebuilder:webhook:path=/validate-planetkube-io-v1alpha1-slice,mutating=false,failurePolicy=ignore,sideEffects=None,groups=planetkube.io,resources=slices,verbs=create;update,versions=v1alpha1,name=vslice.planetkube.io,admissionReviewVersions=v1,timeoutSeconds=5

// SliceValidator refuses a Slice whose newly set expiresAt is in the past or
// more than 8 weeks ahead. The Slice controller applies the same rule (and
// keeps the expiry in force) if the webhook is not installed or does not
// answer: so the webhook fails open (failurePolicy Ignore), and a manager
// that is down never blocks a change to a Slice (removing a finalizer, say).
type SliceValidator struct {
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

var _ admission.Validator[*planetv1.Slice] = &SliceValidator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func (v *SliceValidator) SetupWithManager(mgr ctrl.Manager) error {
	if v.Now == nil {
		v.Now = time.Now
	}
	return ctrl.NewWebhookManagedBy(mgr, &planetv1.Slice{}).WithValidator(v).Complete()
}

// ValidateCreate checks a new slice's requested expiry.
func (v *SliceValidator) ValidateCreate(_ context.Context, s *planetv1.Slice) (admission.Warnings, error) {
	if s.Spec.ExpiresAt == nil {
		return nil, nil
	}
	return nil, v.checkExpiry(s)
}

// ValidateUpdate checks the requested expiry when it changes (a renewal).
func (v *SliceValidator) ValidateUpdate(_ context.Context, old, s *planetv1.Slice) (admission.Warnings, error) {
	if s.Spec.ExpiresAt == nil || (old.Spec.ExpiresAt != nil && old.Spec.ExpiresAt.Equal(s.Spec.ExpiresAt)) {
		return nil, nil
	}
	return nil, v.checkExpiry(s)
}

// ValidateDelete allows every deletion.
func (v *SliceValidator) ValidateDelete(context.Context, *planetv1.Slice) (admission.Warnings, error) {
	return nil, nil
}

func (v *SliceValidator) checkExpiry(s *planetv1.Slice) error {
	msg := expiry.Check(s.Spec.ExpiresAt.Time, v.Now())
	if msg == "" {
		return nil
	}
	return invalid("Slice", s.Name, field.ErrorList{
		field.Invalid(field.NewPath("spec", "expiresAt"), s.Spec.ExpiresAt.UTC().Format(time.RFC3339), msg),
	})
}
