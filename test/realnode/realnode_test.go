package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/realnode"
)

// leaseName is the manager's leader election Lease in the release namespace.
const leaseName = "planetkube-manager.planetkube.io"

// TestRealNode runs the cases in order on one set-up (the release and the
// site princeton with users alice and bob); each also runs alone (go test
// -run TestRealNode/NAME), and leaves what it made only where a later
// case says it uses it.
func TestRealNode(t *testing.T) {
	e := setUp(t)
	ctx := context.Background()
	t.Run("chart", func(t *testing.T) { testChart(ctx, t, e) })
	t.Run("sliver", func(t *testing.T) { testSliver(ctx, t, e) })
	t.Run("cpu", func(t *testing.T) { testCPU(ctx, t, e) })
	t.Run("usage", func(t *testing.T) { testUsage(ctx, t, e) })
	t.Run("flows", func(t *testing.T) { testFlows(ctx, t, e) })
	t.Run("failover", func(t *testing.T) { testFailover(ctx, t, e) })
	t.Run("kubelet", func(t *testing.T) { testKubeletRestart(ctx, t, e) })
	t.Run("memory", func(t *testing.T) { testMemory(ctx, t, e) })
	t.Run("bandwidth", func(t *testing.T) { testBandwidth(ctx, t, e) })
	t.Run("agentrestart", func(t *testing.T) { testAgentRestart(ctx, t, e) })
	t.Run("uninstall", func(t *testing.T) { testUninstall(ctx, t, e) })
}

// testChart: the shipped chart's pods run on the real node: two manager
// replicas Ready and one of them leads; the node agent Running; a Slice the
// validating webhook refuses is refused through the webhook's Service.
func testChart(ctx context.Context, t *testing.T, e *env) {
	d := &appsv1.Deployment{}
	if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, d); err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 {
		t.Fatalf("manager: %d replicas ready, want 2\n%s", d.Status.ReadyReplicas, e.diagnose())
	}
	pods := e.managerPods(ctx, t)
	for _, p := range pods {
		if p.Spec.NodeName != e.node.Name || p.Status.PodIP == "" || !strings.HasPrefix(p.Status.PodIP, "10.244.") {
			t.Errorf("Manager pod %s on %q at %q, want the real node's pod range", p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}
	leader := e.leader(ctx, t, "")
	t.Logf("Leader: %s", leader)

	agent := e.agentPod(ctx, t)
	if agent.Status.Phase != corev1.PodRunning || agent.Status.PodIP != e.node.IP {
		t.Errorf("Agent pod %s: %s at %q, want Running on the host network (%s)", agent.Name, agent.Status.Phase, agent.Status.PodIP, e.node.IP)
	}

	// Only the validating webhook knows the 8-week rule (CRD validation
	// cannot read the clock): its refusal proves the API server reached
	// the manager's pod through the Service.
	far := metav1.NewTime(time.Now().Add(10 * 7 * 24 * time.Hour))
	bad := e.slice("too-long", "princeton", 1, []string{"pause"})
	bad.Spec.ExpiresAt = &far
	err := e.k8s.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "admission webhook") || !strings.Contains(err.Error(), "8 weeks") {
		t.Fatalf("A Slice expiring in 10 weeks: %v, want the webhook's refusal naming the 8-week limit", err)
	}
}

// testSliver: a slice's sliver on the real node is a real container, with
// the CPU request of its share in its cgroup, its users' keys at the
// documented path, and exec open to the slice's users only.
func testSliver(ctx context.Context, t *testing.T, e *env) {
	s := e.slice("shell", "princeton", 1, []string{"pause"})
	s.Spec.Users = []planetv1.SliceUser{{Name: "alice", SSHKeys: []string{testKey}}}
	if err := e.k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	other := e.slice("other", "princeton", 1, []string{"pause"})
	other.Spec.Users = []planetv1.SliceUser{{Name: "bob"}}
	if err := e.k8s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	pod := e.runningSliver(ctx, t, "shell")
	otherPod := e.runningSliver(ctx, t, "other")

	req := pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]
	if req.IsZero() {
		t.Fatalf("Sliver %s has no CPU request", pod.Name)
	}
	shares := cpuShares(req)
	dir := filepath.Join("/sys/fs/cgroup/cpu", e.node.CgroupRoot, "kubepods", "burstable", "pod"+string(pod.UID))
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.shares")); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(shares) {
		t.Errorf("cpu.shares of the sliver's cgroup %s: %q (%v), want %d for a request of %s", dir, b, err, shares, req.String())
	}

	out, err := e.kubectl("exec", "-n", pod.Namespace, pod.Name, "--", realnode.WorkloadBinary, "cat", "/etc/planetkube/ssh/authorized_keys")
	if err != nil || !strings.Contains(out, testKey) {
		t.Errorf("The user's key in the sliver: %v: %q, want %q", err, out, testKey)
	}
	if out, err := e.kubectl("--as", "alice", "exec", "-n", pod.Namespace, pod.Name, "--", realnode.WorkloadBinary, "cat", "/etc/planetkube/ssh/authorized_keys"); err != nil {
		t.Errorf("alice's exec into her own sliver: %v: %s", err, out)
	}
	out, err = e.kubectl("--as", "alice", "exec", "-n", otherPod.Namespace, otherPod.Name, "--", realnode.WorkloadBinary, "pause")
	if err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "forbidden") {
		t.Errorf("alice's exec into another slice's sliver: %v: %s, want forbidden", err, out)
	}
}

// testCPU: two slices of shares 1 and 3 burning CPU on the real node (both
// pinned to one CPU, so that they compete for it by weight alone): the
// agent keeps each sliver's cpu.shares (a weight changed behind its back is
// put back), and the CPU they get is 1:3 within 10 %.
func testCPU(ctx context.Context, t *testing.T, e *env) {
	burn := []string{"cpu", "-threads", "1", "-pin", fmt.Sprint(e.firstCPU(t))}
	for name, share := range map[string]int32{"light": 1, "heavy": 3} {
		if err := e.k8s.Create(ctx, e.slice(name, "princeton", share, burn)); err != nil {
			t.Fatal(err)
		}
	}
	light, heavy := e.runningSliver(ctx, t, "light"), e.runningSliver(ctx, t, "heavy")
	defer func() {
		for _, name := range []string{"light", "heavy"} {
			_ = e.k8s.Delete(ctx, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: name}})
		}
	}()
	shares := func(p *corev1.Pod) string {
		return filepath.Join("/sys/fs/cgroup/cpu", e.node.CgroupRoot, "kubepods", "burstable", "pod"+string(p.UID), "cpu.shares")
	}
	want, err := os.ReadFile(shares(light))
	if err != nil {
		t.Fatal(err)
	}
	// The agent puts a changed weight back (every 10 s): it found the
	// sliver's cgroup under the kubelet's cgroup root.
	if err := os.WriteFile(shares(light), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the agent restoring light's cpu.shares", time.Minute, 500*time.Millisecond, func() error {
		got, err := os.ReadFile(shares(light))
		if err != nil || string(got) != string(want) {
			return fmt.Errorf("cpu.shares %q (%v), want %q", got, err, want)
		}
		return nil
	})
	usage := func(p *corev1.Pod) int64 {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", e.node.CgroupRoot, "kubepods", "burstable", "pod"+string(p.UID), "cpuacct.usage"))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		_, _ = fmt.Sscan(strings.TrimSpace(string(b)), &n)
		return n
	}
	l0, h0 := usage(light), usage(heavy)
	began := time.Now()
	// Wait, not sleep: the measurement is what has accumulated meanwhile.
	poll.Until(t, "20 s of CPU contention", time.Minute, time.Second, func() error {
		if time.Since(began) < 20*time.Second {
			return fmt.Errorf("%s so far", time.Since(began).Round(time.Second))
		}
		return nil
	})
	l, h := usage(light)-l0, usage(heavy)-h0
	ratio := float64(h) / float64(l)
	t.Logf("CPU over %s: light %s, heavy %s, ratio %.2f", time.Since(began).Round(time.Millisecond), time.Duration(l), time.Duration(h), ratio)
	if ratio < 2.7 || ratio > 3.3 {
		t.Errorf("heavy:light CPU %.2f, want 3 within 10 %%", ratio)
	}
}

// testFlows: a sliver's TCP and UDP to the internet beyond the node are
// attributed to its slice by the agent pod, and the node's public page on
// the node's address names the slice.
func testFlows(ctx context.Context, t *testing.T, e *env) {
	inet, err := e.site.ServeInternet()
	if err != nil {
		t.Fatal(err)
	}
	// Each sender opens a new flow every 2 s, and ended flows leave the
	// node's table (reaching the agent's store) in a second.
	e.shortConntrackTimeouts(t, append([]string{"nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"}, realnode.ClosedTCPConntrack...)...)
	since := time.Now()
	for name, mode := range map[string]string{"talker": "tcp-send", "shouter": "udp-send"} {
		if err := e.k8s.Create(ctx, e.slice(name, "princeton", 1, []string{mode, "-to", inet.IP + ":9000", "-bytes", "10000", "-every", "2s"})); err != nil {
			t.Fatal(err)
		}
	}
	talker, shouter := e.runningSliver(ctx, t, "talker"), e.runningSliver(ctx, t, "shouter")
	api := fmt.Sprintf("http://%s:%d/api/v1/flows?", e.node.IP, 9470)
	for slice, pod := range map[string]*corev1.Pod{"plc.princeton.talker": talker, "plc.princeton.shouter": shouter} {
		poll.Until(t, "the agent attributing "+pod.Status.PodIP+"'s flow to "+slice, 2*time.Minute, time.Second, func() error {
			q := url.Values{"ip": {inet.IP}, "from": {since.Add(-5 * time.Second).UTC().Format(time.RFC3339Nano)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)}}
			resp, err := http.Get(api + q.Encode())
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var r lookup.Response
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				return err
			}
			for _, row := range r.Flows {
				if strings.HasPrefix(row.OrigSrc, pod.Status.PodIP+":") {
					if row.Slice != slice || row.PodUID != string(pod.UID) {
						return fmt.Errorf("flow %s attributed to %q (pod %s)", row.OrigSrc, row.Slice, row.PodUID)
					}
					return nil
				}
			}
			return fmt.Errorf("%d flows, none from %s", len(r.Flows), pod.Status.PodIP)
		})
	}
	// The public page, on the node's own address (port 80), names the slice.
	page := fmt.Sprintf("http://%s/?ip=%s", e.node.IP, inet.IP)
	poll.Until(t, "the node's public page naming the slices", time.Minute, time.Second, func() error {
		resp, err := http.Get(page)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, slice := range []string{"plc.princeton.talker", "plc.princeton.shouter"} {
			if !strings.Contains(string(b), slice) {
				return fmt.Errorf("HTTP %d, the page does not name %s", resp.StatusCode, slice)
			}
		}
		return nil
	})
}

// testFailover: the leader's pod deleted, the other replica leads and a new
// Slice still reconciles to a Running sliver.
func testFailover(ctx context.Context, t *testing.T, e *env) {
	old := e.leader(ctx, t, "")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: old}}
	if err := e.k8s.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	now := e.leader(ctx, t, old)
	t.Logf("Leader %s after %s deleted, in %s", now, old, time.Since(began).Round(time.Millisecond))
	if err := e.k8s.Create(ctx, e.slice("after-failover", "princeton", 1, []string{"pause"})); err != nil {
		t.Fatal(err)
	}
	e.runningSliver(ctx, t, "after-failover")
}

// testKubeletRestart: the kubelet stopped, the node goes NotReady and the
// slice lists its sliver as not ready; started again, the node is Ready,
// the same sliver pod runs on (not a second one) and the slice is Ready.
func testKubeletRestart(ctx context.Context, t *testing.T, e *env) {
	if err := e.k8s.Create(ctx, e.slice("steady", "princeton", 1, []string{"pause"})); err != nil {
		t.Fatal(err)
	}
	before := e.runningSliver(ctx, t, "steady")
	if err := e.node.StopKubelet(); err != nil {
		t.Fatal(err)
	}
	if err := e.node.WaitReady(ctx, false); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the slice listing its sliver on the stopped node as not ready", 2*time.Minute, time.Second, func() error {
		s := &planetv1.Slice{}
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: "princeton", Name: "steady"}, s); err != nil {
			return err
		}
		for _, n := range s.Status.NotReady {
			if n.Node == e.node.Name {
				return nil
			}
		}
		return fmt.Errorf("status.notReady: %+v", s.Status.NotReady)
	})
	if err := e.node.StartKubelet(); err != nil {
		t.Fatal(err)
	}
	if err := e.node.WaitReady(ctx, true); err != nil {
		t.Fatal(err)
	}
	after := e.runningSliver(ctx, t, "steady")
	if after.UID != before.UID {
		t.Errorf("The sliver was replaced (%s → %s), want the same pod running on", before.UID, after.UID)
	}
	poll.Until(t, "the slice Ready again with one sliver", time.Minute, 500*time.Millisecond, func() error {
		list := &corev1.PodList{}
		if err := e.k8s.List(ctx, list, client.InNamespace(before.Namespace)); err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d sliver pods", len(list.Items))
		}
		s := &planetv1.Slice{}
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: "princeton", Name: "steady"}, s); err != nil {
			return err
		}
		if len(s.Status.NotReady) != 0 {
			return fmt.Errorf("status.notReady: %+v", s.Status.NotReady)
		}
		return nil
	})
}

// testKey is a slice user's public key (not a secret: its private half was never kept).
const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7tYw8D8c5m0cE1q3iY1u2cQ8mQ3jvJQm2a9o0k1Lx4 alice@princeton"

// cpuShares is the cgroup v1 cpu.shares the kubelet gives a CPU request.
func cpuShares(q resource.Quantity) int64 {
	return max(2, q.MilliValue()*1024/1000)
}

// applySite creates the site princeton with alice and bob as users.
func (e *env) applySite(ctx context.Context, t *testing.T) {
	t.Helper()
	site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}, Spec: planetv1.SiteSpec{
		DisplayName: "Princeton University",
		Users:       []planetv1.Subject{{Name: "alice"}, {Name: "bob"}},
	}}
	if err := e.k8s.Create(ctx, site); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the site's namespace", time.Minute, 200*time.Millisecond, func() error {
		return e.k8s.Get(ctx, client.ObjectKey{Name: "princeton"}, &corev1.Namespace{})
	})
}

// slice is a Slice of site princeton on the real node only, running the
// workload image with args.
func (e *env) slice(name, site string, share int32, args []string) *planetv1.Slice {
	return &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: site},
		Spec: planetv1.SliceSpec{
			CPUShare: share,
			Nodes:    planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"type": "real"}}}},
			Template: planetv1.SliverTemplate{Image: realnode.WorkloadImage, Args: args},
		},
	}
}

// runningSliver waits for the slice's sliver on the real node to be Running and returns it.
func (e *env) runningSliver(ctx context.Context, t *testing.T, slice string) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	poll.Until(t, "slice "+slice+"'s sliver Running on "+e.node.Name, 2*time.Minute, 200*time.Millisecond, func() error {
		list := &corev1.PodList{}
		if err := e.k8s.List(ctx, list, client.MatchingLabels{planetv1.LabelSlice: slice}); err != nil {
			return err
		}
		for i := range list.Items {
			p := &list.Items[i]
			if p.Spec.NodeName == e.node.Name && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				got = p
				return nil
			}
		}
		return fmt.Errorf("%d pods, none Running on the real node", len(list.Items))
	})
	return got
}

// managerPods lists the manager's pods.
func (e *env) managerPods(ctx context.Context, t *testing.T) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := e.k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/component": "manager"}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// leader waits for a manager pod other than not to hold the leader Lease
// and returns its name.
func (e *env) leader(ctx context.Context, t *testing.T, not string) string {
	t.Helper()
	var holder string
	poll.Until(t, "a manager replica leading", 2*time.Minute, 200*time.Millisecond, func() error {
		l := &coordinationv1.Lease{}
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaseName}, l); err != nil {
			return err
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		for _, p := range e.managerPods(ctx, t) {
			if strings.HasPrefix(holder, p.Name+"_") && p.Name != not && p.DeletionTimestamp == nil {
				holder = p.Name
				return nil
			}
		}
		return fmt.Errorf("lease held by %q", holder)
	})
	return holder
}

// agentPod returns the node agent's pod on the real node.
func (e *env) agentPod(ctx context.Context, t *testing.T) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	poll.Until(t, "the node agent Running on "+e.node.Name, 2*time.Minute, 200*time.Millisecond, func() error {
		list := &corev1.PodList{}
		if err := e.k8s.List(ctx, list, client.InNamespace(agentNS)); err != nil {
			return err
		}
		for i := range list.Items {
			if p := &list.Items[i]; p.Spec.NodeName == e.node.Name && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				got = p
				return nil
			}
		}
		return fmt.Errorf("no agent pod Running on the real node")
	})
	return got
}

// firstCPU is the first CPU the node's pods may run on (its cpuset).
func (e *env) firstCPU(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", e.node.CgroupRoot, "cpuset.cpus"))
	if err != nil {
		t.Fatal(err)
	}
	var cpu int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &cpu); err != nil {
		t.Fatalf("The node's cpuset %q: %v", b, err)
	}
	return cpu
}

// sliceEvent waits for an event of reason on Slice princeton/slice and
// returns its note.
func (e *env) sliceEvent(ctx context.Context, t *testing.T, slice, reason string) string {
	t.Helper()
	var note string
	poll.Until(t, "a "+reason+" event on Slice princeton/"+slice, time.Minute, time.Second, func() error {
		list := &eventsv1.EventList{}
		if err := e.k8s.List(ctx, list, client.InNamespace("princeton")); err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "Slice" && ev.Regarding.Name == slice && ev.Reason == reason {
				note = ev.Note
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(list.Items))
	})
	return note
}
