package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TicketGrant is the kind of grant a ticket carries.
// +kubebuilder:validation:Enum=Sliver;Pool;Withdraw
type TicketGrant string

// Ticket grants: slivers of a slice, a part of a pool, or the withdrawal
// of a slice (which revokes its older tickets).
const (
	TicketGrantSliver   TicketGrant = "Sliver"
	TicketGrantPool     TicketGrant = "Pool"
	TicketGrantWithdraw TicketGrant = "Withdraw"
)

// TicketSpec carries a signed ticket to redeem in this cluster.
type TicketSpec struct {
	// token is the ticket: a compact JWS signed with EdDSA by an Authority,
	// holding issuer, audience, expiry, nonce and the resource spec it grants.
	// +kubebuilder:validation:MinLength=16
	// +kubebuilder:validation:MaxLength=16384
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="token is immutable"
	// +required
	Token string `json:"token"`
}

// TicketStatus is what the Ticket controller found in the token.
type TicketStatus struct {
	// issuer is the Authority that signed the ticket.
	// +optional
	Issuer string `json:"issuer,omitempty"`

	// audience is the authority the ticket is addressed to.
	// +optional
	Audience string `json:"audience,omitempty"`

	// expiresAt is the ticket's expiry.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// grant is what the ticket grants: Sliver, Pool or Withdraw.
	// +optional
	Grant TicketGrant `json:"grant,omitempty"`

	// slice is the full name of the slice the grant is for.
	// +kubebuilder:validation:MaxLength=160
	// +optional
	Slice string `json:"slice,omitempty"`

	// keyID names the issuer's key that signed the ticket.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// redeemed names what the ticket created, as <kind>/<namespace>/<name>.
	// +optional
	Redeemed string `json:"redeemed,omitempty"`

	// desiredSlivers and readySlivers are the redeemed slice's, so that
	// whoever applied the ticket (a peer pushing it) sees what runs.
	// +optional
	DesiredSlivers int32 `json:"desiredSlivers,omitempty"`
	// +optional
	ReadySlivers int32 `json:"readySlivers,omitempty"`

	// placement is the redeemed slice's account of its nodes (at most 4
	// reasons, one example each), for whoever applied the ticket.
	// +optional
	Placement *PlacementSummary `json:"placement,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (reason Redeemed, or Withdrawn for a withdrawal,
	// or why the ticket was refused: Malformed, BadSignature,
	// UnknownIssuer, BadDelegation, OutOfScope, WrongAudience, NotYetValid,
	// Expired, Replayed, Revoked, NotTrusted, Overcommitted, InvalidGrant,
	// NamespaceConflict), Expired.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Ticket is a signed grant (to create slivers, or a part of a pool) to redeem
// here. Forged, expired, replayed or misaddressed tickets are refused with a
// reason in the status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tk,categories=planetkube
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.status.issuer`
// +kubebuilder:printcolumn:name="Grant",type=string,JSONPath=`.status.grant`
// +kubebuilder:printcolumn:name="Slice",type=string,JSONPath=`.status.slice`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Ticket struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the token.
	// +required
	Spec TicketSpec `json:"spec"`

	// status is what the token says and whether it was redeemed.
	// +optional
	Status TicketStatus `json:"status,omitempty"`
}

// TicketList is a list of Tickets.
//
// +kubebuilder:object:root=true
type TicketList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Ticket `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Ticket{}, &TicketList{})
}
