package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SiteState says whether a site may run slices.
// +kubebuilder:validation:Enum=Enabled;Disabled
type SiteState string

// Site states.
const (
	SiteEnabled  SiteState = "Enabled"
	SiteDisabled SiteState = "Disabled"
)

// DefaultMaxSlices is PlanetLab's default max_slices for a site.
const DefaultMaxSlices = 10

// SiteSpec is what a testbed operator declares about a site.
type SiteSpec struct {
	// displayName is the site's human-readable name.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// url is the site's home page.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	// +optional
	URL string `json:"url,omitempty"`

	// state is Enabled (default) or Disabled. A disabled site keeps its slices
	// but none of them runs slivers, and its nodes run no slivers of any
	// slice.
	// +kubebuilder:default=Enabled
	// +optional
	State SiteState `json:"state,omitempty"`

	// maxSlices is how many slices the site may have; a site at its limit
	// cannot create more (the slices past it get no slivers). Default 10.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +kubebuilder:default=10
	// +optional
	MaxSlices *int32 `json:"maxSlices,omitempty"`

	// pis are the site's principal investigators: they create and manage the
	// site's slices.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	PIs []Subject `json:"pis,omitempty"`

	// techs are the site's technical contacts: they manage its nodes and pools.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Techs []Subject `json:"techs,omitempty"`

	// users may read the site's slices.
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	// +optional
	Users []Subject `json:"users,omitempty"`

	// trustedAuthorities names the authorities whose slices may run on this
	// site's nodes. Unset, the local authority's (this install's own
	// slices) and those of the manager's --default-trusted-authorities.
	// Trusting an authority trusts its delegates too: plc includes
	// plc.japan. A site that stops trusting an authority loses that
	// authority's slivers on its nodes, local slices included.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	TrustedAuthorities []string `json:"trustedAuthorities,omitempty"`
}

// SiteStatus is what the Site controller observed.
type SiteStatus struct {
	// namespace is the site's namespace, where its Slices live.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// nodes counts the nodes labelled with this site.
	// +optional
	Nodes int32 `json:"nodes"`

	// readyNodes counts those of them that are Ready.
	// +optional
	ReadyNodes int32 `json:"readyNodes"`

	// slices counts the Slices in the site's namespace.
	// +optional
	Slices int32 `json:"slices"`

	// contribution is what the site's nodes give: slivers hosted, CPU
	// time given, to other sites' slices too, as their agents report it.
	// +optional
	Contribution *SiteContribution `json:"contribution,omitempty"`

	// allocations is, per slice authority the site's root pools are
	// allocated to, what they give it on the site's nodes and what its
	// slivers there use of it (at most 32, by authority name).
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=authority
	// +optional
	Allocations []AuthorityAllocation `json:"allocations,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AuthorityAllocation is what a site gives one slice authority and what
// that authority's slivers use of it.
type AuthorityAllocation struct {
	// authority is the authority allocated to (its delegates share it).
	// +kubebuilder:validation:MaxLength=63
	// +required
	Authority string `json:"authority"`

	// nodes counts the site's nodes where it holds an allocation.
	// +optional
	Nodes int32 `json:"nodes"`

	// allocated is what its allocations give it, summed over those nodes:
	// the pools' amounts less what their sub-pools take.
	// +optional
	Allocated corev1.ResourceList `json:"allocated,omitempty"`

	// used is what its slivers on those nodes request of it, summed, and
	// planetkube.io/slivers their count.
	// +optional
	Used corev1.ResourceList `json:"used,omitempty"`
}

// Site is an organisation that contributes nodes and runs slices; its name is
// PlanetLab's login_base: at most 32 lowercase letters and digits.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=site,categories=planetkube
// +kubebuilder:printcolumn:name="Display",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes`
// +kubebuilder:printcolumn:name="Slices",type=integer,JSONPath=`.status.slices`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxSlices`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]{1,32}$')",message="a site name (login_base) is 1 to 32 lowercase letters and digits"
// +kubebuilder:validation:XValidation:rule="!(self.metadata.name in ['default', 'planetkube'])",message="a site cannot be named default or planetkube (reserved: PlanetKube's own namespaces start with planetkube-)"
type Site struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the site.
	// +required
	Spec SiteSpec `json:"spec"`

	// status is the observed state of the site.
	// +optional
	Status SiteStatus `json:"status,omitempty"`
}

// SiteList is a list of Sites.
//
// +kubebuilder:object:root=true
type SiteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Site `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Site{}, &SiteList{})
}
