package cpushare

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultEphemeralStorage is PlanetLab's default disk per sliver.
var DefaultEphemeralStorage = resource.MustParse("10Gi")

// SliverResources returns the resources of a sliver on a node.
//
// With amounts bound to its slice on the node (from resource pools), those
// amounts are its requests and its limits: with cpu and memory bound the
// sliver is Guaranteed. A resource not bound falls back to the fair share.
//
// The fair share: requests of share/sharesPerNode of the node's unreserved
// CPU, memory and ephemeral storage (so that requests, which the scheduler
// and the kubelet add up, stay within the node), no CPU limit
// (work-conserving), a memory limit of the node's unreserved memory, and an
// ephemeral-storage limit of DefaultEphemeralStorage (the request at most
// that). Unreserved is allocatable minus what root pools reserve on the node.
//
// A fair-share request never exceeds what is free on the node (free, the
// room the node's other pods leave; nil when unknown): the kubelet rejects
// a pod whose requests do not fit (OutOfcpu), whatever its share. A request
// cut this way only lowers the sliver's scheduling weight; the node agent
// applies the slice's share to its cgroups.
func SliverResources(allocatable, reserved, bound, free corev1.ResourceList, share, sharesPerNode int32) corev1.ResourceRequirements {
	req := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	guaranteed := func(name corev1.ResourceName) bool {
		q, ok := bound[name]
		if !ok || q.Sign() <= 0 {
			return false
		}
		req.Requests[name], req.Limits[name] = q.DeepCopy(), q.DeepCopy()
		return true
	}
	if !guaranteed(corev1.ResourceCPU) {
		req.Requests[corev1.ResourceCPU] = CPURequest(*allocatable.Cpu(), *reserved.Cpu(), share, sharesPerNode)
	}
	if !guaranteed(corev1.ResourceMemory) {
		if free := unreserved(allocatable, reserved, corev1.ResourceMemory); free > 0 {
			req.Limits[corev1.ResourceMemory] = *resource.NewQuantity(free, resource.BinarySI)
			req.Requests[corev1.ResourceMemory] = *resource.NewQuantity(shareOf(free, share, sharesPerNode), resource.BinarySI)
		}
	}
	if !guaranteed(corev1.ResourceEphemeralStorage) {
		req.Limits[corev1.ResourceEphemeralStorage] = DefaultEphemeralStorage.DeepCopy()
		if free := unreserved(allocatable, reserved, corev1.ResourceEphemeralStorage); free > 0 {
			req.Requests[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(min(DefaultEphemeralStorage.Value(), shareOf(free, share, sharesPerNode)), resource.BinarySI)
		}
	}
	if free != nil {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
			q, asked := req.Requests[name]
			if b, isBound := bound[name]; !asked || (isBound && b.Sign() > 0) {
				continue // nothing asked, or reserved (Guaranteed)
			}
			if room := free[name]; q.Cmp(room) > 0 {
				req.Requests[name] = room.DeepCopy()
			}
		}
	}
	return req
}

// unreserved returns allocatable - reserved of a resource, in its base unit
// (0 when the node does not say).
func unreserved(allocatable, reserved corev1.ResourceList, name corev1.ResourceName) int64 {
	a, r := allocatable[name], reserved[name]
	return max(0, a.Value()-r.Value())
}

// shareOf returns free * share / sharesPerNode rounded down to the MiB,
// with CPURequest's clamping.
func shareOf(free int64, share, sharesPerNode int32) int64 {
	if sharesPerNode < 1 {
		sharesPerNode = DefaultSharesPerNode
	}
	share = max(1, min(share, sharesPerNode))
	const mi = 1 << 20
	return free / int64(sharesPerNode) * int64(share) / mi * mi // whole MiB
}

// Within returns the allocatable and reserved amounts a sliver's fair share
// is computed from when its authority has an allocation on the node (part,
// what the allocation gives there): for cpu, memory and ephemeral storage
// that part lists, the part is all there is and nothing of it is reserved;
// the others stay the node's. With no part, it returns its inputs.
func Within(allocatable, reserved, part corev1.ResourceList) (corev1.ResourceList, corev1.ResourceList) {
	if len(part) == 0 {
		return allocatable, reserved
	}
	a, r := allocatable.DeepCopy(), reserved.DeepCopy()
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := part[name]; ok {
			if a == nil {
				a = corev1.ResourceList{}
			}
			a[name] = q.DeepCopy()
			delete(r, name)
		}
	}
	return a, r
}
