package clusterview

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// AnnotationReservedHash on a sliver records the amounts bound to its slice
// on its node ("" for none): a sliver with one lives on a pool's reservation.
const AnnotationReservedHash = "planetkube.io/reserved-hash"

// AnnotationAllocation on a sliver names the authority allocation
// (pools.Result.Allocated) it was made on: its requests are a share of
// that allocation on its node, not of the node's shared part.
const AnnotationAllocation = "planetkube.io/allocation"

// AnnotationTemplateHash on a sliver records the slice spec it was made
// from: the Slice controller replaces a sliver with another hash.
const AnnotationTemplateHash = "planetkube.io/template-hash"

// assumeTTL is how long an assumed sliver counts on its node without the
// informer having seen it (a creation that failed without Forget).
const assumeTTL = time.Minute

// podUse is what one pod takes of its node.
type podUse struct {
	node string
	// slice is "<namespace>/<name>" of the slice whose sliver it is, or "".
	slice string
	// reserved: a sliver that lives on a pool's reservation, which the
	// accounting already takes out of the node.
	reserved bool
	// allocation is the authority allocation the sliver lives on, or "".
	allocation string
	// ours: a PlanetKube pod, which the view learns of from the manager's
	// cache; the others come from the view's own pod cache.
	ours                 bool
	cpuMilli, mem, ephem int64
	assumed              bool
	assumedAt            time.Time
}

// NoPodLimit is Free.Pods of a node that does not say how many pods it takes.
const NoPodLimit = int64(1) << 40

// Free is the room a new fair-share sliver of a slice has on a node.
type Free struct {
	// Resources are allocatable - what root pools reserve - the requests of
	// every pod on the node but the slice's own slivers and the slivers
	// that live on reservations (never below zero), for cpu, memory and
	// ephemeral storage.
	Resources corev1.ResourceList
	// Pods is how many more pods the node takes (allocatable pods - pods on
	// it but the slice's own slivers); NoPodLimit when the node does not say.
	Pods int64
	// Held is how many of those pods root pools hold (planetkube.io/slivers)
	// beyond the slivers of other slices that live on their reservations:
	// slots a fair-share sliver may not take.
	Held int64
	// AllocationSlots is, for a sliver on an authority allocation that
	// caps slivers (planetkube.io/slivers), how many more of its
	// authority's slivers it takes on the node; NoPodLimit otherwise.
	AllocationSlots int64
}

// useOf returns what a pod takes of its node: the larger of the sum of its
// containers' requests and its largest init container's, plus its overhead,
// as the kubelet counts it.
func useOf(p *corev1.Pod) *podUse {
	u := &podUse{node: p.Spec.NodeName}
	l := p.Labels
	u.ours = isOurs(p)
	if u.ours && l[planetv1.LabelSlice] != "" && l[planetv1.LabelSite] != "" {
		u.slice = l[planetv1.LabelSite] + "/" + l[planetv1.LabelSlice]
		u.reserved = p.Annotations[AnnotationReservedHash] != ""
		u.allocation = p.Annotations[AnnotationAllocation]
	}
	var cpu, mem, eph int64
	for i := range p.Spec.Containers {
		r := p.Spec.Containers[i].Resources.Requests
		cpu += r.Cpu().MilliValue()
		mem += r.Memory().Value()
		eph += r.StorageEphemeral().Value()
	}
	for i := range p.Spec.InitContainers {
		r := p.Spec.InitContainers[i].Resources.Requests
		cpu = max(cpu, r.Cpu().MilliValue())
		mem = max(mem, r.Memory().Value())
		eph = max(eph, r.StorageEphemeral().Value())
	}
	o := p.Spec.Overhead
	u.cpuMilli, u.mem, u.ephem = cpu+o.Cpu().MilliValue(), mem+o.Memory().Value(), eph+o.StorageEphemeral().Value()
	return u
}

// counts says whether a pod takes room on its node: it is bound to one and
// has not finished.
func counts(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// isOurs says whether a pod is PlanetKube's (its managed-by label).
func isOurs(p *corev1.Pod) bool {
	return p.Labels[planetv1.LabelManagedBy] == planetv1.ManagedByValue
}

// SetPod records what a pod takes of its node (or forgets it once it
// finished), replacing an assumption of the same name.
func (v *View) SetPod(p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name
	if !counts(p) {
		v.DeletePodOf(p)
		return
	}
	u := useOf(p)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.putLocked(key, u)
}

// DeletePod forgets a pod, by namespace/name.
func (v *View) DeletePod(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dropLocked(key)
}

// DeletePodOf forgets a pod that an informer says is gone or finished,
// unless the view holds it from the other informer: PlanetKube's pods and
// the others come from two caches split by the managed-by label, so a pod
// relabelled by hand leaves one and joins the other, in either order.
func (v *View) DeletePodOf(p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name
	v.mu.Lock()
	defer v.mu.Unlock()
	if u := v.pods[key]; u != nil && (u.ours == isOurs(p) || u.assumed) {
		v.dropLocked(key)
	}
}

// Assume counts a sliver about to be created on its node until the informer
// sees it (or Forget, or a minute passes), so that slices reconciled at the
// same time do not give away the same room twice.
func (v *View) Assume(p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name
	u := useOf(p)
	u.assumed, u.assumedAt = true, v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, seen := v.pods[key]; seen {
		return
	}
	v.putLocked(key, u)
}

// Forget drops an assumption whose creation failed.
func (v *View) Forget(p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name
	v.mu.Lock()
	defer v.mu.Unlock()
	if u := v.pods[key]; u != nil && u.assumed {
		v.dropLocked(key)
	}
}

func (v *View) putLocked(key string, u *podUse) {
	v.dropLocked(key)
	v.pods[key] = u
	on := v.onNode[u.node]
	if on == nil {
		on = map[string]*podUse{}
		v.onNode[u.node] = on
	}
	on[key] = u
}

func (v *View) dropLocked(key string) {
	if old := v.pods[key]; old != nil {
		delete(v.pods, key)
		delete(v.onNode[old.node], key)
		if len(v.onNode[old.node]) == 0 {
			delete(v.onNode, old.node)
		}
	}
}

// Free returns the room a new sliver of slice ("<namespace>/<name>") has
// on a node, and false for a node the view does not know. allocation names
// the authority allocation the sliver would live on there ("" for the
// node's shared part): its cpu, memory and ephemeral storage are then the
// allocation's (pools.Result.Allocated) less what the allocation's other
// slivers request, for the resources the allocation lists.
func (v *View) Free(nodeName, slice, allocation string) (Free, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	nn := v.nodes[nodeName]
	if nn == nil {
		return Free{}, false
	}
	now := v.now()
	reserved := v.acct.reserved[nodeName]
	alloc := nn.allocatable
	cpu := alloc.Cpu().MilliValue() - reserved.Cpu().MilliValue()
	mem := alloc.Memory().Value() - reserved.Memory().Value()
	eph := alloc.StorageEphemeral().Value() - reserved.StorageEphemeral().Value()
	pods := NoPodLimit
	if q, ok := alloc[corev1.ResourcePods]; ok {
		pods = q.Value()
	}
	held := reserved.Name(planetv1.ResourceSlivers, resource.DecimalSI).Value()
	part := v.acct.result.Allocated[allocation][nodeName]
	if allocation == "" || part == nil {
		allocation, part = "", nil
	}
	pcpu, pmem, peph := part.Cpu().MilliValue(), part.Memory().Value(), part.StorageEphemeral().Value()
	slots := NoPodLimit
	if q, ok := part[planetv1.ResourceSlivers]; ok {
		slots = q.Value()
	}
	shared, inPart := [3]int64{cpu, mem, eph}, [3]int64{pcpu, pmem, peph} // by useOrder
	for _, u := range v.onNode[nodeName] {
		if u.slice == slice || (u.assumed && now.Sub(u.assumedAt) > assumeTTL) {
			continue
		}
		pods--
		w := v.whereLocked(u, nodeName)
		if w.fillsHeld {
			held--
		}
		if u.allocation != "" && u.allocation == allocation && !w.boundSlot {
			slots--
		}
		for i, q := range u.uses() {
			switch w.of(useOrder[i]) {
			case onShared:
				shared[i] -= q
			case onPart:
				if u.allocation == allocation {
					inPart[i] -= q
				}
			}
		}
	}
	cpu, mem, eph = shared[0], shared[1], shared[2]
	pcpu, pmem, peph = inPart[0], inPart[1], inPart[2]
	room := func(name corev1.ResourceName, shared, inPart int64) int64 {
		if _, listed := part[name]; listed {
			return inPart
		}
		return shared
	}
	return Free{
		Resources: corev1.ResourceList{
			corev1.ResourceCPU:              *resource.NewMilliQuantity(max(0, room(corev1.ResourceCPU, cpu, pcpu)), resource.DecimalSI),
			corev1.ResourceMemory:           *resource.NewQuantity(max(0, room(corev1.ResourceMemory, mem, pmem)), resource.BinarySI),
			corev1.ResourceEphemeralStorage: *resource.NewQuantity(max(0, room(corev1.ResourceEphemeralStorage, eph, peph)), resource.BinarySI),
		},
		Pods:            max(pods, 0),
		Held:            max(held, 0),
		AllocationSlots: max(slots, 0),
	}, true
}

// Where a pod's use of a resource is counted.
const (
	onShared  = iota // the node's unreserved part
	onBinding        // the amounts bound to its slice there
	onPart           // its authority's allocation there
)

// where says what a pod lives on, on its node: the amounts bound to its
// slice (a binding, or a sub-pool of an allocation) and its authority's
// allocation.
type where struct {
	reserved    bool
	bound, part corev1.ResourceList
	boundSlot   bool // the binding holds a sliver slot for it
	fillsHeld   bool // it fills a slot a root pool holds
}

// whereLocked says what u lives on; v.mu is held.
func (v *View) whereLocked(u *podUse, node string) where {
	w := where{reserved: u.reserved}
	if !u.reserved {
		return w
	}
	w.bound = v.acct.result.Bound[u.slice][node]
	if u.allocation != "" {
		w.part = v.acct.result.Allocated[u.allocation][node]
	}
	_, w.boundSlot = w.bound[planetv1.ResourceSlivers]
	_, partSlot := w.part[planetv1.ResourceSlivers]
	// A sliver on a binding has long filled a held slot, whether or not
	// its pool lists slivers; one on an allocation fills one when the
	// allocation (or its binding) holds slots.
	w.fillsHeld = u.allocation == "" || w.boundSlot || partSlot
	return w
}

// of says where the pod's use of a resource counts.
func (w where) of(name corev1.ResourceName) int {
	if _, ok := w.bound[name]; ok {
		return onBinding
	}
	if _, ok := w.part[name]; ok {
		return onPart
	}
	if w.reserved && w.part == nil && len(w.bound) == 0 {
		return onBinding // its reservation ended: it is being replaced, and counted as before
	}
	return onShared
}

// useOrder names the resources of uses, in order.
var useOrder = [3]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

// uses returns what the pod requests of cpu (millicores), memory and
// ephemeral storage (useOrder), with no allocation: Free runs it for every
// pod on a node, for every sliver it places.
func (u *podUse) uses() [3]int64 {
	return [3]int64{u.cpuMilli, u.mem, u.ephem}
}

// StripPod is the cache transform of the view's pod informer, whose pods
// are not PlanetKube's: it keeps only what the view reads of a pod (its
// name, its node, its containers' requests and overhead, and its phase),
// which keeps a cache of every pod in the cluster small.
func StripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return stripPod(p, AnnotationReservedHash), nil
}

// StripSliver is the cache transform of PlanetKube's own pods (the
// manager's cache, which the view reads too): what the view reads
// (StripPod, and the sliver's slice labels, reserved hash and allocation) and what the
// Slice controller reads of a sliver (sliverplan.SliverOf, and the UID it
// deletes it by): its deletion, template hash, phase, reason and message,
// readiness, and the first waiting container's reason and message. A
// sliver cached whole took about three times the memory.
func StripSliver(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := stripPod(p, AnnotationReservedHash, AnnotationTemplateHash, AnnotationAllocation)
	out.DeletionTimestamp = p.DeletionTimestamp
	out.Status.Reason, out.Status.Message = p.Status.Reason, p.Status.Message
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady { // the last one counts, as in SliverOf
			out.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: c.Status}}
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			out.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message},
			}}}
			break
		}
	}
	return out, nil
}

// stripPod keeps what the view reads of a pod, and the annotations named
// of a PlanetKube pod.
func stripPod(p *corev1.Pod, annotations ...string) *corev1.Pod {
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.UID, out.ResourceVersion = p.Name, p.Namespace, p.UID, p.ResourceVersion
	if l := p.Labels; l[planetv1.LabelManagedBy] == planetv1.ManagedByValue {
		out.Labels = shared.strings(map[string]string{
			planetv1.LabelManagedBy: l[planetv1.LabelManagedBy], planetv1.LabelSite: l[planetv1.LabelSite], planetv1.LabelSlice: l[planetv1.LabelSlice],
		})
		kept := map[string]string{}
		for _, k := range annotations {
			if v, ok := p.Annotations[k]; ok {
				kept[k] = v
			}
		}
		if len(kept) > 0 {
			out.Annotations = shared.strings(kept)
		}
	}
	out.Spec.NodeName, out.Spec.Overhead = p.Spec.NodeName, p.Spec.Overhead
	strip := func(cs []corev1.Container) []corev1.Container {
		if len(cs) == 0 {
			return nil
		}
		res := make([]corev1.Container, len(cs))
		for i := range cs {
			res[i].Resources.Requests = shared.resources(cs[i].Resources.Requests)
		}
		return res
	}
	out.Spec.Containers, out.Spec.InitContainers = strip(p.Spec.Containers), strip(p.Spec.InitContainers)
	out.Status.Phase = p.Status.Phase
	return out
}
