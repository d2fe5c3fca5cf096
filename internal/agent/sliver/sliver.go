// Package sliver reads what the node agent needs of a sliver pod: the full
// name of its slice and a reference to its Slice, for events.
package sliver

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// SliceRef returns (a reference to) the Slice a sliver pod belongs to: a
// foreign slice's in its authority's namespace, a local one's in its
// site's; nil for a pod that is not a sliver.
func SliceRef(pod *corev1.Pod) *planetv1.Slice {
	if a, site, name, ok := naming.ParseFullName(pod.Annotations[planetv1.AnnotationSliceFullName]); ok && pod.Namespace == naming.ForeignSliceNamespace(a, site, name) {
		return &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, name)}}
	}
	l := pod.Labels
	if l[planetv1.LabelSite] == "" || l[planetv1.LabelSlice] == "" {
		return nil
	}
	return &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: l[planetv1.LabelSite], Name: l[planetv1.LabelSlice]}}
}
