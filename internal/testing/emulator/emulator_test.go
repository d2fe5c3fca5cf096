package emulator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// TestCluster starts a small cluster, runs a pod on a fake node, applies a
// manifest and checks that Stop leaves no process behind.
func TestCluster(t *testing.T) {
	binDir, err := FindBinDir()
	if err == nil {
		err = CheckBinaries(binDir)
	}
	if err != nil {
		skiplog.Skipf(t, "Skipping: emulator binaries not built (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	began := time.Now()
	c, err := Start(ctx, Options{BinDir: binDir, Nodes: 10, Sites: []string{"princeton", "tokyo"}, Log: testWriter{t}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Started in %s", time.Since(began))
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()

	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: SiteLabel + "=tokyo"})
	if err != nil {
		t.Fatalf("Listing nodes: %v", err)
	}
	if len(nodes.Items) != 5 {
		t.Fatalf("Got %d tokyo nodes, want 5", len(nodes.Items))
	}
	for i := range nodes.Items {
		if n := &nodes.Items[i]; !nodeReady(n) || n.Labels[corev1.LabelTopologyRegion] != "ap-northeast" {
			t.Errorf("Node %s: ready=%v labels=%v", n.Name, nodeReady(n), n.Labels)
		}
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   NodeName("princeton", 2),
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Creating pod: %v", err)
	}
	err = waitFor(ctx, "pod Running", pollInterval, nil, func(ctx context.Context) bool {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, "probe", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
	})
	if err != nil {
		t.Fatal(err)
	}

	sleeper, err := c.StartManager(ctx, "/bin/sleep", "60")
	if err != nil {
		t.Fatalf("StartManager: %v", err)
	}
	if rss, err := sleeper.PeakRSSBytes(); err != nil || rss <= 0 {
		t.Errorf("PeakRSSBytes while running = %d, %v", rss, err)
	}
	if err := sleeper.Stop(); err != nil || sleeper.State() != "signal: terminated" {
		t.Errorf("Stop: %v, state %q", err, sleeper.State())
	}
	if rss, err := sleeper.PeakRSSBytes(); err != nil || rss <= 0 {
		t.Errorf("PeakRSSBytes after exit = %d, %v", rss, err)
	}

	manifest := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(manifest, []byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  a: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, manifest); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if cm, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "probe", metav1.GetOptions{}); err != nil || cm.Data["a"] != "b" {
		t.Fatalf("Applied ConfigMap: %v %v", cm, err)
	}

	procs := c.Processes()
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, p := range procs {
		if syscall.Kill(p.Pid(), 0) == nil {
			t.Errorf("Process %s (pid %d) still exists after Stop", p.Name, p.Pid())
		}
	}
	if _, err := os.Stat(c.WorkDir); !os.IsNotExist(err) {
		t.Errorf("Work dir %s not removed: %v", c.WorkDir, err)
	}
}

// testWriter sends the cluster's progress messages to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
