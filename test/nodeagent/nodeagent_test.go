// Package nodeagent tests the node agent (`planetkube node-agent`) end to end
// on the real kernel: network namespaces stand for a node, its pods and the
// internet (internal/testing/netnstest), the agent binary captures the node
// namespace's conntrack flows, and Pod, Slice and Site objects live on a real
// kube-apiserver (envtest) where the test sets the pods' IPs. The agent runs
// as its ServiceAccount under the RBAC generated into config/agent.
//
// It needs root (skipped otherwise, unless PLANETKUBE_REQUIRE_ROOT=1, which
// CI sets) and bin/planetkube (`make build`).
package nodeagent

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

const (
	authority = "plc"
	agentUser = "system:serviceaccount:planetkube-system:planetkube-node-agent"
	// waitFor bounds each Eventually-style wait.
	waitFor = 30 * time.Second
)

// env is one test's control plane and client.
type env struct {
	t          *testing.T
	ctx        context.Context
	k8s        client.Client
	kubeconfig string
	binary     string
}

func setUp(t *testing.T) *env {
	t.Helper()
	netnstest.RequireRoot(t)
	ctrllog.SetLogger(logr.Discard())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	binDir := os.Getenv("PLANETKUBE_BIN")
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	} else if !filepath.IsAbs(binDir) {
		binDir = filepath.Join(root, binDir)
	}
	binary := filepath.Join(binDir, "planetkube")
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%s is missing (run `make build`): %v", binary, err)
	}
	te := testenv.New(root, testenv.WithoutWebhooks)
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("Starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Errorf("Stopping envtest: %v", err)
		}
	})
	k8s, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: t.Context(), k8s: k8s, binary: binary}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "planetkube-system"}})
	e.applyFile(filepath.Join(root, "config/agent/role.yaml"))
	e.applyFile(filepath.Join(root, "config/agent/role_binding.yaml"))

	user, err := te.AddUser(envtest.User{Name: agentUser}, nil)
	if err != nil {
		t.Fatalf("Adding the agent's user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	e.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(e.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) create(obj client.Object) {
	e.t.Helper()
	if err := e.k8s.Create(e.ctx, obj); err != nil {
		e.t.Fatalf("Creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// applyFile creates the one RBAC object of a generated YAML file.
func (e *env) applyFile(path string) {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var obj client.Object
	switch {
	case strings.HasSuffix(path, "role.yaml"):
		obj = &rbacv1.ClusterRole{}
	default:
		obj = &rbacv1.ClusterRoleBinding{}
	}
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(obj); err != nil {
		e.t.Fatalf("Reading %s: %v", path, err)
	}
	e.create(obj)
}

// site creates a Site with contacts, its namespace and one Slice.
func (e *env) site(site, slice, description string) {
	e.t.Helper()
	e.create(&planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}, Spec: planetv1.SiteSpec{
		PIs:   []planetv1.Subject{{Kind: planetv1.SubjectUser, Name: "pi@" + site + ".example.org"}},
		Techs: []planetv1.Subject{{Kind: planetv1.SubjectUser, Name: "tech@" + site + ".example.org"}},
	}})
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: site}})
	e.create(&planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: slice}, Spec: planetv1.SliceSpec{
		Description: description,
		URL:         "https://" + site + ".example.org/" + slice,
		Template:    planetv1.SliverTemplate{Image: "registry.example.org/" + slice + ":1"},
	}})
}

// sliver creates the Pod of a slice's sliver on node holding ip (and ip6), as
// the Slice controller and a kubelet would leave it, and returns its UID.
func (e *env) sliver(site, slice, node string, ip, ip6 netip.Addr, started time.Time) string {
	e.t.Helper()
	ns := site + "-" + slice
	if err := e.k8s.Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); client.IgnoreAlreadyExists(err) != nil {
		e.t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: slice + "-" + node, Labels: map[string]string{
			planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: site, planetv1.LabelSlice: slice,
		}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "sliver", Image: "registry.example.org/" + slice + ":1"}}},
	}
	e.create(pod)
	st := metav1.NewTime(started)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &st, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}}
	if ip6.IsValid() {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip6.String()})
	}
	if err := e.k8s.Status().Update(e.ctx, pod); err != nil {
		e.t.Fatalf("Setting the status of pod %s: %v", pod.Name, err)
	}
	return string(pod.UID)
}

// agent is one node-agent process.
type agent struct {
	t                 *testing.T
	e                 *env
	args              []string
	lookup, probe     string
	cmd               *exec.Cmd
	done              chan struct{}
	logPath           string
	listenIP, dataDir string
}

// startAgent runs the agent binary for node, auditing netns, with its
// lookup API on listenIP:port (port 0: a free one) and extra flags.
func (e *env) startAgent(node, netns, listenIP string, port int, extra ...string) *agent {
	e.t.Helper()
	if port == 0 {
		port = freePort(e.t, listenIP)
	}
	a := &agent{t: e.t, e: e, listenIP: listenIP, dataDir: e.t.TempDir(), logPath: filepath.Join(e.t.TempDir(), "agent.log")}
	a.lookup = fmt.Sprintf("http://%s:%d", listenIP, port)
	probe := freePort(e.t, "127.0.0.1")
	a.probe = fmt.Sprintf("http://127.0.0.1:%d", probe)
	a.args = []string{"node-agent",
		"--node-name=" + node, "--authority=" + authority, "--netns=" + netns,
		"--data-dir=" + a.dataDir, "--dump-interval=1s", "--lookup-rate=1000", "--lookup-burst=1000",
		fmt.Sprintf("--listen-address=%s:%d", listenIP, port),
		"--metrics-bind-address=0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe),
	}
	a.args = append(a.args, extra...)
	a.start()
	e.t.Cleanup(a.stop)
	return a
}

func (a *agent) start() {
	a.t.Helper()
	log, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	a.cmd = exec.Command(a.e.binary, a.args...)
	a.cmd.Env = append(os.Environ(), "KUBECONFIG="+a.e.kubeconfig)
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		a.t.Fatalf("Starting the agent: %v", err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); log.Close(); close(a.done) }()
	a.waitReady()
}

func (a *agent) waitReady() {
	a.t.Helper()
	eventually(a.t, "the agent to be ready", func() error {
		select {
		case <-a.done:
			a.t.Fatalf("The agent exited: %s\n%s", a.cmd.ProcessState, a.logTail())
		default:
		}
		resp, err := http.Get(a.probe + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (a *agent) kill() {
	a.t.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		a.t.Fatalf("Killing the agent: %v", err)
	}
	<-a.done
}

func (a *agent) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	if a.t.Failed() {
		a.t.Logf("Agent log tail:\n%s", a.logTail())
	}
}

func (a *agent) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// getFlows asks an agent's (or the manager's) JSON API.
func getFlows(base string, params url.Values) (int, lookup.Response, string, error) {
	resp, err := http.Get(base + "/api/v1/flows?" + params.Encode())
	if err != nil {
		return 0, lookup.Response{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, lookup.Response{}, "", err
	}
	var r lookup.Response
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			return resp.StatusCode, r, string(body), fmt.Errorf("decoding %s: %w", body, err)
		}
	}
	return resp.StatusCode, r, string(body), nil
}

// window is the from/to of a query covering what happened since, and a bit
// more on each side.
func window(since time.Time, extra url.Values) url.Values {
	v := url.Values{"from": {since.Add(-5 * time.Second).UTC().Format(time.RFC3339Nano)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)}}
	for k, vs := range extra {
		v[k] = vs
	}
	return v
}

// flowFrom waits until base answers a query for dst with a final record
// (one that has ended) whose original source is src, and returns it.
func flowFrom(t *testing.T, base string, since time.Time, dst netip.Addr, src netip.AddrPort) lookup.Row {
	t.Helper()
	var found lookup.Row
	eventually(t, fmt.Sprintf("a final record of the flow %s -> %s", src, dst), func() error {
		code, r, body, err := getFlows(base, window(since, url.Values{"ip": {dst.String()}}))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", code, body)
		}
		for _, row := range r.Flows {
			if row.OrigSrc == src.String() && row.End != nil {
				found = row
				return nil
			}
		}
		return fmt.Errorf("not among the %d flows to %s", len(r.Flows), dst)
	})
	return found
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	t.Fatalf("Timed out waiting for %s: %v", what, err)
}

func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// agentPod creates the Pod of the node-agent DaemonSet on node, as the
// manager's lookup finds it: host network, Running, at ip.
func (e *env) agentPod(node, ip string) {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: "planetkube-node-agent-" + node, Labels: map[string]string{
			"app.kubernetes.io/name": "planetkube", "app.kubernetes.io/component": "node-agent",
		}},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, Containers: []corev1.Container{{Name: "agent", Image: "planetkube:dev"}}},
	}
	e.create(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := e.k8s.Status().Update(e.ctx, pod); err != nil {
		e.t.Fatal(err)
	}
}

// managerOptions are the manager's defaults with the agents' port.
func managerOptions(t *testing.T, port int) manager.Options {
	t.Helper()
	var o manager.Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{fmt.Sprintf("--agent-port=%d", port), "--authority=" + authority}); err != nil {
		t.Fatal(err)
	}
	return o
}

// httptestServer serves h on a loopback port until the test ends.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func mustPort(t *testing.T, base string) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
