package ticket

import (
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// SliceExpiry is when the granted slice expires: the grant's expiresAt, or
// the ticket's expiry when unset (a foreign slice lives no longer than its
// ticket; a newer ticket renews it).
func (g *SliverGrant) SliceExpiry(ticketExpiry int64) time.Time {
	if g.ExpiresAt > 0 && g.ExpiresAt < ticketExpiry {
		return time.Unix(g.ExpiresAt, 0).UTC()
	}
	return time.Unix(ticketExpiry, 0).UTC()
}

// ForeignSlice returns the Slice a verified sliver grant makes: in the
// namespace of its authority, named "<site>-<slice>", carrying its full
// name and the ticket's jti and iat. Nil for a pool grant.
func (v *Verified) ForeignSlice() *planetv1.Slice {
	g := v.Sliver
	if g == nil {
		return nil
	}
	authority, _, _, _ := naming.ParseFullName(g.Slice) // checked by Verify
	namespace, name, _ := ForeignSliceKey(g.Slice)
	s := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      name,
			Labels: map[string]string{
				planetv1.LabelManagedBy: planetv1.ManagedByValue,
				planetv1.LabelAuthority: authority,
			},
			Annotations: map[string]string{
				planetv1.AnnotationSliceFullName:  g.Slice,
				planetv1.AnnotationTicketID:       v.ID,
				planetv1.AnnotationTicketIssuedAt: strconv.FormatInt(v.IssuedAt, 10),
				planetv1.AnnotationTicketSHA256:   v.Hash,
			},
		},
		Spec: planetv1.SliceSpec{
			Description: g.Description,
			URL:         g.URL,
			ExpiresAt:   &metav1.Time{Time: g.SliceExpiry(v.Expiry)},
			Nodes:       g.Nodes,
			Template:    g.Template,
			CPUShare:    max(1, g.CPUShare),
			Users:       g.Users,
			State:       planetv1.SliceActive,
			PodSecurity: g.PodSecurity,
		},
	}
	// A foreign slice runs here only: it names no further authorities.
	s.Spec.Nodes.Authorities = nil
	if g.State == planetv1.SliceSuspended {
		s.Spec.State = planetv1.SliceSuspended
	}
	if s.Spec.PodSecurity == "" {
		s.Spec.PodSecurity = planetv1.PodSecurityBaseline
	}
	return s
}

// OrderOf reads the Order of the ticket in force for a Slice made from a
// ticket; the zero Order when none (a slice made before the hash was
// recorded has its iat and an empty hash).
func OrderOf(s *planetv1.Slice) Order {
	n, _ := strconv.ParseInt(s.Annotations[planetv1.AnnotationTicketIssuedAt], 10, 64)
	return Order{IssuedAt: n, Hash: s.Annotations[planetv1.AnnotationTicketSHA256]}
}

// ForeignSliceKey returns where the Slice of a foreign slice's full name
// lives here: its authority's namespace, named "<site>-<slice>". ok is
// false when full is not a full name.
func ForeignSliceKey(full string) (namespace, name string, ok bool) {
	authority, site, slice, ok := naming.ParseFullName(full)
	if !ok {
		return "", "", false
	}
	return naming.AuthorityNamespace(authority), naming.ForeignSliceName(site, slice), true
}
