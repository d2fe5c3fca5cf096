package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	agentusage "github.com/planetkube/planetkube/internal/agent/usage"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

// usageWritesHeading is the heading of the usage writes section.
const usageWritesHeading = "## Usage gathering: status writes (issue 24)"

// The usage workload: 100 slices of 5 sites, each with a sliver on each of
// 10 nodes, every sliver using CPU between rounds.
const usageSlices, usageSites, usageNodes = 100, 5, 10

// TestUsageWritesBench counts the status writes of the manager's usage
// rounds against a real API server: ten node agents' real usage reports
// (internal/agent/usage, over cgroup files this test writes: envtest runs
// no kubelet), 100 busy slices, then a round where nothing moved.
func TestUsageWritesBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	env := testenv.Start(t, filepath.Join("..", ".."))
	ctx := t.Context()
	c := env.Client
	port := ports.Free(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "planetkube-system"}}))
	for s := range usageSites {
		site := fmt.Sprintf("site%d", s)
		must(c.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}}))
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: site}}))
	}
	for i := range usageSlices {
		must(c.Create(ctx, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("site%d", i%usageSites), Name: fmt.Sprintf("s%03d", i)},
			Spec: planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "pause"}}}))
	}
	type node struct {
		collector *agentusage.Collector
		root      string
	}
	var nodes []node
	for n := range usageNodes {
		name := fmt.Sprintf("node%d", n)
		must(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{planetv1.LabelSite: fmt.Sprintf("site%d", n%usageSites)}}}))
		root := t.TempDir()
		col := agentusage.NewCollector(name, agentusage.Hierarchy{Root: root}, time.Now().Add(-time.Hour))
		for i := range usageSlices {
			site, slice := fmt.Sprintf("site%d", i%usageSites), fmt.Sprintf("s%03d", i)
			uid := fmt.Sprintf("%s-%s", name, slice)
			must(os.MkdirAll(filepath.Join(root, "kubepods", "burstable", "pod"+uid), 0o755))
			col.Update(agentusage.Sliver{UID: uid, QoS: corev1.PodQOSBurstable, Slice: "plc." + site + "." + slice, Namespace: site, Name: slice, Created: time.Now(), Active: true})
		}
		ip := "127.0.0." + strconv.Itoa(n+1)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		must(err)
		srv := &http.Server{Handler: col, ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: "agent-" + name, Labels: map[string]string{"app": "agent"}},
			Spec: corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "agent", Image: "planetkube"}}}}
		must(c.Create(ctx, pod))
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
		must(c.Status().Update(ctx, pod))
		nodes = append(nodes, node{col, root})
	}
	// burn adds CPU time to every sliver's cgroup and has the agents read it.
	var used int64
	burn := func(ns int64) {
		used += ns
		for _, n := range nodes {
			for i := range usageSlices {
				uid := fmt.Sprintf("%s-s%03d", n.collector.Node, i)
				must(os.WriteFile(filepath.Join(n.root, "kubepods", "burstable", "pod"+uid, "cpuacct.usage"), []byte(strconv.FormatInt(used, 10)), 0o644))
			}
			must(n.collector.Once())
		}
	}
	g := &manager.UsageGatherer{Client: c, Local: "plc", Interval: 5 * time.Minute,
		Targets: fanout.PodTargets(c, "planetkube-system", labels.SelectorFromSet(labels.Set{"app": "agent"}), port)}
	var rounds []string
	round := func(what string) int {
		began := time.Now()
		writes, err := g.Round(context.Background())
		must(err)
		rounds = append(rounds, fmt.Sprintf("| %s | %d | %s |", what, writes, time.Since(began).Round(time.Millisecond)))
		return writes
	}
	burn(0)
	round("first round (every sliver read once)")
	busy := 0
	for i := range 3 {
		burn(int64(2+i) * int64(time.Second))
		busy = round(fmt.Sprintf("every slice used CPU (%d)", i+1))
		if busy != usageSlices+usageSites {
			t.Errorf("a busy round wrote %d statuses, want %d (one per slice and per site)", busy, usageSlices+usageSites)
		}
	}
	must(func() error {
		for _, n := range nodes {
			if err := n.collector.Once(); err != nil {
				return err
			}
		}
		return nil
	}())
	if idle := round("nothing moved"); idle != 0 {
		t.Errorf("an idle round wrote %d statuses, want 0", idle)
	}
	s := &planetv1.Slice{}
	must(c.Get(ctx, client.ObjectKey{Namespace: "site0", Name: "s000"}, s))
	if s.Status.Usage == nil || s.Status.Usage.Nodes != usageNodes || s.Status.Usage.CPUSeconds != int64(usageNodes)*(2+3+4) {
		t.Errorf("slice s000's usage %+v, want %d nodes and %d CPU seconds", s.Status.Usage, usageNodes, usageNodes*(2+3+4))
	}
	var b strings.Builder
	m := describeMachine()
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestUsageWritesBench -v -args -bench-out=$PWD/docs/benchmarks.md`). Date: %s. Machine: %d CPUs (%s), Linux %s, %s.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "The manager's usage rounds (`manager.UsageGatherer.Round`) against a real API server, asking %d node agents' real usage reports "+
		"(`internal/agent/usage`, reading cgroup files this test writes: envtest runs no kubelet) about %d slices of %d sites, each with a sliver on every node:\n\n",
		usageNodes, usageSlices, usageSites)
	fmt.Fprintln(&b, "| round | status writes | time |")
	fmt.Fprintln(&b, "|---|---|---|")
	for _, r := range rounds {
		fmt.Fprintln(&b, r)
	}
	fmt.Fprintf(&b, "\nA round writes a Slice's `status.usage` and a Site's `status.contribution` only where they changed: at most one write per slice and per site. "+
		"At the default `--usage-interval` of 5 minutes that is at most %d writes an hour for these 100 busy slices and 5 sites (12 rounds of %d), none for idle ones; "+
		"at the shortest interval allowed (10 s), %d.\n", 12*busy, busy, 360*busy)
	if err := writeSection(*benchOut, usageWritesHeading, b.String()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, b.String())
}
