package clusterview

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/pools"
)

// accounting is the pool accounting at one time.
type accounting struct {
	result pools.Result
	// reserved holds, per node, what the root pools that hold it reserve.
	reserved map[string]corev1.ResourceList
}

// SetPool records a pool's spec; a change that does not move its generation
// (a status write) changes nothing.
func (v *View) SetPool(p *planetv1.ResourcePool) {
	spec := pools.SpecOf(p)
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.poolSpecs[spec.Key]; ok && sameSpec(old, spec) {
		return
	}
	v.poolSpecs[spec.Key] = spec
	v.markDirtyLocked(true)
}

// sameSpec compares what the accounting reads of two pool specs.
func sameSpec(a, b pools.Spec) bool {
	sel := func(s pools.Spec) string {
		if s.Selector == nil {
			return ""
		}
		return s.Selector.String()
	}
	return a.Key == b.Key && a.Parent == b.Parent && a.Site == b.Site && a.Created.Equal(b.Created) &&
		a.Invalid == b.Invalid && sel(a) == sel(b) && slices.Equal(a.Sites, b.Sites) && slices.Equal(a.Names, b.Names) &&
		equality.Semantic.DeepEqual(a.PerNode, b.PerNode) && sameBinding(a.Binding, b.Binding)
}

func sameBinding(a, b *pools.Binding) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Slice == b.Slice && a.Authority == b.Authority && a.Until.Equal(b.Until)
}

// DeletePool forgets a pool, by "<namespace>/<name>".
func (v *View) DeletePool(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.poolSpecs[key]; !ok {
		return
	}
	delete(v.poolSpecs, key)
	v.markDirtyLocked(true)
}

// markDirtyLocked asks for a new accounting when pools is true.
func (v *View) markDirtyLocked(pools bool) {
	if !pools {
		return
	}
	v.dirty = true
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// Start computes the accounting anew whenever pools or nodes changed, at
// most every minInterval, and when a binding ends; it publishes the slices
// whose bound amounts changed. It returns when ctx ends.
func (v *View) Start(ctx context.Context) error {
	const minInterval = 50 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		v.mu.RLock()
		dirty, next := v.dirty || !v.accounted, v.acct.result.NextChange
		v.mu.RUnlock()
		if !next.IsZero() && !v.now().Before(next) {
			dirty = true
		}
		if dirty && v.feedsSynced() {
			v.recompute()
			select { // coalesce the events of a burst (a thousand nodes joining)
			case <-ctx.Done():
				return nil
			case <-time.After(minInterval):
			}
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(v.now()), 0) + 10*time.Millisecond
		}
		if !v.feedsSynced() {
			wait = minInterval
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		case <-timer.C:
		}
	}
}

// NeedLeaderElection is false: every replica keeps its view, so that a new
// leader starts with a synced one.
func (v *View) NeedLeaderElection() bool { return false }

func (v *View) feedsSynced() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, synced := range v.feeds {
		if !synced() {
			return false
		}
	}
	return true
}

// recompute does the accounting over a snapshot of the pools and nodes.
func (v *View) recompute() {
	v.mu.Lock()
	specs := slices.Collect(maps.Values(v.poolSpecs))
	infos := make([]pools.NodeInfo, 0, len(v.nodes))
	capacity := make(pools.Capacity, len(v.nodes))
	for name, nn := range v.nodes {
		infos = append(infos, pools.NodeInfo{Name: name, Site: nn.info.Site, Labels: nn.info.Labels})
		capacity[name] = pools.CapacityOf(nn.allocatable)
	}
	v.dirty = false
	v.mu.Unlock()

	now := v.now()
	resolved := pools.Resolve(specs, infos)
	acct := accounting{result: pools.Account(resolved, capacity, now)}
	acct.reserved = pools.Reserved(resolved, acct.result)

	v.mu.Lock()
	old := v.acct
	v.acct, v.accounted = acct, true
	v.mu.Unlock()
	v.publish(Change{Accounting: true, BoundSlices: changedBindings(old.result.Bound, acct.result.Bound),
		Allocations: changedBindings(old.result.Allocated, acct.result.Allocated)})
}

// changedBindings returns the keys (slices, or authorities) whose amounts
// by node differ, sorted.
func changedBindings(before, after map[string]map[string]corev1.ResourceList) []string {
	var out []string
	for s, b := range after {
		if !equality.Semantic.DeepEqual(before[s], b) {
			out = append(out, s)
		}
	}
	for s := range before {
		if _, ok := after[s]; !ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Reservations are what resource pools mean for one slice's slivers.
type Reservations struct {
	// Bound holds, per node, the amounts bound to the slice.
	Bound map[string]corev1.ResourceList
	// Reserved holds, per node, what root pools reserve there (out of the
	// fair share).
	Reserved map[string]corev1.ResourceList
	// NextChange is when a binding ends next (zero: none).
	NextChange time.Time
}

// Reservations returns the accounting's view of a slice
// ("<namespace>/<name>"). The caller must not change the lists.
func (v *View) Reservations(slice string) Reservations {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return Reservations{Bound: v.acct.result.Bound[slice], Reserved: v.acct.reserved, NextChange: v.acct.result.NextChange}
}

// Part is what an authority allocation gives on one node.
type Part struct {
	// Allocation is the allocation's authority (pools.Result.Allocated):
	// the authority's, or the nearest of its parents' (plc for
	// plc.japan) that has one on the node.
	Allocation string
	// Amounts are what the allocation gives there (less its sub-pools);
	// Size what it holds before them. The caller must not change them.
	Amounts, Size corev1.ResourceList
}

// Parts returns, per node, the allocation the slivers of authority's
// slices live on: the one to the authority itself, or else to the nearest
// authority it is a delegate of (plc.japan's slices live on plc's). Nodes
// with none are absent: their slivers share the node's unreserved part.
func (v *View) Parts(authority string) map[string]Part {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var keys []string
	for k := range v.acct.result.Allocated {
		if naming.WithinAuthority(authority, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(len(a), len(b)) }) // the nearest last
	out := map[string]Part{}
	for _, k := range keys {
		for n, amounts := range v.acct.result.Allocated[k] {
			out[n] = Part{Allocation: k, Amounts: amounts, Size: v.acct.result.AllocationSize[k][n]}
		}
	}
	return out
}

// Accounting returns the latest pool accounting. The caller must not change
// it.
func (v *View) Accounting() pools.Result {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.acct.result
}

// AllocationUse is what one authority is allocated on a site's nodes and
// what its slivers there use of it.
type AllocationUse struct {
	// Nodes counts the site's nodes where the authority has an allocation.
	Nodes int
	// Allocated sums what the allocations give it over those nodes.
	Allocated corev1.ResourceList
	// Used sums what the slivers living on those allocations request of
	// them (cpu, memory, ephemeral storage the allocations list; not what
	// a sub-pool bound to their slice gives), and planetkube.io/slivers
	// counts those that fill an allocation's slot.
	Used corev1.ResourceList
}

// Allocations returns, per authority with an allocation on a site's nodes,
// what it is allocated and what it uses there.
func (v *View) Allocations(site string) map[string]AllocationUse {
	v.mu.RLock()
	defer v.mu.RUnlock()
	now := v.now()
	out := map[string]AllocationUse{}
	for authority, byNode := range v.acct.result.Allocated {
		u := AllocationUse{Allocated: corev1.ResourceList{}, Used: corev1.ResourceList{}}
		var used [3]int64 // by useOrder
		var slivers int64
		for n := range v.bySite[site] {
			amounts, ok := byNode[n]
			if !ok {
				continue
			}
			u.Nodes++
			pools.Add(u.Allocated, amounts)
			for _, p := range v.onNode[n] {
				if p.allocation != authority || (p.assumed && now.Sub(p.assumedAt) > assumeTTL) {
					continue
				}
				w := v.whereLocked(p, n)
				if !w.boundSlot {
					slivers++
				}
				for i, q := range p.uses() {
					if w.of(useOrder[i]) == onPart {
						used[i] += q
					}
				}
			}
		}
		if u.Nodes == 0 {
			continue
		}
		u.Used[corev1.ResourceCPU] = *resource.NewMilliQuantity(used[0], resource.DecimalSI)
		u.Used[corev1.ResourceMemory] = *resource.NewQuantity(used[1], resource.BinarySI)
		u.Used[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(used[2], resource.BinarySI)
		u.Used[planetv1.ResourceSlivers] = *resource.NewQuantity(slivers, resource.DecimalSI)
		out[authority] = u
	}
	return out
}
