package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuthoritySpec declares a slice authority (another PlanetKube install) that
// sites may trust.
type AuthoritySpec struct {
	// displayName is the authority's human-readable name.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// keys are the authority's Ed25519 public keys. A ticket names the key
	// that signed it (its kid); listing two keys lets a new key be rolled
	// out before the old one is dropped.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=id
	// +required
	Keys []AuthorityKey `json:"keys"`

	// feedURL is where the authority publishes its slices for pull federation.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://`
	// +optional
	FeedURL string `json:"feedURL,omitempty"`

	// pollIntervalSeconds is how often the feed is read, plus a random jitter
	// of up to half of it. Default 600, as PlanetLab's nodes polled PLC.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=86400
	// +kubebuilder:default=600
	// +optional
	PollIntervalSeconds int32 `json:"pollIntervalSeconds,omitempty"`

	// feedCABundle is the PEM bundle of the CAs that sign the feed's TLS
	// certificate; unset, the system's roots.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	FeedCABundle string `json:"feedCABundle,omitempty"`

	// push, when set, applies this install's tickets for the authority at
	// the authority's own cluster.
	// +optional
	Push *AuthorityPush `json:"push,omitempty"`
}

// AuthorityPush says how to reach a peer's cluster to push tickets.
type AuthorityPush struct {
	// secretName names a Secret in the manager's namespace whose key
	// "kubeconfig" reaches the peer's API server: HTTPS, its CA inline, a
	// token or client certificate inline, no exec plugin, no file path;
	// its context's namespace is where the tickets are applied.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	SecretName string `json:"secretName"`
}

// AuthorityKey is one public key of an authority.
type AuthorityKey struct {
	// id names the key, as the kid of the tokens it signs. PlanetKube
	// derives it from the key: the first 16 hex characters of the SHA-256 of
	// its 32 bytes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._-]+$`
	// +required
	ID string `json:"id"`

	// publicKey is the Ed25519 public key, base64 (standard encoding) of its
	// 32 bytes.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{43}=$`
	// +required
	PublicKey string `json:"publicKey"`
}

// AuthorityStatus is what the federation controller observed.
type AuthorityStatus struct {
	// validKeys counts the keys that decode as Ed25519 public keys whose id
	// matches them.
	// +optional
	ValidKeys int32 `json:"validKeys,omitempty"`

	// lastPollTime is when the feed was last read successfully.
	// +optional
	LastPollTime *metav1.Time `json:"lastPollTime,omitempty"`

	// nextPollTime is when the feed is read next: the poll interval plus a
	// random jitter after the last attempt.
	// +optional
	NextPollTime *metav1.Time `json:"nextPollTime,omitempty"`

	// feedTickets counts the tickets the feed listed at the last poll.
	// +optional
	FeedTickets int32 `json:"feedTickets,omitempty"`

	// slices counts the slices taken from the feed.
	// +optional
	Slices int32 `json:"slices,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (its keys), FeedSynced (the last poll of its feed),
	// PushReady (its cluster is reachable to push tickets).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Authority is a slice authority: its name (plc, ple, plc.japan) is the first
// part of its slices' full names.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=auth,categories=planetkube
// +kubebuilder:printcolumn:name="Feed",type=string,JSONPath=`.spec.feedURL`
// +kubebuilder:printcolumn:name="Slices",type=integer,JSONPath=`.status.slices`
// +kubebuilder:printcolumn:name="Feed Synced",type=string,JSONPath=`.status.conditions[?(@.type=="FeedSynced")].status`
// +kubebuilder:printcolumn:name="Last Poll",type=date,JSONPath=`.status.lastPollTime`,priority=1
// +kubebuilder:printcolumn:name="Push",type=string,JSONPath=`.status.conditions[?(@.type=="PushReady")].reason`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]+(\\\\.[a-z0-9]+)*$') && self.metadata.name.size() <= 63",message="an authority name is dot-separated lowercase letters and digits, at most 63 characters"
type Authority struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the authority.
	// +required
	Spec AuthoritySpec `json:"spec"`

	// status is the observed state of the authority.
	// +optional
	Status AuthorityStatus `json:"status,omitempty"`
}

// AuthorityList is a list of Authorities.
//
// +kubebuilder:object:root=true
type AuthorityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Authority `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Authority{}, &AuthorityList{})
}
