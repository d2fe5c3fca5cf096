package agent

import (
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/attr"
	"github.com/planetkube/planetkube/internal/naming"
)

// PodTracker turns the Pods of this node, as the informer sees them, into the
// IP history that flows are attributed against.
//
// When an IP is assigned: a pod first seen already holding its IP (the agent
// started after it, or missed its Pending state) holds it from its
// status.startTime, so flows still open from before the agent started are
// attributed. A pod seen gaining its first IP holds it from its first
// container's start (a sliver's first flow often begins before its status
// shows its address), but never from before this agent saw the pod without
// one nor before the IP's previous holder released it, and from the moment
// it is seen when another pod still holds the IP; a later IP (a new
// sandbox) is held from the moment it is seen.
// A pod that ends (Succeeded, Failed) or is deleted releases its IPs when that
// is seen. Host-network pods hold no IP of their own: their traffic is node
// traffic.
type PodTracker struct {
	// History receives the assignments; queries read it concurrently.
	History *attr.History
	// FullName returns a slice's full name from its site and name.
	FullName func(site, slice string) string
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu    sync.Mutex
	held  map[types.UID][]netip.Addr // the IPs each known pod holds now
	seen  map[types.UID]time.Time    // when each known pod was first seen
	hadIP map[types.UID]bool         // the known pods that have held an IP
}

func (t *PodTracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Update records a pod that was added or changed.
func (t *PodTracker) Update(pod *corev1.Pod) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held == nil {
		t.held, t.seen, t.hadIP = map[types.UID][]netip.Addr{}, map[types.UID]time.Time{}, map[types.UID]bool{}
	}
	now := t.now()
	old, known := t.held[pod.UID]
	ips := podIPs(pod)
	for _, ip := range old {
		if !containsAddr(ips, ip) {
			t.History.Release(ip, string(pod.UID), now)
		}
	}
	holder := t.holder(pod)
	for _, ip := range ips {
		switch {
		case containsAddr(old, ip):
		case !known:
			t.History.Assign(ip, holder, heldSince(pod, now))
		case len(old) == 0 && !t.hadIP[pod.UID]:
			// Its first address, seen after its containers may have sent
			// from it: back to the first container's start, never before
			// this agent saw the pod without one.
			t.History.AssignSince(ip, holder, latest(t.seen[pod.UID], firstContainerStart(pod)), now)
		default:
			t.History.Assign(ip, holder, now)
		}
	}
	if !known {
		t.seen[pod.UID] = now
	}
	if len(ips) > 0 {
		t.hadIP[pod.UID] = true
	}
	t.held[pod.UID] = ips
}

// firstContainerStart is when the pod's first container (init or not)
// started running, from its status; zero when none has. A container sends
// only once started, and starts only after its pod's sandbox has its address.
func firstContainerStart(pod *corev1.Pod) time.Time {
	var first time.Time
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			var at time.Time
			switch {
			case cs.State.Running != nil:
				at = cs.State.Running.StartedAt.Time
			case cs.State.Terminated != nil:
				at = cs.State.Terminated.StartedAt.Time
			}
			if !at.IsZero() && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
	}
	return first
}

// latest returns the later of a and b; zero when either is zero (unknown
// bounds the backdating to nothing).
func latest(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if a.After(b) {
		return a
	}
	return b
}

// Delete records a pod that is gone.
func (t *PodTracker) Delete(pod *corev1.Pod) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, ip := range t.held[pod.UID] {
		t.History.Release(ip, string(pod.UID), now)
	}
	delete(t.held, pod.UID)
	delete(t.seen, pod.UID)
	delete(t.hadIP, pod.UID)
}

// holder names the pod: slivers (labelled by the Slice controller) carry
// their name and their slice's full name. Other pods are held by their UID
// only: the lookup, open to anyone, shows slivers and never the names of
// the node's other pods.
func (t *PodTracker) holder(pod *corev1.Pod) attr.Holder {
	h := attr.Holder{PodUID: string(pod.UID)}
	if h.Slice = t.sliceOf(pod); h.Slice != "" {
		h.Sliver = pod.Namespace + "/" + pod.Name
	}
	return h
}

// sliceOf returns the full name of the slice a pod is a sliver of, or "".
func (t *PodTracker) sliceOf(pod *corev1.Pod) string {
	l := pod.Labels
	if l[planetv1.LabelManagedBy] != planetv1.ManagedByValue {
		return ""
	}
	// A foreign slice's sliver carries its full name; it counts only in the
	// namespace that name gives (which only the manager makes), so a pod
	// cannot claim another slice's name.
	if full := pod.Annotations[planetv1.AnnotationSliceFullName]; full != "" {
		if a, site, slice, ok := naming.ParseFullName(full); ok && pod.Namespace == naming.ForeignSliceNamespace(a, site, slice) {
			return full
		}
	}
	if l[planetv1.LabelSite] != "" && l[planetv1.LabelSlice] != "" && t.FullName != nil {
		return t.FullName(l[planetv1.LabelSite], l[planetv1.LabelSlice])
	}
	return ""
}

// podIPs returns the IPs a pod holds now: none for host-network pods and for
// pods that have ended.
func podIPs(pod *corev1.Pod) []netip.Addr {
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodRunning {
		return nil
	}
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !containsAddr(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	for _, p := range pod.Status.PodIPs {
		add(p.IP)
	}
	add(pod.Status.PodIP)
	return out
}

// heldSince is when a pod first seen with its IP is taken to have held it:
// its start time, unless that is missing or in the future.
func heldSince(pod *corev1.Pod, now time.Time) time.Time {
	if st := pod.Status.StartTime; st != nil && !st.Time.After(now) {
		return st.Time
	}
	return now
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}
