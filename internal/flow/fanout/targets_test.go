package fanout_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

var (
	k8s client.Client
	ctx context.Context
)

func TestPodTargets(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Flow fan-out targets (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	env := testenv.New(filepath.Join("..", "..", ".."), testenv.WithoutWebhooks)
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		Expect(env.Stop()).To(Succeed())
	})
	k8s, err = client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "planetkube-system"}})).To(Succeed())
})

// agentPod creates a pod in ns with labels on node, then sets its phase
// and IPs through the status subresource, as the kubelet would.
func agentPod(ns, name string, lbls map[string]string, node string, phase corev1.PodPhase, ips ...string) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec: corev1.PodSpec{
			NodeName:    node,
			HostNetwork: true,
			Containers:  []corev1.Container{{Name: "agent", Image: "planetkube-agent"}},
		},
	}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	p.Status.Phase = phase
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	Expect(k8s.Status().Update(ctx, p)).To(Succeed())
}

var _ = Describe("PodTargets", func() {
	It("returns a target per Running agent pod with a node and an IP", func() {
		const ns = "planetkube-system"
		agent := map[string]string{"app": "planetkube-agent"}
		agentPod(ns, "agent-c", agent, "node-c", corev1.PodRunning, "10.0.0.7")
		agentPod(ns, "agent-a", agent, "node-a", corev1.PodRunning, "10.0.0.5")
		agentPod(ns, "agent-v6", agent, "node-b", corev1.PodRunning, "fd00::5", "10.0.0.6")
		agentPod(ns, "agent-pending", agent, "node-d", corev1.PodPending)
		agentPod(ns, "agent-failed", agent, "node-e", corev1.PodFailed, "10.0.0.9")
		agentPod(ns, "agent-unscheduled", agent, "", corev1.PodRunning, "10.0.0.10")
		agentPod(ns, "not-an-agent", map[string]string{"app": "other"}, "node-a", corev1.PodRunning, "10.0.0.11")
		agentPod("default", "agent-elsewhere", agent, "node-a", corev1.PodRunning, "10.0.0.12")

		targets := fanout.PodTargets(k8s, ns, labels.SelectorFromSet(agent), 9470)
		Expect(targets(ctx)).To(Equal([]fanout.Target{
			{Node: "node-a", URL: "http://10.0.0.5:9470"},
			{Node: "node-b", URL: "http://[fd00::5]:9470"},
			{Node: "node-c", URL: "http://10.0.0.7:9470"},
		}))

		// A pod that starts running is a target at the next listing.
		p := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "agent-pending"}, p)).To(Succeed())
		p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, "10.0.0.8", []corev1.PodIP{{IP: "10.0.0.8"}}
		Expect(k8s.Status().Update(ctx, p)).To(Succeed())
		Expect(targets(ctx)).To(ContainElement(fanout.Target{Node: "node-d", URL: "http://10.0.0.8:9470"}))

		// A nil selector takes every pod of the namespace.
		Expect(fanout.PodTargets(k8s, ns, nil, 9470)(ctx)).To(ContainElement(fanout.Target{Node: "node-a", URL: "http://10.0.0.11:9470"}))
	})

	It("refuses a port out of range", func() {
		_, err := fanout.PodTargets(k8s, "planetkube-system", nil, 0)(ctx)
		Expect(err).To(MatchError(ContainSubstring("port 0")))
	})
})

func TestCachedTargets(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	calls, fail := 0, false
	inner := func(context.Context) ([]fanout.Target, error) {
		calls++
		if fail {
			return nil, errors.New("the API is away")
		}
		return []fanout.Target{{Node: "n1", URL: "http://10.0.0.1:9470"}}, nil
	}
	ts := fanout.CachedTargets(inner, 10*time.Second, func() time.Time { return now })
	for range 5 {
		if got, err := ts(context.Background()); err != nil || len(got) != 1 {
			t.Fatalf("targets = %v, %v", got, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d lists for 5 lookups within the TTL, want 1", calls)
	}
	now = now.Add(11 * time.Second)
	fail = true
	if _, err := ts(context.Background()); err == nil {
		t.Fatal("a failed list after the TTL was hidden by the stale one")
	}
	fail = false
	if _, err := ts(context.Background()); err != nil || calls != 3 {
		t.Fatalf("after a failure: %v, %d lists; want a fresh list", err, calls)
	}
}
