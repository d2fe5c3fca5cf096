// Package v1alpha1 holds the PlanetKube API: Site, Slice, ResourcePool, Ticket
// and Authority in the planetkube.io group.
//
// +kubebuilder:object:generate=true
// +groupName=planetkube.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every PlanetKube kind.
	GroupVersion = schema.GroupVersion{Group: "planetkube.io", Version: "v1alpha1"}

	// SchemeBuilder registers the PlanetKube kinds with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the PlanetKube kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
