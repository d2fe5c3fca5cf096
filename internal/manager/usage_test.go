package manager

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/usage"
)

// agentStandIn serves a usage report as a node agent does, on a loopback
// address of its own: envtest runs no agent, so the report is set by the
// test (the agent's own report is tested in internal/agent/usage and on
// the real node).
type agentStandIn struct {
	mu     sync.Mutex
	report usage.Report
}

func (a *agentStandIn) set(r usage.Report) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.report = r
}

func (a *agentStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != usage.Path {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = json.NewEncoder(w).Encode(a.report)
}

// TestUsageGatherer gathers two agents' reports against a real API server:
// the Slice's status.usage sums them, the Sites' status.contribution says
// what their nodes gave; an unchanged round writes nothing; an agent's
// restart loses nothing; a restarted manager goes on without counting
// twice; the metrics say the same.
func TestUsageGatherer(t *testing.T) {
	_, ctx, c := startAPIServer(t)
	port := ports.Free(t)
	agents := map[string]*agentStandIn{}
	for i, node := range []string{"p1", "m1"} {
		ip := "127.0.0." + strconv.Itoa(i+1)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		a := &agentStandIn{}
		agents[node] = a
		srv := &http.Server{Handler: a, ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })

		site := map[string]string{"p1": "princeton", "m1": "mit"}[node]
		must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{planetv1.LabelSite: site}}}))
		must(t, c.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}}))
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: site}}))
		if i == 0 {
			must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "planetkube-system"}}))
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: "agent-" + node, Labels: map[string]string{"app.kubernetes.io/component": "node-agent"}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Image: "planetkube"}}},
		}
		must(t, c.Create(ctx, pod))
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
		must(t, c.Status().Update(ctx, pod))
	}
	slice := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen"},
		Spec: planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "pause"}}}
	must(t, c.Create(ctx, slice))

	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	codeen := func(cpu float64, flows int64) usage.Slice {
		return usage.Slice{Slice: "plc.princeton.codeen", Namespace: "princeton", Name: "codeen", Slivers: 1, CPUSeconds: cpu, Flows: flows, BytesToday: 1000, BudgetBytes: 5000}
	}
	agents["p1"].set(usage.Report{Node: "p1", Since: t0, Slices: []usage.Slice{codeen(10.5, 4)}})
	agents["m1"].set(usage.Report{Node: "m1", Since: t0, Slices: []usage.Slice{codeen(20, 6)}})

	newGatherer := func() *UsageGatherer {
		return &UsageGatherer{Client: c, Local: "plc", Interval: time.Minute,
			Targets: fanout.PodTargets(c, "planetkube-system", labels.SelectorFromSet(labels.Set{"app.kubernetes.io/component": "node-agent"}), port)}
	}
	g := newGatherer()
	round := func(g *UsageGatherer, wantWrites int) {
		t.Helper()
		writes, err := g.Round(ctx)
		if err != nil || writes != wantWrites {
			t.Fatalf("round: %d writes (want %d), %v", writes, wantWrites, err)
		}
	}
	usageOf := func() planetv1.SliceUsage {
		t.Helper()
		s := &planetv1.Slice{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(slice), s))
		if s.Status.Usage == nil || s.Status.Usage.UpdatedAt == nil {
			t.Fatalf("no usage in the slice's status")
		}
		u := *s.Status.Usage
		u.UpdatedAt = nil
		return u
	}
	contribution := func(site string) planetv1.SiteContribution {
		t.Helper()
		s := &planetv1.Site{}
		must(t, c.Get(ctx, client.ObjectKey{Name: site}, s))
		if s.Status.Contribution == nil {
			t.Fatalf("no contribution in site %s's status", site)
		}
		x := *s.Status.Contribution
		x.UpdatedAt = nil
		return x
	}

	round(g, 3) // the slice and both sites
	if got, want := usageOf(), (planetv1.SliceUsage{CPUSeconds: 30, Flows: 10, BytesToday: 2000, BudgetBytes: 10000, Nodes: 2}); got != want {
		t.Fatalf("usage %+v, want %+v", got, want)
	}
	if got, want := contribution("mit"), (planetv1.SiteContribution{Slivers: 1, ForeignSlivers: 1, CPUSeconds: 20, CPUSecondsToOthers: 20}); got != want {
		t.Fatalf("mit gives %+v, want %+v", got, want)
	}
	if got, want := contribution("princeton"), (planetv1.SiteContribution{Slivers: 1, CPUSeconds: 10}); got != want {
		t.Fatalf("princeton gives %+v, want %+v", got, want)
	}

	round(g, 0) // nothing changed: nothing written

	// m1's agent restarts: its counters start from zero, the total does
	// not go down.
	agents["m1"].set(usage.Report{Node: "m1", Since: t0.Add(30 * time.Minute), Slices: []usage.Slice{codeen(2, 1)}})
	agents["p1"].set(usage.Report{Node: "p1", Since: t0, Slices: []usage.Slice{codeen(12.5, 4)}})
	round(g, 3) // the slice, mit and princeton (p1 used 2 s more)
	if got := usageOf(); got.CPUSeconds != 34 || got.Flows != 11 {
		t.Fatalf("after the agent's restart: %+v, want 34 s and 11 flows", got)
	}

	// A new manager goes on from the status: the same reports add nothing.
	g2 := newGatherer()
	round(g2, 0)
	if got := usageOf(); got.CPUSeconds != 34 || got.Flows != 11 {
		t.Fatalf("after the manager's restart: %+v", got)
	}
	agents["p1"].set(usage.Report{Node: "p1", Since: t0, Slices: []usage.Slice{codeen(20.5, 4)}})
	round(g2, 2)
	if got := usageOf(); got.CPUSeconds != 42 {
		t.Fatalf("after the manager's restart, p1 used 8 s more: %+v, want 42", got)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(g2)
	if n, err := testutil.GatherAndCount(reg, "planetkube_slice_cpu_seconds_total", "planetkube_site_cpu_seconds_given_total"); err != nil || n != 1+4 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
	if v := testutil.ToFloat64(onlyMetric(t, g2, usageSliceCPU)); v != 42 {
		t.Fatalf("planetkube_slice_cpu_seconds_total = %v, want 42 (from the status, 34, and 8 more)", v)
	}
}

// onlyMetric returns the collector's metric of a description.
func onlyMetric(t *testing.T, c prometheus.Collector, d *prometheus.Desc) prometheus.Collector {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		if m.Desc() == d {
			return constCollector{m}
		}
	}
	t.Fatalf("no %s", d)
	return nil
}

type constCollector struct{ m prometheus.Metric }

func (c constCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.Desc() }
func (c constCollector) Collect(ch chan<- prometheus.Metric) { ch <- c.m }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
