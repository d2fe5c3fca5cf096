package admission

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
	"github.com/planetkube/planetkube/internal/trust"
)

// +kubebuilder:webhook:path=/validate-planetkube-io-v1alpha1-ticket,mutating=false,failurePolicy=ignore,sideEffects=None,groups=planetkube.io,resources=tickets,verbs=create,versions=v1alpha1,name=vticket.planetkube.io,admissionReviewVersions=v1,timeoutSeconds=5

// TicketValidator refuses at once, so that `kubectl apply` prints why, a
// Ticket whose token fails verification (every reason of
// ticket.Verifier.Verify) or whose issuer no site here trusts. The Ticket
// controller makes the same checks (and the replay check) before it creates
// anything, so the webhook fails open.
type TicketValidator struct {
	// Reader reads Authorities and Sites (the manager's cache).
	Reader client.Reader
	// Authority is this install's authority: the audience; Own gives its
	// key (authority.Keys).
	Authority string
	Own       *authority.SignerSource
	// DefaultTrust is whom a site that sets no trustedAuthorities trusts
	// (empty: Authority alone).
	DefaultTrust []string
	// Skew is the clock skew allowed (default ticket.DefaultSkew).
	Skew time.Duration
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

var _ admission.Validator[*planetv1.Ticket] = &TicketValidator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func (v *TicketValidator) SetupWithManager(mgr ctrl.Manager) error {
	if v.Now == nil {
		v.Now = time.Now
	}
	return ctrl.NewWebhookManagedBy(mgr, &planetv1.Ticket{}).WithValidator(v).Complete()
}

// ValidateCreate verifies the new ticket's token.
func (v *TicketValidator) ValidateCreate(ctx context.Context, tk *planetv1.Ticket) (admission.Warnings, error) {
	verified, err := authority.Keys{Reader: v.Reader, Own: v.Own}.Verify(ctx, v.Authority, v.Skew, tk.Spec.Token, v.Now())
	if err != nil {
		if ticket.ReasonOf(err) == "" {
			return nil, err
		}
		return nil, refused(tk, err)
	}
	grant := verified.Sliver
	if grant == nil {
		return nil, nil
	}
	grantAuthority, _, _, _ := naming.ParseFullName(grant.Slice)
	sites := &planetv1.SiteList{}
	if err := v.Reader.List(ctx, sites); err != nil {
		return nil, err
	}
	if err := (trust.Policy{Local: v.Authority, Default: v.DefaultTrust}).CheckGrant(sites.Items, grantAuthority); err != nil {
		return nil, refused(tk, err)
	}
	return nil, nil
}

// ValidateUpdate allows every update: the token is immutable (CEL).
func (v *TicketValidator) ValidateUpdate(context.Context, *planetv1.Ticket, *planetv1.Ticket) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every deletion.
func (v *TicketValidator) ValidateDelete(context.Context, *planetv1.Ticket) (admission.Warnings, error) {
	return nil, nil
}

// refused is the error a refused ticket gets: the reason, then the check
// that failed. The token itself is not repeated.
func refused(tk *planetv1.Ticket, err error) error {
	return invalid("Ticket", tk.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "token"), "(token)", err.Error())})
}
