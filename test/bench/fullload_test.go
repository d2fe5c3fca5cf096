package bench

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const fullLoadHeading = "## PlanetLab's whole load: 50,000 slivers (issue 26)"

// fullLoadCPUSeconds is how much of the rollout the CPU profile covers.
const fullLoadCPUSeconds = 120

var fullLoadSlices = flag.Int("full-slices", 50, "slices over every node in the whole-load benchmark (50 × 1,000 nodes: 50,000 slivers)")

// fullLoadResult holds the figures of the whole-load benchmark.
type fullLoadResult struct {
	nodes, slices, slivers int
	// rollout: every slice made at once, to every sliver Running; cpu is the
	// manager's CPU time over it.
	rollout timing
	cpu     time.Duration
	// cpuTop: the top lines of the manager's CPU profile over the rollout.
	cpuTop string
	converged
	// deleted: one slice deleted, to the Slice gone and to its last sliver
	// gone; deleteWrites are the manager's writes over it.
	sliceGone, sliversGone time.Duration
	deleteWrites           int
	// took is the whole benchmark, the cluster's start included.
	took    time.Duration
	machine machine
}

// TestFullLoadBench carries PlanetLab's whole load on one install: 50 slices
// over 1,000 kwok nodes, 50,000 slivers. It measures the rollout, the
// manager's memory and CPU, a restart, a node joining and one slice deleted,
// and writes its section of the file named by -bench-out. The floor
// comparison stays with TestSteadyState at 20,000 slivers: a floor of 50,000
// bare pods beside it would double the run for the same ratio.
func TestFullLoadBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Minute)
	defer cancel()
	c := startCluster(ctx, t, findBinDir(t), *benchNodes)
	metricsPort, prof := startProfiledManager(ctx, t, c)
	res, err := runFullLoad(ctx, t, c, metricsPort, prof)
	if err != nil {
		t.Fatal(err)
	}
	res.took = time.Since(began)
	res.machine = describeMachine()
	reportManagerErrors(t, lastManager(c))
	if err := writeSection(*benchOut, fullLoadHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

func runFullLoad(ctx context.Context, t *testing.T, c *emulator.Cluster, metricsPort int, prof profiler) (*fullLoadResult, error) {
	k8s, _, err := benchClients(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := updateSite(ctx, k8s, func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To(int32(*fullLoadSlices + 1)) }); err != nil {
		return nil, fmt.Errorf("raising the site's maxSlices: %w", err)
	}
	n := len(c.NodeNames)
	res := &fullLoadResult{nodes: n, slices: *fullLoadSlices, slivers: n * *fullLoadSlices}
	names := make([]string, res.slices)
	for i := range names {
		names[i] = fmt.Sprintf("full-%02d", i)
	}

	stopSampling := sampleAnon(lastManager(c), &res.anon)
	cpuProfile := make(chan error, 1)
	go func() {
		file, err := prof.fetch(ctx, fmt.Sprintf("profile?seconds=%d", fullLoadCPUSeconds), "full-rollout-cpu.pprof")
		if err == nil {
			res.cpuTop, err = prof.top(ctx, file, "", 15)
		}
		cpuProfile <- err
	}()
	cpu0, _ := managerCPU(c)
	res.rollout, err = measure(ctx, t, c.Client, phase{
		name: "Whole load", selector: planetv1.LabelSlice + " in (" + strings.Join(names, ",") + ")",
		start: func(ctx context.Context) error { return createSlices(ctx, k8s, names) },
	}, res.slivers, 40*time.Minute)
	if err != nil {
		return nil, err
	}
	cpu1, _ := managerCPU(c)
	res.cpu = cpu1 - cpu0
	if err := <-cpuProfile; err != nil {
		return nil, err
	}
	if err := measureConverged(ctx, t, c, k8s, metricsPort, prof, names, n, stopSampling, &res.converged); err != nil {
		return nil, err
	}
	if err := deleteOneSlice(ctx, t, c, k8s, metricsPort, names[0], res); err != nil {
		return nil, err
	}
	return res, nil
}

// deleteOneSlice deletes one converged slice as a user does and records the
// time to the Slice gone and to its last sliver gone (the slice namespace's
// deletion takes them: the namespace controller deletes each pod with its
// grace period, and kwok finishes it), and the manager's writes over it.
func deleteOneSlice(ctx context.Context, t *testing.T, c *emulator.Cluster, k8s client.Client, metricsPort int, name string, res *fullLoadResult) error {
	before, err := scrape(ctx, metricsPort)
	if err != nil {
		return err
	}
	ns := naming.SliceNamespace(benchSite, name)
	began := time.Now()
	if err := k8s.Delete(ctx, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchSite}}); err != nil {
		return err
	}
	last := -1
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
		if res.sliceGone == 0 {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: benchSite, Name: name}, &planetv1.Slice{})
			if apierrors.IsNotFound(err) {
				res.sliceGone = time.Since(began)
			}
		}
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		if len(pods.Items) != last {
			last = len(pods.Items)
			t.Logf("Delete: %d slivers of %s left after %s", last, name, time.Since(began).Round(time.Second))
		}
		if len(pods.Items) == 0 && res.sliversGone == 0 {
			res.sliversGone = time.Since(began)
		}
		return res.sliceGone > 0 && res.sliversGone > 0, nil
	})
	if err != nil {
		return fmt.Errorf("deleting slice %s: %d slivers left: %w", name, last, err)
	}
	time.Sleep(10 * time.Second) //nolint:forbidigo // a quiet period to count the deletion's writes in
	after, err := scrape(ctx, metricsPort)
	if err != nil {
		return err
	}
	res.deleteWrites = after.writes() - before.writes()
	t.Logf("Delete: slice gone in %s, its slivers in %s; the manager's writes %d", res.sliceGone, res.sliversGone, res.deleteWrites)
	return nil
}

// markdown returns the body of the whole-load section.
func (r *fullLoadResult) markdown() string {
	var b strings.Builder
	m := r.machine
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	per10k := func(v int64) float64 { return mib(v) * 10000 / float64(r.slivers) }
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestFullLoadBench -v -timeout 90m -args -bench-out=$PWD/docs/benchmarks.md`; it took %s, the cluster's start included). "+
		"Date: %s. Machine: %d CPUs (%s), Linux %s, %s. One emulated cluster of %d kwok nodes (site `%s`) and one manager.\n\n",
		r.took.Round(time.Minute), m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion, r.nodes, benchSite)
	fmt.Fprintf(&b, "**%d slices over every node, made at once: %d slivers.** The floor comparison is the steady-state section's, at 20,000 slivers; here the figures are absolute.\n\n", r.slices, r.slivers)
	b.WriteString("| Whole load | Measured |\n|---|---:|\n")
	fmt.Fprintf(&b, "| Every sliver created (seen by a watch) | %s |\n", seconds(r.rollout.created))
	fmt.Fprintf(&b, "| Every sliver Running | %s |\n", seconds(r.rollout.running))
	fmt.Fprintf(&b, "| Manager CPU over the rollout; per 10,000 slivers | %.0f s; %.1f s |\n", r.cpu.Seconds(), r.cpu.Seconds()*10000/float64(r.slivers))
	fmt.Fprintf(&b, "| Manager peak RSS (VmHWM); per 10,000 slivers | %.0f MiB; %.0f MiB |\n", mib(r.rss), per10k(r.rss))
	fmt.Fprintf(&b, "| Manager peak anonymous memory (RssAnon, every 250 ms); per 10,000 | %.0f MiB; %.0f MiB |\n", mib(r.anon), per10k(r.anon))
	fmt.Fprintf(&b, "| Manager live heap once converged (after a collection); per 10,000 | %.0f MiB; %.0f MiB |\n", mib(r.heapLive), per10k(r.heapLive))
	fmt.Fprintf(&b, "| Manager restart: time to resynced (every slice reconciled, queue empty) | %s |\n", seconds(r.restartSynced))
	fmt.Fprintf(&b, "| Manager restart: writes by the new manager (until 15 s after resync) | %d (target 0) |\n", r.restartWrites)
	fmt.Fprintf(&b, "| One node joins: its %d slivers Running | %s |\n", r.slices, seconds(r.join.running))
	fmt.Fprintf(&b, "| One node joins: pods created | %d (target %d) |\n", r.join.pods, r.slices)
	fmt.Fprintf(&b, "| One node joins: Slice status writes; events (the API server's counts) | %d; %d (target ≤ %d status writes, one a slice) |\n", r.join.status, r.join.events, r.slices)
	fmt.Fprintf(&b, "| One node joins: all the manager's writes (pods, statuses, events and the rest) | %d |\n", r.join.writes)
	fmt.Fprintf(&b, "| One slice deleted (`kubectl delete slice`): the Slice gone | %s |\n", seconds(r.sliceGone))
	fmt.Fprintf(&b, "| One slice deleted: its %d slivers gone (its namespace's deletion) | %s |\n", r.nodes, seconds(r.sliversGone))
	fmt.Fprintf(&b, "| One slice deleted: the manager's writes (until 10 s after) | %d |\n\n", r.deleteWrites)
	fmt.Fprintf(&b, "**Where the manager's time goes**: its CPU profile over the first %d s of the rollout:\n\n```\n%s\n```\n", fullLoadCPUSeconds, r.cpuTop)
	fmt.Fprintf(&b, "\n**Where its memory goes**: the heap in use once every slice converged (`heap?gc=1`, `-sample_index=inuse_space`):\n\n```\n%s\n```\n", r.heapTop)
	return b.String()
}
