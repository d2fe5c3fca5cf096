package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Labels, annotations and finalizers that PlanetKube sets or reads.
const (
	// LabelSite names the site a node, namespace or sliver belongs to.
	LabelSite = "planetkube.io/site"
	// LabelSlice names the slice a namespace or sliver belongs to.
	LabelSlice = "planetkube.io/slice"
	// LabelManagedBy marks objects that PlanetKube created.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on PlanetKube's objects.
	ManagedByValue = "planetkube"
	// AnnotationSliceFullName carries the slice's full name on what it owns.
	AnnotationSliceFullName = "planetkube.io/slice-full-name"

	// LabelAuthority names the authority a namespace holds the slices of
	// (one namespace per foreign authority), or a foreign Slice's.
	LabelAuthority = "planetkube.io/authority"
	// AnnotationTicketID, on a Slice made from a ticket, is the ticket's jti;
	// AnnotationTicketIssuedAt its iat (Unix seconds) and
	// AnnotationTicketSHA256 its token's hash: an older ticket (by iat, then
	// hash: internal/ticket's Order) does not undo a newer one.
	AnnotationTicketID       = "planetkube.io/ticket-id"
	AnnotationTicketIssuedAt = "planetkube.io/ticket-issued-at"
	AnnotationTicketSHA256   = "planetkube.io/ticket-sha256"
	// LabelTicketRecord marks the records (ConfigMaps in the manager's
	// namespace) of redeemed tickets: "jti", that an issuer's jti was
	// redeemed, with the token's hash (the same jti for another token is
	// refused as Replayed, after the Ticket is deleted and across manager
	// restarts); "slice", a slice's floor (withdrawn by its issuer: its
	// older tickets are refused as Revoked; or given back when the last
	// Ticket that granted it went: an older ticket does not bring it back).
	// Each is pruned once the tickets it is about would have expired.
	LabelTicketRecord = "planetkube.io/ticket-record"
	// LabelFederationTickets marks the Secrets, in the manager's namespace,
	// that hold the tickets a home slice was given for its peers (one
	// Secret per slice, one key per peer): never in a status that its
	// site's people can read.
	LabelFederationTickets = "planetkube.io/federation-tickets"

	// AnnotationGrantedBy, on a foreign Slice, names the Ticket in force for
	// it (<namespace>/<name>): the slice lives while a Ticket grants it, and
	// goes when the last one is deleted.
	AnnotationGrantedBy = "planetkube.io/granted-by"
	// LabelTicketSource marks the Tickets PlanetKube applies itself: "feed"
	// (pulled from a peer's feed) or "push" (applied by a peer).
	LabelTicketSource = "planetkube.io/ticket-source"
	// LabelSliceID, on a pushed or pulled Ticket, identifies its slice
	// (a hash of the full name, which is too long for a label).
	LabelSliceID = "planetkube.io/slice-id"

	// FederationFinalizer lets the federation controller withdraw a home
	// slice's pushed tickets from its peers when the slice is deleted.
	FederationFinalizer = "planetkube.io/federation"

	// AuthorityFinalizer lets the Authority controller remove the
	// namespaces of an authority's slices when the Authority is deleted.
	AuthorityFinalizer = "planetkube.io/authority"

	// SliceFinalizer lets the Slice controller remove the slice namespace,
	// which cannot carry an owner reference to a namespaced Slice.
	SliceFinalizer = "planetkube.io/slice"
)

// SubjectKind is the kind of an RBAC subject.
// +kubebuilder:validation:Enum=User;Group;ServiceAccount
type SubjectKind string

// Subject kinds.
const (
	SubjectUser           SubjectKind = "User"
	SubjectGroup          SubjectKind = "Group"
	SubjectServiceAccount SubjectKind = "ServiceAccount"
)

// Subject is a person, group or service account given a role by PlanetKube.
// +kubebuilder:validation:XValidation:rule="self.kind == 'ServiceAccount' ? has(self.namespace) : !has(self.namespace)",message="namespace is set for, and only for, kind ServiceAccount"
type Subject struct {
	// kind of the subject: User, Group or ServiceAccount.
	// +kubebuilder:default=User
	// +optional
	Kind SubjectKind `json:"kind,omitempty"`

	// name of the subject as the API server authenticates it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`

	// namespace of a ServiceAccount subject.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// NodeSelection says which nodes a Slice or ResourcePool spans. A node matches
// when it matches every field that is set; an empty selection matches every
// PlanetKube node (a node labelled planetkube.io/site).
type NodeSelection struct {
	// selector matches node labels.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// sites limits the nodes to those of these sites (label planetkube.io/site).
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=32
	// +listType=set
	// +optional
	Sites []string `json:"sites,omitempty"`

	// names limits the nodes to these node names.
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	Names []string `json:"names,omitempty"`
}
