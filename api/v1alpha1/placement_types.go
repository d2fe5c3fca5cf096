package v1alpha1

// Reasons a selected node runs no ready sliver of a slice
// (PlacementSummary.Groups), besides the slice's own blocking reasons
// (SiteDisabled, SiteSliceLimit, Expired, Suspended ...) and a sliver's own
// (SliverNotCreated, ContainerCreating, ErrImagePull ...).
const (
	// ReasonNotTrusted: the node's site does not trust the slice's
	// authority (Site spec.trustedAuthorities).
	ReasonNotTrusted = "NotTrusted"
	// ReasonSiteDisabled (shared): the node's site is disabled.
	// ReasonMaxNodes: the node is not among those spec.nodes.maxNodes keeps.
	ReasonMaxNodes = "MaxNodes"
	// ReasonNodeNotReady and ReasonNodeUnschedulable: the node is not ready,
	// or cordoned, and has no sliver to keep.
	ReasonNodeNotReady      = "NodeNotReady"
	ReasonNodeUnschedulable = "NodeUnschedulable"
	// ReasonNodeFull (SliverIssueNodeFull): the node has no room for the
	// sliver; the message names the resource (pods, or what the kubelet
	// refused: cpu, memory ...).
	ReasonNodeFull = SliverIssueNodeFull
	// ReasonNodeReserved: the node's free sliver slots are held by resource
	// pools (planetkube.io/slivers) for the slices bound to them.
	ReasonNodeReserved = "NodeReserved"
	// ReasonAllocationFull: the node's site allocated part of it to the
	// slice's authority (a root pool bound to the authority), and that
	// part has no room left for another sliver: its planetkube.io/slivers
	// are all taken by the authority's slivers.
	ReasonAllocationFull = "AllocationFull"
	// ReasonOtherReasons counts the nodes of the reasons past
	// MaxPlacementGroups.
	ReasonOtherReasons = "OtherReasons"
)

// Bounds of a PlacementSummary, whatever the cluster's size: at most
// MaxPlacementGroups reasons, each with at most MaxPlacementExamples nodes
// and MaxPlacementSites sites named.
const (
	MaxPlacementGroups   = 12
	MaxPlacementExamples = 3
	MaxPlacementSites    = 4
	// MaxPeerPlacementGroups bounds the groups copied from a peer into
	// SliceFederation and a Ticket's status; each keeps one site and one
	// node as examples, and 256 bytes of message.
	MaxPeerPlacementGroups = 4
)

// PlacementSummary says how the nodes a slice's selection names stand:
// how many run a ready sliver, and why the others do not, by reason.
type PlacementSummary struct {
	// selected counts the nodes of this install that the slice's node
	// selection names (sites, names, selector), whatever their state.
	// +optional
	Selected int32 `json:"selected"`

	// running counts the selected nodes that run a ready sliver.
	// +optional
	Running int32 `json:"running"`

	// notRunning counts the other selected nodes; groups says why.
	// +optional
	NotRunning int32 `json:"notRunning"`

	// groups are the selected nodes without a ready sliver by reason, most
	// nodes first (at most 12; the nodes of further reasons are counted
	// under OtherReasons).
	// +kubebuilder:validation:MaxItems=12
	// +listType=atomic
	// +optional
	Groups []NodeGroup `json:"groups,omitempty"`
}

// NodeGroup is a reason some of a slice's selected nodes run no ready
// sliver, with how many and a few examples.
type NodeGroup struct {
	// reason is a CamelCase word: NotTrusted, SiteDisabled, MaxNodes,
	// NodeNotReady, NodeFull, NodeReserved, ContainerCreating ...
	// +kubebuilder:validation:MaxLength=128
	// +required
	Reason string `json:"reason"`

	// count is the number of nodes.
	// +required
	Count int32 `json:"count"`

	// message says more, in words.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Message string `json:"message,omitempty"`

	// sites are some of the sites of those nodes (at most 4).
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=atomic
	// +optional
	Sites []string `json:"sites,omitempty"`

	// nodes are some of those nodes (at most 3), by name.
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	// +optional
	Nodes []string `json:"nodes,omitempty"`
}
