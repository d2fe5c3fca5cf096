// Package pools does the accounting of resource pools: it decides which pools
// hold what on which node, and which slices get reserved resources from
// bound pools. It is pure: no API calls, no clock, no mutation of its inputs.
//
// # Model
//
// A pool ([Pool]) holds an amount of each resource (PerNode) on each of its
// nodes. The caller resolves each pool's nodes (from names or a selector)
// and checks at admission that a root pool's nodes belong to its site;
// [Account] only checks amounts and node sets.
//
//   - A root pool (no parent) takes its amounts from the nodes: on each node,
//     the root pools together hold at most the node's [Capacity] (allocatable
//     minus what the system reserves). A resource that the node's capacity
//     does not list has none.
//   - A sub-pool takes its amounts from its parent: its nodes are a subset of
//     the parent's, and on each node its children together hold at most the
//     parent's PerNode.
//   - A binding gives a slice, on each node the pool holds, what the pool's
//     children leave (PerNode - Σ children) until a time. After that time it
//     gives nothing.
//   - An allocation (a root pool's binding to an authority) gives the
//     authority what the pool's children leave, the same way, until its
//     Until if it has one: [Result].Allocated. The root pool reserves its
//     amounts out of the node as any root pool does, so no one else's
//     fair share draws on them. An allocation on a sub-pool is Invalid.
//
// Pools are judged in order of precedence: older first (Created), then by
// Key; a parent is always judged before its children. Amounts are judged
// node by node: on each node, only pools that share a parent (or, for root
// pools, the node) compete, and when amounts do not fit, the later pool in
// precedence loses that node (it is Overcommitted there and holds nothing
// on it) and keeps the others. A node that vanishes, or that its parent no
// longer holds, is lost to the pool alone: nothing already accepted on the
// other nodes ever shrinks, so one node coming or going never moves a
// reservation elsewhere. A pool that cannot be judged at all (unknown or
// negative resource, parent missing or invalid, a cycle of parents) is
// Invalid and contributes nothing; so are its descendants. Within a pool,
// nodes are checked in name order and resources in name order, so messages
// are deterministic too.
//
// For each pool that is not Invalid, [PoolResult].Nodes gives, per node it
// holds and for each resource of PerNode, what is Allocated (children plus
// the active binding) and what is Free (PerNode - Allocated): an actively
// bound pool has nothing free. [PoolResult].Lost says, for each of its
// other nodes, why it holds nothing there.
package pools

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Pool is one ResourcePool, resolved: its node set is already computed by
// the caller.
type Pool struct {
	// Key is "<namespace>/<name>", unique among the pools passed to Account
	// (with duplicates, the result is undefined).
	Key string
	// Parent is the parent's Key, "" for a root pool.
	Parent string
	// Created is the creationTimestamp: the order of precedence (then Key).
	Created time.Time
	// Site is the site (namespace) of the pool. Account does not use it: the
	// caller checks that a root pool's nodes are its site's.
	Site string
	// Nodes are the names of the nodes the pool spans (duplicates ignored).
	Nodes []string
	// PerNode is the amount the pool holds on each of its nodes.
	PerNode corev1.ResourceList
	// Binding gives the pool to a slice; nil if unbound.
	Binding *Binding
	// Invalid, when set by the caller (e.g. Resolve: a node of another
	// site), makes the pool Invalid with that message.
	Invalid string
	// Lost, set by the caller (e.g. Resolve: a named node that does not
	// exist), maps nodes of the pool that it cannot hold to why; Account
	// reports them in PoolResult.Lost.
	Lost map[string]string
}

// Binding gives a pool to a slice, or to an authority, until a time.
type Binding struct {
	// Slice is the bound slice as "<namespace>/<name>"; "" for an
	// allocation to an authority.
	Slice string
	// Authority is the authority a root pool is allocated to; "" for a
	// binding to a slice.
	Authority string
	// Until is when the binding ends by itself; zero: never (an
	// allocation that stands until removed).
	Until time.Time
}

// active says whether the binding gives at now.
func (b *Binding) active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// Capacity is, per node, what root pools may reserve: allocatable minus what
// the system reserves.
type Capacity map[string]corev1.ResourceList

// NodeAccount is a pool's accounting on one node, over the resources of its
// PerNode.
type NodeAccount struct {
	// Allocated is what the accepted children and the active binding take.
	Allocated corev1.ResourceList
	// Free is PerNode - Allocated.
	Free corev1.ResourceList
}

// PoolResult is the accounting of one pool.
type PoolResult struct {
	// Invalid, when not empty, says why the pool contributes nothing: parent
	// missing or invalid, an unknown resource, a cycle of parents.
	Invalid string
	// Overcommitted, when not empty, names the first node and resource that
	// does not fit, e.g. "node n1: cpu: 3 requested, 2 free in parent
	// team/root" or "node n1: cpu: 3 requested, 2 free of node capacity";
	// the pool holds nothing on that node (see Lost).
	Overcommitted string
	// Lost maps each node of the pool that it does not hold to why: it does
	// not fit there, the node is gone or has no capacity, or the parent
	// does not hold it. Nil when the pool holds every node, or is Invalid.
	Lost map[string]string
	// BindingActive is true when the pool has a binding and now < Until
	// (whether or not the pool contributes).
	BindingActive bool
	// BindingExpired is true when the pool has a binding and now >= Until.
	BindingExpired bool
	// Nodes is the per-node accounting of the nodes the pool holds; nil
	// for a pool that is Invalid or holds no node.
	Nodes map[string]NodeAccount
}

// Contributes reports whether the pool holds its amounts on at least one
// node.
func (r *PoolResult) Contributes() bool {
	return r.Invalid == "" && len(r.Nodes) > 0
}

// Holds reports whether the pool holds its amounts on node.
func (r *PoolResult) Holds(node string) bool {
	_, ok := r.Nodes[node]
	return r.Invalid == "" && ok
}

// Result is the accounting of a set of pools.
type Result struct {
	// Pools holds every pool's result, by Key.
	Pools map[string]*PoolResult
	// Bound maps a slice's key to node to the amounts its sliver there gets
	// from active bindings of contributing pools (summed over pools; every
	// resource of those pools is listed, even at zero).
	Bound map[string]map[string]corev1.ResourceList
	// Allocated maps an authority to node to the amounts its allocations
	// give it there (summed over pools; every resource of those pools is
	// listed, even at zero).
	Allocated map[string]map[string]corev1.ResourceList
	// AllocationSize maps an authority to node to what its allocations
	// hold there before their sub-pools take their parts (the sum of the
	// pools' PerNode): what a sliver on them is made for.
	AllocationSize map[string]map[string]corev1.ResourceList
	// NextChange is the earliest Until after now among all bindings (zero if
	// none): when the accounting must be done again.
	NextChange time.Time
}

// Account does the accounting of pools on nodes of the given capacity at
// time now. It changes none of its inputs.
func Account(pools []Pool, capacity Capacity, now time.Time) Result {
	a := newAccountant(pools, capacity, now)
	for _, e := range a.roots {
		a.visit(e)
	}
	a.explainUnvisited()
	return a.res
}

// entry is a pool being judged.
type entry struct {
	pool     *Pool
	result   *PoolResult
	nodes    []string // sorted, unique
	children []*entry // in order of precedence
	visited  bool
	// alloc maps each node the pool holds to the sum of its accepted
	// children's PerNode there (nil while no child takes a part).
	alloc map[string]corev1.ResourceList
}

type accountant struct {
	capacity Capacity
	entries  []*entry // in order of precedence
	byKey    map[string]*entry
	roots    []*entry                       // in order of precedence
	used     map[string]corev1.ResourceList // node -> sum of accepted root pools
	res      Result
}

func newAccountant(pools []Pool, capacity Capacity, now time.Time) *accountant {
	a := &accountant{
		capacity: capacity,
		entries:  make([]*entry, len(pools)),
		byKey:    make(map[string]*entry, len(pools)),
		used:     make(map[string]corev1.ResourceList),
		res: Result{
			Pools:          make(map[string]*PoolResult, len(pools)),
			Bound:          make(map[string]map[string]corev1.ResourceList),
			Allocated:      make(map[string]map[string]corev1.ResourceList),
			AllocationSize: make(map[string]map[string]corev1.ResourceList),
		},
	}
	for i := range pools {
		p := &pools[i]
		e := &entry{pool: p, result: &PoolResult{}, nodes: sortedUnique(p.Nodes)}
		a.noteBinding(e, now)
		a.entries[i] = e
	}
	slices.SortFunc(a.entries, precedence)
	for _, e := range a.entries {
		a.byKey[e.pool.Key] = e
		a.res.Pools[e.pool.Key] = e.result
	}
	for _, e := range a.entries {
		if e.pool.Parent == "" {
			a.roots = append(a.roots, e)
		} else if parent, found := a.byKey[e.pool.Parent]; found {
			parent.children = append(parent.children, e)
		}
	}
	return a
}

// precedence orders pools: older first, then by Key.
func precedence(x, y *entry) int {
	if c := x.pool.Created.Compare(y.pool.Created); c != 0 {
		return c
	}
	return strings.Compare(x.pool.Key, y.pool.Key)
}

func sortedUnique(nodes []string) []string {
	out := slices.Clone(nodes)
	slices.Sort(out)
	return slices.Compact(out)
}

// noteBinding sets the binding flags of e and keeps NextChange.
func (a *accountant) noteBinding(e *entry, now time.Time) {
	b := e.pool.Binding
	if b == nil {
		return
	}
	e.result.BindingActive = b.active(now)
	e.result.BindingExpired = !e.result.BindingActive
	if e.result.BindingActive && !b.Until.IsZero() && (a.res.NextChange.IsZero() || b.Until.Before(a.res.NextChange)) {
		a.res.NextChange = b.Until
	}
}

// visit judges e node by node, then its children, then settles e's accounts
// once its children have taken their part.
func (a *accountant) visit(e *entry) {
	e.visited = true
	e.result.Invalid = a.invalid(e)
	if e.result.Invalid == "" {
		a.take(e)
	}
	for _, c := range e.children {
		a.visit(c)
	}
	if len(e.alloc) > 0 {
		a.settle(e)
	}
}

// invalid returns why e cannot be judged at all, or "".
func (a *accountant) invalid(e *entry) string {
	if e.pool.Invalid != "" {
		return e.pool.Invalid
	}
	if why := checkResources(e.pool.PerNode); why != "" {
		return why
	}
	if b := e.pool.Binding; e.pool.Parent != "" && b != nil && b.Authority != "" {
		return "only a root pool is allocated to an authority: a site gives part of its own nodes"
	}
	if parent := a.byKey[e.pool.Parent]; e.pool.Parent != "" && parent.result.Invalid != "" {
		return fmt.Sprintf("parent %s is invalid", parent.pool.Key)
	}
	return ""
}

// take makes e take its amounts, node by node, from its parent or, for a
// root pool, from the node; a node where it cannot is lost to e alone.
func (a *accountant) take(e *entry) {
	e.alloc = make(map[string]corev1.ResourceList, len(e.nodes))
	taken, where := a.used, "of node capacity"
	total := func(n string) (corev1.ResourceList, string) {
		c, found := a.capacity[n]
		if !found {
			return nil, fmt.Sprintf("node %s has no known capacity", n)
		}
		return c, ""
	}
	if e.pool.Parent != "" {
		parent := a.byKey[e.pool.Parent]
		taken, where = parent.alloc, "in parent "+parent.pool.Key
		total = func(n string) (corev1.ResourceList, string) {
			if _, held := parent.alloc[n]; !held {
				return nil, fmt.Sprintf("node %s is not held by parent %s", n, parent.pool.Key)
			}
			return parent.pool.PerNode, ""
		}
	}
	for _, n := range e.nodes {
		why := e.pool.Lost[n]
		if why == "" {
			var t corev1.ResourceList
			if t, why = total(n); why == "" {
				why = overflow(n, t, taken[n], e.pool.PerNode, where)
				if why != "" && e.result.Overcommitted == "" {
					e.result.Overcommitted = why
				}
			}
		}
		if why != "" {
			if e.result.Lost == nil {
				e.result.Lost = map[string]string{}
			}
			e.result.Lost[n] = why
			continue
		}
		e.alloc[n] = nil // made when a child takes a part
		Add(listOf(taken, n), e.pool.PerNode)
	}
}

// overflow says how want does not fit in total - used on node n, or returns
// "". where ends the message.
func overflow(n string, total, used, want corev1.ResourceList, where string) string {
	r, ok := shortfall(total, used, want)
	if ok {
		return ""
	}
	free := total[r].DeepCopy()
	if u, found := used[r]; found {
		free.Sub(u)
	}
	requested := want[r].DeepCopy()
	return fmt.Sprintf("node %s: %s: %s requested, %s free %s", n, r, requested.String(), free.String(), where)
}

// listOf returns m[key], first making it when it is nil.
func listOf(m map[string]corev1.ResourceList, key string) corev1.ResourceList {
	l := m[key]
	if l == nil {
		l = corev1.ResourceList{}
		m[key] = l
	}
	return l
}

// settle fills e's node accounts and gives what its children leave to its
// slice while the binding is active.
func (a *accountant) settle(e *entry) {
	perNode := e.pool.PerNode
	e.result.Nodes = make(map[string]NodeAccount, len(e.alloc))
	for _, n := range e.nodes {
		if _, held := e.alloc[n]; !held {
			continue
		}
		allocated := Restrict(e.alloc[n], perNode)
		if e.result.BindingActive {
			rest := Sub(perNode, allocated)
			Add(listOf(a.givenTo(e.pool.Binding), n), rest)
			if b := e.pool.Binding; b.Authority != "" {
				Add(listOf(sizeOf(a.res.AllocationSize, b.Authority), n), perNode)
			}
			Add(allocated, rest)
		}
		e.result.Nodes[n] = NodeAccount{Allocated: allocated, Free: Sub(perNode, allocated)}
	}
}

// sizeOf returns m[key], first making it when it is nil.
func sizeOf(m map[string]map[string]corev1.ResourceList, key string) map[string]corev1.ResourceList {
	if m[key] == nil {
		m[key] = make(map[string]corev1.ResourceList)
	}
	return m[key]
}

// givenTo returns the amounts a binding's slice, or its authority, gets,
// by node.
func (a *accountant) givenTo(b *Binding) map[string]corev1.ResourceList {
	to, key := a.res.Bound, b.Slice
	if b.Authority != "" {
		to, key = a.res.Allocated, b.Authority
	}
	nodes := to[key]
	if nodes == nil {
		nodes = make(map[string]corev1.ResourceList)
		to[key] = nodes
	}
	return nodes
}

// explainUnvisited marks Invalid the pools no root leads to: those whose
// parent is missing, those on a cycle of parents, and their descendants.
func (a *accountant) explainUnvisited() {
	for _, e := range a.entries {
		if e.visited {
			continue
		}
		e.result.Invalid = a.unreachedReason(e)
	}
}

// unreachedReason says why no root pool leads to e.
func (a *accountant) unreachedReason(e *entry) string {
	if _, found := a.byKey[e.pool.Parent]; !found {
		return fmt.Sprintf("parent %s not found", e.pool.Parent)
	}
	if loop := a.cycle(e); loop != nil {
		return "parents form a cycle: " + strings.Join(loop, " -> ")
	}
	return fmt.Sprintf("parent %s is invalid", e.pool.Parent)
}

// cycle returns the keys from e up its parents back to e, or nil when e is
// not on a cycle.
func (a *accountant) cycle(e *entry) []string {
	path := []string{e.pool.Key}
	for p, found := a.byKey[e.pool.Parent]; found && len(path) <= len(a.entries); p, found = a.byKey[p.pool.Parent] {
		path = append(path, p.pool.Key)
		if p == e {
			return path
		}
	}
	return nil
}
