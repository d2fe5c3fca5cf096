package usage_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/testing/testenv"
	"github.com/planetkube/planetkube/internal/usage"
)

// TestAgentServesUsage runs the agent (agent.Run, with bandwidth shaping)
// on a node namespace against a real API server, with a sliver pod whose
// cgroup is a file the test writes: the report on the API port names the
// slice and its sliver, its CPU seconds follow the cgroup, a TCP flow the
// sliver sends counts once it ends, with its bytes of the day against the
// budget; the public listener does not serve it; once the pod is deleted
// the slice has no sliver and keeps its CPU seconds.
func TestAgentServesUsage(t *testing.T) {
	netnstest.RequireRoot(t)
	env := testenv.Start(t, "../../..")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k8s := env.Client
	node := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 1, ConntrackTimeout: time.Second})

	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "princeton-codeen"}}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton-codeen", Name: "codeen-node-a", Labels: map[string]string{
			planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: "princeton", planetv1.LabelSlice: "codeen"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "sliver", Image: "registry.example.org/codeen:1"}}},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ip := node.Pods[0].IPv4.String()
	started := metav1.NewTime(time.Now().Add(-time.Minute))
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started, QOSClass: corev1.PodQOSBestEffort, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := k8s.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// The pod's cgroup, as the kubelet's cgroupfs driver lays it out under
	// a v1 cpuacct hierarchy.
	cgroups := t.TempDir()
	usageFile := filepath.Join(cgroups, "cpuacct", "kubepods", "besteffort", "pod"+string(pod.UID), "cpuacct.usage")
	setCPU := func(ns uint64) {
		t.Helper()
		if err := os.WriteFile(usageFile, []byte(fmt.Sprintf("%d\n", ns)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(usageFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cgroups, "cpuacct", "cpuacct.usage"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	setCPU(50e9) // used before the agent started: not counted

	listen, public := fmt.Sprintf("127.0.0.1:%d", ports.Free(t)), fmt.Sprintf("127.0.0.1:%d", ports.Free(t))
	var o agent.Options
	fs := flag.NewFlagSet("node-agent", flag.ContinueOnError)
	o.BindFlags(fs)
	const dayBudget = 1 << 30
	dataDir := t.TempDir()
	if err := fs.Parse([]string{
		// A dump every second also ends the flows conntrack let expire.
		"--node-name=node-a", "--data-dir=" + dataDir, "--netns=" + node.Node.Path, "--dump-interval=1s",
		"--listen-address=" + listen, "--public-listen-address=" + public, "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--lookup-unlimited=127.0.0.0/8", "--cgroup-root=" + cgroups, "--usage-interval=200ms",
		"--bandwidth", "--bandwidth-uplink=uplink", "--bandwidth-interval=200ms", fmt.Sprintf("--bandwidth-budget=%d", dayBudget),
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, env.Config, o) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent.Run = %v", err)
		}
	}()

	base := "http://" + listen
	// expect polls the report until check passes on the slice's entry.
	expect := func(what string, check func(usage.Slice) error) usage.Slice {
		t.Helper()
		var last usage.Slice
		poll.Until(t, what, 30*time.Second, 100*time.Millisecond, func() error {
			select {
			case err := <-done:
				t.Fatalf("agent.Run ended: %v", err)
			default:
			}
			r, err := usage.Fetch(ctx, http.DefaultClient, base)
			if err != nil {
				return err
			}
			if r.Node != "node-a" || len(r.Slices) != 1 {
				return fmt.Errorf("report %+v, want node-a's with one slice", r)
			}
			last = r.Slices[0]
			if s := last; s.Slice != "plc.princeton.codeen" || s.Namespace != "princeton" || s.Name != "codeen" || s.BudgetBytes != dayBudget {
				return fmt.Errorf("slice %+v, want plc.princeton.codeen, princeton/codeen, budget %d", s, dayBudget)
			}
			return check(last)
		})
		return last
	}
	expect("the sliver listed", func(s usage.Slice) error {
		if s.Slivers != 1 || s.CPUSeconds != 0 {
			return fmt.Errorf("%d slivers, %v CPU seconds; want 1 and none yet", s.Slivers, s.CPUSeconds)
		}
		return nil
	})
	setCPU(52.5e9)
	expect("the CPU seconds since the start", func(s usage.Slice) error {
		if s.CPUSeconds != 2.5 {
			return fmt.Errorf("%v CPU seconds, want 2.5", s.CPUSeconds)
		}
		return nil
	})

	// The slice's class on the uplink is made at the bandwidth loop's first
	// pass, which puts the slice in its ledger.
	poll.Until(t, "the slice's class", 30*time.Second, 100*time.Millisecond, func() error {
		ledger, err := budget.Load(filepath.Join(dataDir, "bandwidth.json"))
		if err != nil {
			return err
		}
		if _, ok := ledger.Usage("plc.princeton.codeen"); !ok {
			return fmt.Errorf("the ledger lists %v", ledger.Slices())
		}
		return nil
	})
	srv := netnstest.StartTCPServer(t, node.Internet)
	sendCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	const payload = 100_000
	if _, err := node.Pods[0].SendTCP(sendCtx, netip.AddrPortFrom(node.Internet.IPv4, srv.Port()), payload); err != nil {
		t.Fatal(err)
	}
	s := expect("the flow and its bytes counted", func(s usage.Slice) error {
		if s.Flows < 1 || s.BytesToday < payload {
			return fmt.Errorf("%d flows, %d bytes today; want 1 and at least %d", s.Flows, s.BytesToday, payload)
		}
		return nil
	})
	t.Logf("After one TCP flow of %d bytes: %+v", payload, s)

	resp, err := http.Get("http://" + public + usage.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the public listener answers %s for the usage report, want 404", resp.Status)
	}

	if err := k8s.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(usageFile); err != nil {
		t.Fatal(err)
	}
	expect("the sliver gone, its CPU seconds kept", func(s usage.Slice) error {
		if s.Slivers != 0 || s.CPUSeconds != 2.5 || s.Flows < 1 {
			return fmt.Errorf("%d slivers, %v CPU seconds, %d flows; want none, 2.5, the flow", s.Slivers, s.CPUSeconds, s.Flows)
		}
		return nil
	})
}
