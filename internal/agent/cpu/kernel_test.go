package cpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/planetkube/planetkube/internal/testing/cpuload"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// requireV1CPU returns the host's cgroup v1 cpu hierarchy, or skips (fails
// with PLANETKUBE_REQUIRE_ROOT=1) when the test is not root or there is none.
func requireV1CPU(t *testing.T) Hierarchy {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := FindHierarchy(f, nil)
	msg := ""
	switch {
	case os.Geteuid() != 0:
		msg = "Test needs root (it makes cgroups)"
	case err != nil:
		msg = "Test needs a cgroup cpu hierarchy: " + err.Error()
	case h.V2:
		msg = "Test needs a cgroup v1 cpu hierarchy; this host's is v2 (TestApplyV2Layouts covers cpu.weight on a temporary tree)"
	}
	skiplog.UnlessRoot(t, msg)
	return h
}

// podTree makes, in the real hierarchy, a test root laid out as a kubelet
// with the cgroupfs driver lays out Burstable pods, one cgroup per uid, and
// removes it all at the end (after killing what runs in it).
func podTree(t *testing.T, h Hierarchy, uids ...string) Hierarchy {
	t.Helper()
	root := filepath.Join(h.Root, fmt.Sprintf("planetkube-test-%d", os.Getpid()))
	for _, uid := range uids {
		if err := os.MkdirAll(filepath.Join(root, "kubepods", "burstable", "pod"+uid), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, uid := range uids {
			_ = os.Remove(filepath.Join(root, "kubepods", "burstable", "pod"+uid))
		}
		_ = os.Remove(filepath.Join(root, "kubepods", "burstable"))
		_ = os.Remove(filepath.Join(root, "kubepods"))
		_ = os.Remove(root)
	})
	return Hierarchy{Root: root}
}

// podDir is a Burstable pod's cgroup folder in the test tree.
func podDir(h Hierarchy, uid string) string {
	return filepath.Join(h.Root, "kubepods", "burstable", "pod"+uid)
}

// TestSharesHoldCPURatio: two sliver stand-ins busy on one CPU, in pod
// cgroups under a kubepods-like tree, requesting 1 and 3 CPUs' worth of
// share: once the agent writes their weights, their CPU time is 1:3 within
// 10 %; a weight someone rewrites is found and written back.
func TestSharesHoldCPURatio(t *testing.T) {
	h := podTree(t, requireV1CPU(t), "one", "three")
	e := &Enforcer{Hierarchy: h}
	targets := []Target{{UID: "one", QoS: corev1.PodQOSBurstable, Shares: 1024}, {UID: "three", QoS: corev1.PodQOSBurstable, Shares: 3072}}
	// The kubelet would have written something else: start from equal weights.
	for _, uid := range []string{"one", "three"} {
		if err := os.WriteFile(filepath.Join(h.Root, "kubepods", "burstable", "pod"+uid, "cpu.shares"), []byte("1024"), 0); err != nil {
			t.Fatal(err)
		}
	}
	one, three := cpuload.Spin(t, podDir(h, "one")), cpuload.Spin(t, podDir(h, "three"))
	for _, tg := range targets {
		if _, err := e.Apply(tg); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // settle: not a synchronisation, the measurement window starts after it
	a0, b0 := cpuload.Ticks(t, one), cpuload.Ticks(t, three)
	time.Sleep(4 * time.Second)
	a, b := cpuload.Ticks(t, one)-a0, cpuload.Ticks(t, three)-b0
	if a <= 0 || b <= 0 {
		t.Fatalf("no CPU time measured: %d, %d ticks", a, b)
	}
	ratio := float64(b) / float64(a)
	t.Logf("CPU time over 4 s on one CPU: share 1 → %d ticks, share 3 → %d ticks, ratio %.2f (want 3 ± 10 %%)", a, b, ratio)
	if ratio < 2.7 || ratio > 3.3 {
		t.Fatalf("CPU ratio %.2f, want 3 within 10 %%", ratio)
	}

	// Someone rewrites a weight (the kubelet, systemd, a user).
	file := filepath.Join(h.Root, "kubepods", "burstable", "podthree", "cpu.shares")
	if err := os.WriteFile(file, []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	loop := &Loop{Enforcer: e, Metrics: m, Pods: func() []*corev1.Pod {
		pods := make([]*corev1.Pod, 0, len(targets))
		for _, tg := range targets {
			p := &corev1.Pod{}
			p.UID = types.UID(tg.UID)
			p.Status.Phase, p.Status.QOSClass = corev1.PodRunning, corev1.PodQOSBurstable
			p.Spec.Containers = []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: CPURequest(int64(tg.Shares * 1000 / 1024))}}}
			pods = append(pods, p)
		}
		return pods
	}}
	fixed, err := loop.Once()
	if err != nil || fixed != 1 {
		t.Fatalf("Once = %d, %v; want the one rewritten weight fixed", fixed, err)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != "3072" {
		t.Fatalf("cpu.shares = %q after the fix, want 3072", b)
	}
	if got := counterValue(t, m.Fixed); got != 1 {
		t.Fatalf("fixes metric = %v, want 1", got)
	}
}
