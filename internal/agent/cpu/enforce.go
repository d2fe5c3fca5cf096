package cpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/planetkube/planetkube/internal/agent/podcgroup"
)

// Target is a sliver pod and the weight it should have.
type Target struct {
	UID    string
	QoS    corev1.PodQOSClass
	Shares uint64
}

// TargetOf returns a pod's target: the kubelet's shares for the sum of its
// containers' CPU requests (for a sliver, its slice's share of the node).
func TargetOf(pod *corev1.Pod) Target {
	var milli int64
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
			milli += q.MilliValue()
		}
	}
	qos := pod.Status.QOSClass
	if qos == "" {
		qos = corev1.PodQOSBurstable
	}
	return Target{UID: string(pod.UID), QoS: qos, Shares: MilliToShares(milli)}
}

// ErrNoCgroup says the pod's cgroup is not there (yet, or any more).
var ErrNoCgroup = podcgroup.ErrNotFound

// Enforcer writes targets' weights into a hierarchy.
type Enforcer struct {
	Hierarchy Hierarchy
}

// Apply makes the pod's cgroup hold its target's weight and says whether
// it had to be changed (drift: someone else wrote it).
func (e *Enforcer) Apply(t Target) (bool, error) {
	dir, err := e.find(t)
	if err != nil {
		return false, err
	}
	file := filepath.Join(dir, e.Hierarchy.File())
	want := e.Hierarchy.Value(t.Shares)
	raw, err := os.ReadFile(file)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", file, err)
	}
	have, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err == nil && have == want {
		return false, nil
	}
	if err := os.WriteFile(file, []byte(strconv.FormatUint(want, 10)), 0); err != nil {
		return false, fmt.Errorf("writing %s: %w", file, err)
	}
	return true, nil
}

// find returns the pod's cgroup folder under either driver's layout.
func (e *Enforcer) find(t Target) (string, error) {
	return podcgroup.Find(e.Hierarchy.Root, t.QoS, t.UID)
}

// CPURequest is a helper for tests and callers that build pods: a CPU
// request of milli millicores.
func CPURequest(milli int64) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(milli, resource.DecimalSI)}
}
