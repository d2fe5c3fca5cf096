// Package clusterview is the manager's shared, in-memory view of the cluster
// that slice and pool reconciles read instead of listing: PlanetKube's nodes
// by site, what the pods on each node request, and the accounting of
// resource pools. Watches keep it up to date (as Kueue's cache is), and a
// reconcile reads in it only what concerns its own slice: the candidate
// nodes of its selection, the free room on the nodes it creates slivers on,
// and the amounts bound to it.
//
// Informer event handlers feed it (see [View.NodeHandler], [View.PodHandler]
// and [View.PoolHandler]); controllers learn of its changes through
// [View.Source], which also holds their workers back until it is synced, so
// that no reconcile ever reads an empty view.
package clusterview

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/placement"
	"github.com/planetkube/planetkube/internal/pools"
)

// View is the shared view. Its methods are safe for concurrent use.
type View struct {
	now func() time.Time

	mu     sync.RWMutex
	nodes  map[string]*node
	bySite map[string]map[string]*node
	// pods holds every pod bound to a node and not finished, and the
	// slivers assumed created but not seen yet, by namespace/name.
	pods   map[string]*podUse
	onNode map[string]map[string]*podUse
	// poolSpecs are the ResourcePools as the accounting reads them, by key.
	poolSpecs map[string]pools.Spec
	acct      accounting
	// dirty: pools or nodes changed since the accounting was computed.
	dirty bool
	// accounted: the accounting was computed once after every feed synced.
	accounted bool

	wake   chan struct{}
	subsMu sync.RWMutex
	subs   []func(Change)
	feeds  []func() bool // HasSynced of each feeding handler
}

// node is one PlanetKube node (a node with a site label).
type node struct {
	info        placement.Node
	allocatable corev1.ResourceList
}

// Change is what the view applied, passed to every subscriber after it
// applied it.
type Change struct {
	// Node is set when a PlanetKube node was added, changed or deleted.
	Node *NodeChange
	// BoundSlices are the slices ("<namespace>/<name>") whose bound amounts
	// changed with a new accounting.
	BoundSlices []string
	// Allocations are the authorities whose allocations (amounts per
	// node) changed with a new accounting.
	Allocations []string
	// Accounting is true when the pool accounting was computed anew.
	Accounting bool
}

// NodeChange is a node before and after a change; Old is nil for a new node,
// New is nil for a deleted one.
type NodeChange struct {
	Old, New *placement.Node
}

// New returns an empty view. now returns the current time (nil: time.Now).
func New(now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	return &View{
		now:       now,
		nodes:     map[string]*node{},
		bySite:    map[string]map[string]*node{},
		pods:      map[string]*podUse{},
		onNode:    map[string]map[string]*podUse{},
		poolSpecs: map[string]pools.Spec{},
		wake:      make(chan struct{}, 1),
	}
}

// Subscribe adds fn to the functions called with every change, after the
// view applied it. fn must not block for long: it runs on an informer's
// event delivery.
func (v *View) Subscribe(fn func(Change)) {
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	v.subs = append(v.subs, fn)
}

func (v *View) publish(c Change) {
	v.subsMu.RLock()
	subs := v.subs
	v.subsMu.RUnlock()
	for _, fn := range subs {
		fn(c)
	}
}

// Synced reports whether every feed delivered its initial list and the
// accounting was computed since.
func (v *View) Synced() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if !v.accounted {
		return false
	}
	for _, synced := range v.feeds {
		if !synced() {
			return false
		}
	}
	return true
}

// AddFeed registers the HasSynced of a handler that feeds the view.
func (v *View) AddFeed(hasSynced func() bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.feeds = append(v.feeds, hasSynced)
}

// PlacementNode converts a node to what placement reads.
func PlacementNode(n *corev1.Node) placement.Node {
	ready, reason, msg := NodeReady(n)
	return placement.Node{
		Name: n.Name, Site: n.Labels[planetv1.LabelSite], Labels: n.Labels,
		Ready: ready, Unschedulable: n.Spec.Unschedulable,
		NotReadyReason: reason, NotReadyMessage: msg,
	}
}

// NodeReady returns whether the node's Ready condition is True, and the
// condition's reason and message when it is not.
func NodeReady(n *corev1.Node) (ready bool, reason, message string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, "", ""
			}
			reason = c.Reason
			if reason == "" {
				reason = "Ready" + string(c.Status)
			}
			return false, reason, c.Message
		}
	}
	return false, "NoReadyCondition", "the node has not reported a Ready condition"
}

// SetNode adds or updates a node; a node without a site label is not a
// PlanetKube node and is removed.
func (v *View) SetNode(n *corev1.Node) {
	if n.Labels[planetv1.LabelSite] == "" {
		v.DeleteNode(n.Name)
		return
	}
	nn := &node{info: PlacementNode(n), allocatable: n.Status.Allocatable.DeepCopy()}
	v.mu.Lock()
	old := v.nodes[n.Name]
	if old != nil && equality.Semantic.DeepEqual(old.info, nn.info) && equality.Semantic.DeepEqual(old.allocatable, nn.allocatable) {
		v.mu.Unlock()
		return
	}
	if old != nil {
		delete(v.bySite[old.info.Site], n.Name)
	}
	v.nodes[n.Name] = nn
	site := v.bySite[nn.info.Site]
	if site == nil {
		site = map[string]*node{}
		v.bySite[nn.info.Site] = site
	}
	site[n.Name] = nn
	// Pools read the site, labels and allocatable of nodes, not readiness.
	poolsCare := old == nil || old.info.Site != nn.info.Site ||
		!equality.Semantic.DeepEqual(old.info.Labels, nn.info.Labels) ||
		!equality.Semantic.DeepEqual(old.allocatable, nn.allocatable)
	v.markDirtyLocked(poolsCare)
	v.mu.Unlock()

	ch := &NodeChange{New: &nn.info}
	if old != nil {
		ch.Old = &old.info
	}
	v.publish(Change{Node: ch})
}

// DeleteNode removes a node.
func (v *View) DeleteNode(name string) {
	v.mu.Lock()
	old := v.nodes[name]
	if old == nil {
		v.mu.Unlock()
		return
	}
	delete(v.nodes, name)
	delete(v.bySite[old.info.Site], name)
	v.markDirtyLocked(true)
	v.mu.Unlock()
	v.publish(Change{Node: &NodeChange{Old: &old.info}})
}

// Candidates returns the nodes a selection of these sites and names can
// match (every node when both are empty), for placement to choose from.
func (v *View) Candidates(sites, names []string) []placement.Node {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []placement.Node
	switch {
	case len(names) > 0:
		for _, n := range names {
			if nn := v.nodes[n]; nn != nil {
				out = append(out, nn.info)
			}
		}
	case len(sites) > 0:
		for _, s := range sites {
			for _, nn := range v.bySite[s] {
				out = append(out, nn.info)
			}
		}
	default:
		out = make([]placement.Node, 0, len(v.nodes))
		for _, nn := range v.nodes {
			out = append(out, nn.info)
		}
	}
	return out
}

// Allocatable returns a node's allocatable resources (nil for an unknown
// node). The caller must not change them.
func (v *View) Allocatable(name string) (corev1.ResourceList, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	nn := v.nodes[name]
	if nn == nil {
		return nil, false
	}
	return nn.allocatable, true
}
