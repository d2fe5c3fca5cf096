package pools

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// KeyOf returns a pool's key in the accounting: "<namespace>/<name>".
func KeyOf(p *planetv1.ResourcePool) string { return p.Namespace + "/" + p.Name }

// SpecOf turns a ResourcePool into what Resolve reads. A selector that does
// not parse makes the pool Invalid.
func SpecOf(p *planetv1.ResourcePool) Spec {
	s := Spec{Key: KeyOf(p), Site: p.Namespace, Created: p.CreationTimestamp.Time, PerNode: p.Spec.PerNode}
	if p.Spec.Parent != "" {
		s.Parent = p.Namespace + "/" + p.Spec.Parent
	}
	if sel := p.Spec.Nodes; sel != nil {
		s.Names, s.Sites = sel.Names, sel.Sites
		if sel.Selector != nil {
			ls, err := metav1.LabelSelectorAsSelector(sel.Selector)
			if err != nil {
				s.Invalid = "invalid node selector: " + err.Error()
			}
			s.Selector = ls
		}
	}
	if b := p.Spec.Binding; b != nil {
		s.Binding = &Binding{Slice: b.Slice, Authority: b.Authority, Until: b.Until.Time}
	}
	return s
}

// NodesOf returns what resolution and accounting read of nodes.
func NodesOf(nodes []corev1.Node) ([]NodeInfo, Capacity) {
	infos := make([]NodeInfo, len(nodes))
	capacity := make(Capacity, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		infos[i] = NodeInfo{Name: n.Name, Site: n.Labels[planetv1.LabelSite], Labels: n.Labels}
		capacity[n.Name] = CapacityOf(n.Status.Allocatable)
	}
	return infos, capacity
}
