package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Extended resource names a pool can hold besides cpu, memory and
// ephemeral-storage.
const (
	// ResourceEgressBandwidth is egress bandwidth in bit/s.
	ResourceEgressBandwidth corev1.ResourceName = "planetkube.io/egress-bandwidth"
	// ResourceSlivers is a count of slivers.
	ResourceSlivers corev1.ResourceName = "planetkube.io/slivers"
)

// ResourcePoolSpec declares reserved capacity on a set of nodes. A root pool
// (no parent) is made by a site's tech or PI over the site's own nodes; a
// sub-pool takes part of its parent; a pool bound to a slice gives that
// slice's slivers on its nodes the pool's amounts as Guaranteed resources.
// +kubebuilder:validation:XValidation:rule="has(self.parent) || has(self.nodes)",message="a root pool (no parent) names its nodes"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.parent) == has(self.parent) && (!has(self.parent) || oldSelf.parent == self.parent)",message="parent is immutable"
// +kubebuilder:validation:XValidation:rule="!has(self.parent) || !has(self.binding) || !has(self.binding.authority)",message="only a root pool (no parent) is allocated to an authority: a site gives part of its own nodes"
type ResourcePoolSpec struct {
	// parent is the pool this one is split from, in the same namespace.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Parent string `json:"parent,omitempty"`

	// nodes chooses the pool's nodes: a root pool's from its site's nodes, a
	// sub-pool's from its parent's. Unset on a sub-pool: all of the parent's.
	// +optional
	Nodes *NodeSelection `json:"nodes,omitempty"`

	// perNode is the amount the pool holds on each of its nodes: cpu, memory,
	// ephemeral-storage, planetkube.io/egress-bandwidth (bit/s) and
	// planetkube.io/slivers.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=5
	// +required
	PerNode corev1.ResourceList `json:"perNode"`

	// binding gives the pool to a slice until a time, or allocates it to a
	// slice authority.
	// +optional
	Binding *PoolBinding `json:"binding,omitempty"`
}

// PoolBinding gives a pool to one slice for a period, or to one slice
// authority: the site owner's allocation of part of its nodes to an
// authority it trusts (PlanetLab §3.4).
// +kubebuilder:validation:XValidation:rule="has(self.slice) != has(self.authority)",message="a binding names either a slice or an authority"
// +kubebuilder:validation:XValidation:rule="!has(self.slice) || has(self.until)",message="a binding to a slice ends: set until"
type PoolBinding struct {
	// slice is the bound Slice as <namespace>/<name>: a site's slice, or a
	// foreign slice in its authority's namespace (planetkube-auth-...).
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^([a-z0-9]{1,32}|planetkube-auth-[a-z0-9]([-a-z0-9]{0,45}[a-z0-9])?)/[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$`
	// +optional
	Slice string `json:"slice,omitempty"`

	// authority allocates the pool to a slice authority (plc, ple,
	// plc.japan), its delegates included: on each node the pool holds, the
	// slivers of that authority's slices share what the pool's sub-pools
	// leave, by their cpu shares, and take nothing from the rest of the
	// node; the other authorities' slivers take nothing from it. A
	// planetkube.io/slivers amount caps that authority's slivers per node.
	// Only a root pool is allocated to an authority, and only to one the
	// site trusts.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+(\.[a-z0-9]+)*$`
	// +optional
	Authority string `json:"authority,omitempty"`

	// until is when the binding ends by itself: required for a slice, and
	// unset for an allocation to an authority that stands until removed.
	// +optional
	Until metav1.Time `json:"until,omitzero"`
}

// PoolNodeStatus is a pool's accounting on one node.
type PoolNodeStatus struct {
	// node is the node's name.
	// +kubebuilder:validation:MaxLength=253
	// +required
	Node string `json:"node"`

	// allocated is what children and the binding take on the node.
	// +optional
	Allocated corev1.ResourceList `json:"allocated,omitempty"`

	// free is what is left.
	// +optional
	Free corev1.ResourceList `json:"free,omitempty"`
}

// ResourcePoolStatus is what the ResourcePool controller observed.
type ResourcePoolStatus struct {
	// nodeCount is the number of nodes in the pool.
	// +optional
	NodeCount int32 `json:"nodeCount,omitempty"`

	// nodes holds per-node accounting for at most 100 nodes (those with the
	// least free first).
	// +kubebuilder:validation:MaxItems=100
	// +listType=atomic
	// +optional
	Nodes []PoolNodeStatus `json:"nodes,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Bound, Overcommitted, Expired.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ResourcePool is reserved capacity on a set of nodes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rp;pool,categories=planetkube
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.spec.parent`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodeCount`
// +kubebuilder:printcolumn:name="Bound To",type=string,JSONPath=`.spec.binding.slice`
// +kubebuilder:printcolumn:name="Authority",type=string,JSONPath=`.spec.binding.authority`
// +kubebuilder:printcolumn:name="Until",type=string,JSONPath=`.spec.binding.until`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ResourcePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the pool.
	// +required
	Spec ResourcePoolSpec `json:"spec"`

	// status is the observed state of the pool.
	// +optional
	Status ResourcePoolStatus `json:"status,omitempty"`
}

// ResourcePoolList is a list of ResourcePools.
//
// +kubebuilder:object:root=true
type ResourcePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ResourcePool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ResourcePool{}, &ResourcePoolList{})
}
