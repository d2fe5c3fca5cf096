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
	"github.com/planetkube/planetkube/internal/shortfall"
)

// +kubebuilder:webhook:path=/validate-planetkube-io-v1alpha1-slice,mutating=false,failurePolicy=ignore,sideEffects=None,groups=planetkube.io,resources=slices,verbs=create;update,versions=v1alpha1,name=vslice.planetkube.io,admissionReviewVersions=v1,timeoutSeconds=5

// SliceValidator refuses a Slice whose newly set expiresAt is in the past or
// more than 8 weeks ahead. The Slice controller applies the same rule (and
// keeps the expiry in force) if the webhook is not installed or does not
// answer: so the webhook fails open (failurePolicy Ignore), and a manager
// that is down never blocks a change to a Slice (removing a finalizer, say).
//
// A dry run (kubectl apply --dry-run=server) also answers with warnings
// saying what the slice would get: how many slivers on how many nodes of
// which sites, and why the other selected nodes would run none, in the
// words of the slice's status.placement (Previewer: the Slice controller's
// own decisions).
type SliceValidator struct {
	// Now returns the current time; tests may set it.
	Now func() time.Time
	// Previewer computes what a slice would get; nil: no preview.
	Previewer Previewer
}

// Previewer says what a slice would get if it were applied now, writing
// nothing.
type Previewer interface {
	Preview(ctx context.Context, s *planetv1.Slice) (*shortfall.Preview, error)
}

var _ admission.Validator[*planetv1.Slice] = &SliceValidator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func (v *SliceValidator) SetupWithManager(mgr ctrl.Manager) error {
	if v.Now == nil {
		v.Now = time.Now
	}
	return ctrl.NewWebhookManagedBy(mgr, &planetv1.Slice{}).WithValidator(v).Complete()
}

// ValidateCreate checks a new slice's requested expiry; a dry run says what
// it would get.
func (v *SliceValidator) ValidateCreate(ctx context.Context, s *planetv1.Slice) (admission.Warnings, error) {
	if s.Spec.ExpiresAt != nil {
		if err := v.checkExpiry(s); err != nil {
			return nil, err
		}
	}
	return v.preview(ctx, s), nil
}

// ValidateUpdate checks the requested expiry when it changes (a renewal);
// a dry run says what the slice would get.
func (v *SliceValidator) ValidateUpdate(ctx context.Context, old, s *planetv1.Slice) (admission.Warnings, error) {
	if s.Spec.ExpiresAt != nil && (old.Spec.ExpiresAt == nil || !old.Spec.ExpiresAt.Equal(s.Spec.ExpiresAt)) {
		if err := v.checkExpiry(s); err != nil {
			return nil, err
		}
	}
	return v.preview(ctx, s), nil
}

// preview returns, for a dry run, the warnings saying what the slice would
// get; nothing for a request that is not a dry run. A preview that fails
// says so in a warning: it never refuses the request.
func (v *SliceValidator) preview(ctx context.Context, s *planetv1.Slice) admission.Warnings {
	req, err := admission.RequestFromContext(ctx)
	if err != nil || req.DryRun == nil || !*req.DryRun || v.Previewer == nil {
		return nil
	}
	p, err := v.Previewer.Preview(ctx, s)
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("Could not preview a slice", "slice", s.Namespace+"/"+s.Name, "error", err.Error())
		return admission.Warnings{"planetkube: could not say what the slice would get: " + err.Error()}
	}
	return p.Warnings()
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
