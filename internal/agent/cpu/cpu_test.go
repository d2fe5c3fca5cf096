package cpu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct{ shares, weight uint64 }{
		{0, 1}, {2, 1}, {1024, 100}, {512, 59}, {2048, 174}, {3072, 240}, {102, 17}, {262144, 10000}, {1 << 30, 10000},
	} {
		if got := SharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
	}
}

func TestMilliToShares(t *testing.T) {
	for _, tc := range []struct {
		milli  int64
		shares uint64
	}{{0, 2}, {1, 2}, {100, 102}, {1000, 1024}, {2500, 2560}, {1 << 40, 262144}} {
		if got := MilliToShares(tc.milli); got != tc.shares {
			t.Errorf("MilliToShares(%d) = %d, want %d", tc.milli, got, tc.shares)
		}
	}
}

func TestFindHierarchy(t *testing.T) {
	v1 := `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	v2 := `29 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	spaced := `31 30 0:28 / /host/sys/fs/cgroup/cpu\040x rw - cgroup cgroup rw,cpu
`
	yes := func(string) bool { return true }
	no := func(string) bool { return false }
	for _, tc := range []struct {
		name, mountinfo string
		hasCPU          func(string) bool
		want            Hierarchy
		wantErr         bool
	}{
		{"v1 beside a cgroup2 tree without cpu (hybrid)", v1, no, Hierarchy{Root: "/sys/fs/cgroup/cpu,cpuacct"}, false},
		{"v1 wins even if the v2 tree has cpu", v1, yes, Hierarchy{Root: "/sys/fs/cgroup/cpu,cpuacct"}, false},
		{"unified v2", v2, yes, Hierarchy{Root: "/sys/fs/cgroup", V2: true}, false},
		{"v2 without the cpu controller", v2, no, Hierarchy{}, true},
		{"escaped mount point", spaced, no, Hierarchy{Root: "/host/sys/fs/cgroup/cpu x"}, false},
		{"nothing", "garbage\n", no, Hierarchy{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindHierarchy(strings.NewReader(tc.mountinfo), tc.hasCPU)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("FindHierarchy = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestTargetOf(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u-1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Resources: corev1.ResourceRequirements{Requests: CPURequest(300)}},
		{Resources: corev1.ResourceRequirements{Requests: CPURequest(200)}},
	}}}
	if got := TargetOf(pod); got != (Target{UID: "u-1", QoS: corev1.PodQOSBurstable, Shares: 512}) {
		t.Fatalf("TargetOf = %+v", got)
	}
}

// TestApplyV2Layouts runs the enforcer on a temporary tree laid out as a
// cgroup v2 node's (systemd and cgroupfs drivers): this machine's cgroup2
// tree has no cpu controller, so cpu.weight cannot be written for real
// here (TestSharesHoldCPURatio covers v1 on the real kernel).
func TestApplyV2Layouts(t *testing.T) {
	root := t.TempDir()
	e := &Enforcer{Hierarchy: Hierarchy{Root: root, V2: true}}
	for _, tc := range []struct {
		qos corev1.PodQOSClass
		dir string
	}{
		{corev1.PodQOSBurstable, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda_b.slice"},
		{corev1.PodQOSGuaranteed, "kubepods/podc-d"},
		{corev1.PodQOSBestEffort, "kubepods/besteffort/pode-f"},
	} {
		uid := strings.TrimPrefix(filepath.Base(tc.dir), "kubepods-burstable-pod")
		uid = strings.TrimSuffix(strings.TrimPrefix(uid, "pod"), ".slice")
		uid = strings.ReplaceAll(uid, "_", "-")
		dir := filepath.Join(root, tc.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "cpu.weight")
		if err := os.WriteFile(file, []byte("39\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		target := Target{UID: uid, QoS: tc.qos, Shares: 3072}
		changed, err := e.Apply(target)
		if err != nil || !changed {
			t.Fatalf("%s: Apply = %v, %v; want a change", tc.dir, changed, err)
		}
		if b, _ := os.ReadFile(file); string(b) != "240" {
			t.Fatalf("%s: cpu.weight = %q, want 240", tc.dir, b)
		}
		if changed, err := e.Apply(target); err != nil || changed {
			t.Fatalf("%s: second Apply = %v, %v; want nothing to do", tc.dir, changed, err)
		}
	}
	if _, err := e.Apply(Target{UID: "missing", QoS: corev1.PodQOSBurstable, Shares: 1024}); err == nil || !strings.Contains(err.Error(), ErrNoCgroup.Error()) {
		t.Fatalf("a missing cgroup gave %v", err)
	}
}

func TestDetectAt(t *testing.T) {
	mk := func(t *testing.T, files map[string]string) string {
		root := t.TempDir()
		for name, content := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		rel   string
		v2    bool
		err   bool
	}{
		{"v2 with cpu", map[string]string{"cgroup.controllers": "cpuset cpu io memory pids\n"}, "", true, false},
		{"v2 without cpu, no v1", map[string]string{"cgroup.controllers": "memory pids\n"}, "", false, true},
		{"v1 hybrid: cpu under the root", map[string]string{"cpu/cpu.shares": "1024\n", "unified/cgroup.controllers": ""}, "cpu", false, false},
		{"v1 co-mounted", map[string]string{"cpu,cpuacct/cpu.shares": "1024\n"}, "cpu,cpuacct", false, false},
		{"the hierarchy itself", map[string]string{"cpu.shares": "1024\n"}, "", false, false},
		{"nothing", nil, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := mk(t, tc.files)
			h, err := DetectAt(root)
			if (err != nil) != tc.err {
				t.Fatalf("DetectAt = %+v, %v", h, err)
			}
			if err == nil && (h.Root != filepath.Join(root, tc.rel) || h.V2 != tc.v2) {
				t.Fatalf("DetectAt = %+v, want %s v2=%v", h, filepath.Join(root, tc.rel), tc.v2)
			}
		})
	}
}
