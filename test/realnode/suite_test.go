// Package realnode installs the chart with helm into an emulated cluster
// that has one real node (internal/testing/realnode: a kubelet, kube-proxy
// and containerd in a network namespace of its own; no fake nodes here, the
// tour test has them) and checks what only a real node shows: the
// manager's replicas and the node agent as running pods, the webhooks
// called through their Service, slivers as real containers, exec and its
// RBAC, the agent's policing of real slivers (CPU, flows, memory,
// bandwidth), the agent and the kubelet going away and coming back, helm
// upgrade and uninstall. The cases share one cluster, node and release
// (the set-up takes about half a minute).
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

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/realnode"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

const (
	// release is the chart's release and its namespace.
	release, ns = realnode.Release, realnode.ReleaseNamespace
	// agentNS is the chart's default namespace of the node agents.
	agentNS = "planetkube-agent"
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
	site  *realnode.Site
}

// extraValues are the release's values besides realnode.ChartValues: the
// agent's public page on the node's address, its dump every 5 s (an ended
// flow's conntrack entry is reaped, and its final record arrives, within
// seconds, not at the kernel's collection up to a minute later), its
// memory watchdog measuring the pods (memoryValues), and the manager
// gathering usage often (usageValues).
var extraValues = append(append([]string{"--set", "nodeAgent.publicPage.enabled=true", "--set", "nodeAgent.dumpInterval=5s"}, memoryValues...), usageValues...)

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
	c, err := emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: -1, RealNodes: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	k8s, err := client.New(c.Config, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// As make run does (and docs/operations.md says a site does: the
	// release namespace first, with Pod Security restricted).
	began := time.Now()
	site, err := realnode.InstallSite(ctx, c, realnode.SiteOptions{Values: extraValues, Log: testWriter{t}})
	if site != nil {
		t.Cleanup(func() { _ = site.Nodes.Stop() })
	}
	if err != nil {
		t.Fatal(err)
	}
	e := &env{c: c, node: site.Node, k8s: k8s, bin: bin, chart: filepath.Join(c.RepoRoot(), "charts", "planetkube"), imgs: site.Images, site: site}
	t.Logf("Images, real node and helm install --wait in %s", time.Since(began).Round(time.Millisecond))
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
