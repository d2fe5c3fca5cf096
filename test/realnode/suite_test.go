// Package realnode installs the chart with helm into an emulated cluster
// that has one real node (internal/testing/realnode: a kubelet, kube-proxy
// and containerd in a network namespace of its own) beside kwok's fake ones,
// and checks what only a real node shows: the manager's replicas and the
// node agent as running pods, the webhooks called through their Service,
// slivers as real containers, exec and its RBAC, the agent's policing of
// real slivers, and the kubelet going away and coming back. The cases share
// one cluster, node and release (the set-up takes about half a minute).
//
// It needs root, the real node's binaries (make tools) and Debian packages
// (make test-deps); it skips otherwise, and fails instead under
// PLANETKUBE_REQUIRE_ROOT=1.
package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/realnode"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

const (
	// release is the chart's release and its namespace.
	release, ns = "planetkube", "planetkube-system"
	// agentNS is the chart's default namespace of the node agents.
	agentNS = "planetkube-agent"
	// image is the project's image as the test tags it.
	imageRepo, imageTag = "planetkube", "dev"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is the shared set-up: the cluster, its real node and the release.
type env struct {
	c     *emulator.Cluster
	node  *realnode.Node
	k8s   client.Client
	bin   string
	chart string
	imgs  realnode.Images
}

// chartValues are the release's values besides the shipped defaults: the
// image the node imported (no registry: never pulled), the manager on the
// real node (kwok's pods run nothing), the agent told the kubelet's cgroup
// root (the real node's kubelet has one of its own) and serving its public
// page on the node's address.
func chartValues() []string {
	return []string{
		"--set", "image.repository=" + imageRepo, "--set", "image.tag=" + imageTag, "--set", "image.pullPolicy=Never",
		"--set", "manager.nodeSelector.type=real",
		"--set", "nodeAgent.kubeletCgroupRoot=/pk-$(NODE_NAME)",
		"--set", "nodeAgent.publicPage.enabled=true",
	}
}

func setUp(t *testing.T) *env {
	t.Helper()
	bin, err := emulator.FindBinDir()
	if err == nil {
		err = emulator.CheckBinaries(bin)
	}
	if err == nil {
		err = realnode.Check(bin)
	}
	if err != nil {
		skiplog.UnlessRoot(t, "Skipping the real-node suite: "+err.Error())
	}
	// Long enough to wait for another package's real node (one at a time
	// on a machine: realnode.LockFile).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: 4, Sites: []string{"princeton", "mit"}, RealNodes: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	imgs, err := realnode.BuildImages(c.RepoRoot(), bin, t.TempDir(), imageRepo+":"+imageTag)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := realnode.New(ctx, c, imgs.Paths(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nodes.Stop() })
	node, err := nodes.Add(ctx, "real-princeton-0", "princeton", 0)
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(c.Config, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{c: c, node: node, k8s: k8s, bin: bin, chart: filepath.Join(c.RepoRoot(), "charts", "planetkube"), imgs: imgs}
	// As docs/operations.md says a site does: the release namespace first,
	// with Pod Security restricted.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	e.helm(t, append([]string{"install", release, e.chart, "-n", ns, "--wait", "--timeout", "4m"}, chartValues()...)...)
	t.Logf("helm install --wait took %s", time.Since(began).Round(time.Millisecond))
	e.applySite(ctx, t)
	return e
}

// helm runs the pinned helm against the cluster.
func (e *env) helm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run("helm", append(args, "--kubeconfig", e.c.Kubeconfig),
		"HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if err != nil {
		t.Fatalf("helm %v: %v\n%s\n%s", args, err, out, e.diagnose())
	}
	return out
}

// kubectl runs the pinned kubectl against the cluster and returns its
// output and error (the caller decides whether an error is expected).
func (e *env) kubectl(args ...string) (string, error) {
	return e.run("kubectl", append([]string{"--kubeconfig", e.c.Kubeconfig}, args...))
}

func (e *env) run(tool string, args []string, env ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(e.bin, tool), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	return out.String(), err
}

// diagnose is what to read when the release does not come up: the pods,
// their events, and the kubelet's last lines.
func (e *env) diagnose() string {
	pods, _ := e.kubectl("get", "pods", "-A", "-o", "wide", "--field-selector", "spec.nodeName="+e.node.Name)
	events, _ := e.kubectl("get", "events", "-A", "--field-selector", "type=Warning")
	b, _ := os.ReadFile(e.node.KubeletLog())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return fmt.Sprintf("pods on %s:\n%s\nwarnings:\n%s\nkubelet:\n%s", e.node.Name, pods, events, strings.Join(lines, "\n"))
}
