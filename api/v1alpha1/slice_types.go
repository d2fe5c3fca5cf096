package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SliceState says whether a slice runs its slivers.
// +kubebuilder:validation:Enum=Active;Suspended
type SliceState string

// Slice states.
const (
	SliceActive    SliceState = "Active"
	SliceSuspended SliceState = "Suspended"
)

// PodSecurityLevel is the Pod Security Standard enforced in a slice namespace.
// +kubebuilder:validation:Enum=Baseline;Restricted
type PodSecurityLevel string

// Pod Security levels.
const (
	PodSecurityBaseline   PodSecurityLevel = "Baseline"
	PodSecurityRestricted PodSecurityLevel = "Restricted"
)

// SliceSpec is what a PI declares about a slice.
// +kubebuilder:validation:XValidation:rule="!has(self.nodes) || !has(self.nodes.maxNodes) || self.nodes.maxNodes > 0",message="nodes.maxNodes must be positive"
type SliceSpec struct {
	// description says what the slice is for; it is shown to anyone who looks
	// up the slice's traffic.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// url is the slice's home page.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	// +optional
	URL string `json:"url,omitempty"`

	// expiresAt is when the slice loses its slivers. Unset, it is 14 days after
	// creation. A renewal may set it at most 8 weeks ahead of the time it is
	// made; a later or past time is refused (condition Ready=False,
	// reason InvalidExpiry) and the previous expiry stays in force.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// nodes says which nodes get a sliver.
	// +optional
	Nodes SliceNodes `json:"nodes,omitempty"`

	// template is the sliver each node runs.
	// +required
	Template SliverTemplate `json:"template"`

	// cpuShare is the slice's weight in the fair share of each node's
	// unreserved CPU. Default 1, as in PlanetLab.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	CPUShare int32 `json:"cpuShare,omitempty"`

	// users may reach the slice's namespace and log in to its slivers.
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	// +optional
	Users []SliceUser `json:"users,omitempty"`

	// state is Active (default) or Suspended: a suspended slice has no slivers
	// but keeps everything else.
	// +kubebuilder:default=Active
	// +optional
	State SliceState `json:"state,omitempty"`

	// podSecurity is the Pod Security Standard enforced in the slice namespace:
	// Baseline (default) or Restricted (slivers then run as non-root).
	// +kubebuilder:default=Baseline
	// +optional
	PodSecurity PodSecurityLevel `json:"podSecurity,omitempty"`
}

// SliceNodes chooses a slice's nodes.
type SliceNodes struct {
	NodeSelection `json:",inline"`

	// maxNodes caps the number of slivers. Nodes are taken round-robin across
	// sites, each site's in name order, keeping the nodes that already have a
	// sliver.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxNodes *int32 `json:"maxNodes,omitempty"`

	// authorities are peer installs (Authorities known here) whose nodes the
	// slice also spans, besides this install's: each gets a sliver ticket,
	// pushed to it when its Authority has spec.push, and listed in this
	// install's feed for it to pull. The other fields of nodes choose the
	// nodes at every authority alike (maxNodes caps each). Only a slice of
	// this install's sites may name them.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]+(\.[a-z0-9]+)*$`
	// +listType=set
	// +optional
	Authorities []string `json:"authorities,omitempty"`
}

// SliverTemplate is the container each sliver runs. It has no security
// context, host namespaces or volumes of its own: PlanetKube sets those.
type SliverTemplate struct {
	// image is the container image.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Image string `json:"image"`

	// command overrides the image's entrypoint.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	// +listType=atomic
	// +optional
	Command []string `json:"command,omitempty"`

	// args are the arguments to the command.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=4096
	// +listType=atomic
	// +optional
	Args []string `json:"args,omitempty"`

	// env sets environment variables.
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []EnvVar `json:"env,omitempty"`

	// ports the sliver listens on.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Ports []SliverPort `json:"ports,omitempty"`
}

// EnvVar is one environment variable of a sliver.
type EnvVar struct {
	// name of the variable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	// +required
	Name string `json:"name"`

	// value of the variable.
	// +kubebuilder:validation:MaxLength=32768
	// +optional
	Value string `json:"value,omitempty"`
}

// SliverPort is a port a sliver listens on.
type SliverPort struct {
	// name of the port, unique in the sliver.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Name string `json:"name,omitempty"`

	// containerPort is the port number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	ContainerPort int32 `json:"containerPort"`

	// protocol is TCP (default), UDP or SCTP.
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	// +kubebuilder:default=TCP
	// +optional
	Protocol corev1.Protocol `json:"protocol,omitempty"`
}

// SliceUser is a person with access to a slice.
type SliceUser struct {
	// name is the user's name as the API server authenticates it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`

	// sshKeys are the user's SSH public keys (OpenSSH authorized_keys lines).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=16384
	// +kubebuilder:validation:items:Pattern=`^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( [^\n\r]*)?$`
	// +listType=atomic
	// +optional
	SSHKeys []string `json:"sshKeys,omitempty"`
}

// SliverIssue says why a node that should run a sliver does not have a ready one.
type SliverIssue struct {
	// node is the node's name.
	// +kubebuilder:validation:MaxLength=253
	// +required
	Node string `json:"node"`

	// reason is a CamelCase word: NodeNotReady, Pending, ContainerCreating ...
	// +kubebuilder:validation:MaxLength=128
	// +required
	Reason string `json:"reason"`

	// message says more.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// FederationPhase says where a slice's ticket for a peer stands.
// +kubebuilder:validation:Enum=Issued;Pushed;Redeemed;Refused;Unreachable;Withdrawn;Failed
type FederationPhase string

// Federation phases.
const (
	// FederationIssued: the ticket is signed and listed in the feed for the
	// peer to pull (no push configured).
	FederationIssued FederationPhase = "Issued"
	// FederationPushed: the ticket is applied at the peer, not redeemed yet.
	FederationPushed FederationPhase = "Pushed"
	// FederationRedeemed: the peer redeemed the pushed ticket.
	FederationRedeemed FederationPhase = "Redeemed"
	// FederationRefused: the peer refused the pushed ticket (reason says why).
	FederationRefused FederationPhase = "Refused"
	// FederationUnreachable: the peer could not be reached to push; the
	// ticket stays in the feed.
	FederationUnreachable FederationPhase = "Unreachable"
	// FederationWithdrawn: the slice expired: no ticket is offered.
	FederationWithdrawn FederationPhase = "Withdrawn"
	// FederationFailed: no ticket could be issued (unknown authority, no
	// key); reason says why.
	FederationFailed FederationPhase = "Failed"
)

// SliceFederation is a slice's standing at one peer authority.
type SliceFederation struct {
	// authority is the peer.
	// +kubebuilder:validation:MaxLength=63
	// +required
	Authority string `json:"authority"`

	// phase is Issued, Pushed, Redeemed, Refused, Unreachable, Withdrawn or
	// Failed.
	// +optional
	Phase FederationPhase `json:"phase,omitempty"`

	// reason is a CamelCase word saying why, when the phase is not the
	// happy one.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Reason string `json:"reason,omitempty"`

	// message says more.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`

	// ticketID is the jti of the ticket in force for the peer (or of the
	// withdrawal sent to it). The ticket itself, a bearer token, is not in
	// the status: it lives in the Secret planetkube-federation-<slice id>
	// of the manager's namespace, which only the manager and the cluster's
	// operators read.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	TicketID string `json:"ticketID,omitempty"`

	// issuedAt is when that ticket was signed.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// grantHash identifies what the ticket grants: a new ticket is signed
	// when it changes (renewal, suspension, a new template).
	// +kubebuilder:validation:MaxLength=64
	// +optional
	GrantHash string `json:"grantHash,omitempty"`

	// desiredSlivers and readySlivers are what the peer reports for the
	// slice, when the ticket is pushed.
	// +optional
	DesiredSlivers int32 `json:"desiredSlivers,omitempty"`
	// +optional
	ReadySlivers int32 `json:"readySlivers,omitempty"`

	// slivers is readySlivers/desiredSlivers at the peer, for display.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Slivers string `json:"slivers,omitempty"`

	// since is when the phase last changed: how long a peer has been
	// unreachable, or has refused.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`

	// placement is the peer's account of its nodes for the slice, as it
	// reports it (pushed tickets only; at most 4 reasons, one example each).
	// +optional
	Placement *PlacementSummary `json:"placement,omitempty"`
}

// MaxFederationEntries bounds SliceStatus.Federation.
const MaxFederationEntries = 16

// MaxSliverIssues bounds SliceStatus.NotReady.
const MaxSliverIssues = 20

// SliceStatus is what the Slice controller observed.
type SliceStatus struct {
	// fullName is <authority>.<site>.<slice>.
	// +optional
	FullName string `json:"fullName,omitempty"`

	// namespace holds the slice's slivers.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// expiresAt is the expiry in force.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// desiredSlivers counts the nodes that should run a sliver, Ready or not.
	// +optional
	DesiredSlivers int32 `json:"desiredSlivers"`

	// readySlivers counts the slivers that are running and ready.
	// +optional
	ReadySlivers int32 `json:"readySlivers"`

	// pendingSlivers counts the desired slivers that are not ready.
	// +optional
	PendingSlivers int32 `json:"pendingSlivers"`

	// slivers is readySlivers/desiredSlivers, for display.
	// +optional
	Slivers string `json:"slivers,omitempty"`

	// notReady lists, for at most 20 nodes, why their sliver is not ready.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	NotReady []SliverIssue `json:"notReady,omitempty"`

	// placement says how the nodes the slice's selection names at this
	// install stand: how many run a ready sliver, and why the others do
	// not, by reason (the site does not trust the slice's authority, is
	// disabled, the node is not ready, has no room ...).
	// +optional
	Placement *PlacementSummary `json:"placement,omitempty"`

	// usage is what the slice's slivers used, summed over this install's
	// nodes as their agents report it, refreshed every few minutes.
	// +optional
	Usage *SliceUsage `json:"usage,omitempty"`

	// federation says, for each peer authority of spec.nodes.authorities,
	// the ticket issued to it and, where it is pushed, what the peer runs.
	// The federation controller writes it.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=authority
	// +optional
	Federation []SliceFederation `json:"federation,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Expired, Suspended.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Slice is a set of slivers, one per chosen node, run for a site's researchers.
// Its name is at most 64 characters; it lives in its site's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sl,categories=planetkube
// +kubebuilder:printcolumn:name="Full Name",type=string,JSONPath=`.status.fullName`
// +kubebuilder:printcolumn:name="Slivers",type=string,JSONPath=`.status.slivers`,description="ready/desired"
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$')",message="a slice name is at most 64 lowercase letters, digits and '-', starting and ending with a letter or digit"
type Slice struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the slice.
	// +required
	Spec SliceSpec `json:"spec"`

	// status is the observed state of the slice.
	// +optional
	Status SliceStatus `json:"status,omitempty"`
}

// SliceList is a list of Slices.
//
// +kubebuilder:object:root=true
type SliceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Slice `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Slice{}, &SliceList{})
}
