package pools

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// NodeInfo is what resolving pools' nodes needs to know about a node.
type NodeInfo struct {
	// Name is the node's name.
	Name string
	// Site is the node's planetkube.io/site label.
	Site string
	// Labels are the node's labels.
	Labels map[string]string
}

// Spec is a ResourcePool as written, before its nodes are resolved.
type Spec struct {
	// Key, Parent (a Key), Created, PerNode and Binding are as in Pool; Site
	// is the pool's namespace.
	Key, Parent, Site string
	Created           time.Time
	PerNode           corev1.ResourceList
	Binding           *Binding
	// Selector, Sites and Names choose the nodes; a nil Selector matches
	// every node, empty lists restrict nothing.
	Selector     labels.Selector
	Sites, Names []string
	// Invalid, set by the caller when the spec cannot be read (a bad
	// selector), makes the pool Invalid.
	Invalid string
}

// Resolve gives each pool its nodes. A root pool spans the nodes of its own
// site that match its selection: naming a node of another site, or a node
// that does not exist, or listing another site in Sites makes it Invalid
// (a site's owners reserve only their own nodes). A sub-pool spans the nodes
// it names (Account checks that they are its parent's), or else those of
// its parent that match its selector and sites: all of them when it has no
// selection.
func Resolve(specs []Spec, nodes []NodeInfo) []Pool {
	bySite := map[string][]*NodeInfo{}
	byName := make(map[string]*NodeInfo, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		byName[n.Name] = n
		bySite[n.Site] = append(bySite[n.Site], n)
	}
	r := resolver{specs: map[string]*Spec{}, done: map[string]*Pool{}, bySite: bySite, byName: byName}
	for i := range specs {
		r.specs[specs[i].Key] = &specs[i]
	}
	out := make([]Pool, len(specs))
	for i := range specs {
		out[i] = *r.resolve(&specs[i], 0)
	}
	return out
}

// resolver resolves pools, parents first, each once.
type resolver struct {
	specs  map[string]*Spec
	done   map[string]*Pool
	bySite map[string][]*NodeInfo
	byName map[string]*NodeInfo
}

func (r *resolver) resolve(s *Spec, depth int) *Pool {
	if p, ok := r.done[s.Key]; ok {
		return p
	}
	p := &Pool{Key: s.Key, Parent: s.Parent, Created: s.Created, Site: s.Site, PerNode: s.PerNode, Binding: s.Binding, Invalid: s.Invalid}
	parent, hasParent := r.specs[s.Parent]
	switch {
	case p.Invalid != "":
	case s.Parent == "":
		p.Nodes, p.Lost, p.Invalid = resolveRoot(s, r.bySite[s.Site], r.byName)
	case len(s.Names) > 0:
		p.Nodes = slices.Sorted(slices.Values(s.Names))
	case hasParent && depth < len(r.specs):
		// depth bounds a cycle of parents; Account reports the cycle.
		for _, n := range r.resolve(parent, depth+1).Nodes {
			if matches(s, r.byName[n]) {
				p.Nodes = append(p.Nodes, n)
			}
		}
	}
	r.done[s.Key] = p
	return p
}

// resolveRoot returns a root pool's nodes among its site's, the nodes it
// names that do not exist (lost to it, not to the pool: a node that leaves
// takes only its own part), or why it has none it may hold.
func resolveRoot(s *Spec, site []*NodeInfo, byName map[string]*NodeInfo) (nodes []string, lost map[string]string, invalid string) {
	for _, other := range s.Sites {
		if other != s.Site {
			return nil, nil, fmt.Sprintf("a root pool of site %s cannot take nodes of site %s", s.Site, other)
		}
	}
	for _, name := range s.Names {
		n, found := byName[name]
		switch {
		case !found:
			if lost == nil {
				lost = map[string]string{}
			}
			lost[name] = fmt.Sprintf("node %s does not exist", name)
			nodes = append(nodes, name)
		case n.Site != s.Site:
			return nil, nil, fmt.Sprintf("node %s belongs to site %s, not %s: a root pool takes only its own site's nodes", name, n.Site, s.Site)
		}
	}
	for _, n := range site {
		if matches(s, n) {
			nodes = append(nodes, n.Name)
		}
	}
	if len(nodes) == 0 {
		return nil, nil, fmt.Sprintf("the pool's selection matches no node of site %s", s.Site)
	}
	slices.Sort(nodes)
	return nodes, lost, ""
}

// matches says whether a node is in a spec's selection.
func matches(s *Spec, n *NodeInfo) bool {
	return n != nil && (s.Selector == nil || s.Selector.Matches(labels.Set(n.Labels))) &&
		(len(s.Sites) == 0 || slices.Contains(s.Sites, n.Site)) &&
		(len(s.Names) == 0 || slices.Contains(s.Names, n.Name))
}

// CapacityOf is what root pools may reserve on a node of this allocatable:
// its cpu, memory and ephemeral storage, its egress bandwidth when the node
// advertises planetkube.io/egress-bandwidth, and as many slivers as it
// takes pods.
func CapacityOf(allocatable corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, planetv1.ResourceEgressBandwidth} {
		if q, ok := allocatable[r]; ok {
			out[r] = q.DeepCopy()
		}
	}
	if q, ok := allocatable[corev1.ResourcePods]; ok {
		out[planetv1.ResourceSlivers] = q.DeepCopy()
	}
	return out
}

// Reserved returns, per node, what the contributing root pools reserve.
func Reserved(pools []Pool, res Result) map[string]corev1.ResourceList {
	out := map[string]corev1.ResourceList{}
	for i := range pools {
		p := &pools[i]
		r := res.Pools[p.Key]
		if p.Parent != "" || r == nil || !r.Contributes() {
			continue
		}
		for _, n := range p.Nodes {
			if !r.Holds(n) {
				continue
			}
			if out[n] == nil {
				out[n] = corev1.ResourceList{}
			}
			Add(out[n], p.PerNode)
		}
	}
	return out
}
