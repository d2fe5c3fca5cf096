package pools

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/planetkube/planetkube/api/v1alpha1"
)

// Resources are the resource names a pool may hold.
var Resources = []corev1.ResourceName{
	corev1.ResourceCPU,
	corev1.ResourceMemory,
	corev1.ResourceEphemeralStorage,
	v1alpha1.ResourceEgressBandwidth,
	v1alpha1.ResourceSlivers,
}

// Known reports whether name is one of Resources.
func Known(name corev1.ResourceName) bool {
	for _, r := range Resources {
		if r == name {
			return true
		}
	}
	return false
}

// Fits reports whether want fits in free: want[r] <= free[r] for every
// resource r of want, a resource absent from free counting as zero. When it
// does not fit, it returns the first such resource by name.
func Fits(free, want corev1.ResourceList) (corev1.ResourceName, bool) {
	return shortfall(free, nil, want)
}

// shortfall is Fits against total - used, computed without building the
// difference: it returns the least (by name) resource r with
// used[r] + want[r] > total[r].
func shortfall(total, used, want corev1.ResourceList) (corev1.ResourceName, bool) {
	var worst corev1.ResourceName
	ok := true
	for name, w := range want {
		need := w.DeepCopy()
		if u, found := used[name]; found {
			need.Add(u)
		}
		if need.Cmp(total[name]) > 0 && (ok || name < worst) {
			worst, ok = name, false
		}
	}
	return worst, ok
}

// Add adds src to dst in place (dst[r] += src[r]), never sharing or
// changing src's quantities. dst must not be nil.
func Add(dst, src corev1.ResourceList) {
	for name, q := range src {
		sum := q.DeepCopy()
		if have, found := dst[name]; found {
			sum.Add(have)
		}
		dst[name] = sum
	}
}

// Sub returns a new list a - b over the names of a (a name absent from b
// counts as zero; the result may be negative). Neither input changes.
func Sub(a, b corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(a))
	for name, q := range a {
		diff := q.DeepCopy()
		if s, found := b[name]; found {
			diff.Sub(s)
		}
		out[name] = diff
	}
	return out
}

// Restrict returns a new list with, for each name of like, src's amount or
// zero when src lacks it; names of src absent from like are dropped.
func Restrict(src, like corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(like))
	for name, l := range like {
		if q, found := src[name]; found {
			out[name] = q.DeepCopy()
		} else {
			out[name] = resource.Quantity{Format: l.Format}
		}
	}
	return out
}

// checkResources returns why perNode cannot be held by a pool (an unknown
// resource or a negative amount), or "".
func checkResources(perNode corev1.ResourceList) string {
	var bad corev1.ResourceName
	for name := range perNode {
		if !Known(name) && (bad == "" || name < bad) {
			bad = name
		}
	}
	if bad != "" {
		return "unknown resource " + string(bad)
	}
	for _, name := range Resources {
		if q, found := perNode[name]; found && q.Sign() < 0 {
			return "negative amount of " + string(name)
		}
	}
	return ""
}
