package authority

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// The namespace of a foreign authority's slices here
// (naming.AuthorityNamespace), made by whoever first needs it: the Ticket
// controller redeeming a sliver ticket, the poller making a feed's Tickets.

// CheckNamespace says whether the namespace that holds an
// authority's slices exists. One of that name that is another's (two
// authorities whose names map to one namespace, or one made by hand) is a
// refusal, NamespaceConflict: it does not clear by retrying.
func CheckNamespace(ctx context.Context, c client.Reader, authorityName, name string) (bool, error) {
	ns := &corev1.Namespace{}
	err := c.Get(ctx, client.ObjectKey{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	case ns.Labels[planetv1.LabelManagedBy] != planetv1.ManagedByValue || ns.Labels[planetv1.LabelAuthority] != authorityName:
		return true, &ticket.Refusal{Reason: ticket.Reason(planetv1.ReasonNamespaceConflict), Message: fmt.Sprintf(
			"namespace %s, where authority %s's slices live here, exists and is not %s's (it is labelled %s=%q)",
			name, authorityName, authorityName, planetv1.LabelAuthority, ns.Labels[planetv1.LabelAuthority])}
	}
	return true, nil
}

// EnsureNamespace makes the namespace that holds an authority's
// slices, when it is not there (a NamespaceConflict refusal when one of
// its name is another's).
func EnsureNamespace(ctx context.Context, c client.Client, authorityName, name string) error {
	if exists, err := CheckNamespace(ctx, c, authorityName, name); err != nil || exists {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelAuthority: authorityName,
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s for authority %s: %w", name, authorityName, err)
	}
	return nil
}
