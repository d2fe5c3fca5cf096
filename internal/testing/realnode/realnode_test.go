package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRealNode joins one real node to a small emulated cluster and runs a
// pod of the workload image on it: the pod is Running with a real address
// in the node's range, its process is in a cgroup under the node's root
// with the cpu.shares of its request, and the node's Stop leaves no
// namespace, cgroup or mount behind.
func TestRealNode(t *testing.T) {
	binDir, err := emulator.FindBinDir()
	if err == nil {
		err = emulator.CheckBinaries(binDir)
	}
	if err == nil {
		err = Check(binDir)
	}
	if err != nil {
		skiplog.UnlessRoot(t, "Skipping: no real node here ("+err.Error()+")")
	}
	// Long enough to wait for another package's real node (one at a time
	// on a machine: LockFile).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := emulator.Start(ctx, emulator.Options{BinDir: binDir, Nodes: 2, RealNodes: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	imgs, err := BuildImages(c.RepoRoot(), binDir, t.TempDir(), "planetkube:test")
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := New(ctx, c, imgs.Paths()[1:], testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = nodes.Stop()
		}
	}()
	began := time.Now()
	n, err := nodes.Add(ctx, "real-princeton-0", "princeton", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Node Ready in %s", time.Since(began))

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "spin", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      n.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Containers: []corev1.Container{{
				Name: "w", Image: WorkloadImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"cpu"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: mustQuantity("250m"),
				}},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	if err := n.poll(ctx, "pod Running", time.Minute, nil, func() bool {
		got, err = c.Client.CoreV1().Pods("default").Get(ctx, "spin", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning
	}); err != nil {
		t.Fatalf("%v; kubelet: %s", err, tail(n.KubeletLog()))
	}
	if !strings.HasPrefix(got.Status.PodIP, "10.244.0.") {
		t.Errorf("Pod IP %q, want one of %s", got.Status.PodIP, n.PodCIDR)
	}
	// 250m is 256 cpu.shares (cgroup v1) in the pod's cgroup under the node's root.
	dir := filepath.Join("/sys/fs/cgroup/cpu", n.CgroupRoot, "kubepods", "burstable", "pod"+string(got.UID))
	b, err := os.ReadFile(filepath.Join(dir, "cpu.shares"))
	if err != nil || strings.TrimSpace(string(b)) != "256" {
		t.Errorf("cpu.shares of %s: %q (%v), want 256", dir, b, err)
	}
	if out, err := n.Exec(ctx, "ping", "-c1", "-W2", got.Status.PodIP); err != nil {
		t.Errorf("The node cannot reach its pod: %v: %s", err, out)
	}

	// Nothing leaves for the world: a packet to a documentation address
	// (TEST-NET-1) is dropped in the node's namespace, counted there.
	dropped := func() int {
		out, err := n.Exec(ctx, "nft", "list", "chain", "inet", "planetkube_realnode", "output")
		if err != nil {
			t.Fatal(err)
		}
		var p int
		if i := strings.Index(out, "counter packets "); i >= 0 {
			_, _ = fmt.Sscan(out[i+len("counter packets "):], &p)
		}
		return p
	}
	before := dropped()
	if _, err := n.Exec(ctx, "ping", "-c1", "-W1", "192.0.2.1"); err == nil {
		t.Error("A ping to 192.0.2.1 from the node was answered")
	}
	if after := dropped(); after <= before {
		t.Errorf("The node's confinement dropped %d packets before the ping and %d after, want more", before, after)
	}

	stopped = true
	if err := nodes.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/var/run/netns/" + n.NetNS); !os.IsNotExist(err) {
		t.Errorf("The node's namespace is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/cpu", n.CgroupRoot)); !os.IsNotExist(err) {
		t.Errorf("The node's cgroup is left: %v", err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), n.WorkDir) {
		t.Errorf("Mounts under %s are left", n.WorkDir)
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprint("\n" + strings.Join(lines, "\n"))
}
