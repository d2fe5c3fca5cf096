// Package bench holds the benchmarks behind docs/benchmarks.md. They need the
// emulator binaries in bin/ and bin/planetkube, and run only when -bench-out
// names the file to write: `make bench`.
package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/planetkube/planetkube/internal/testing/emulator"
)

var (
	benchOut   = flag.String("bench-out", "", "file the benchmark results are written to (empty: skip the benchmarks; `make bench` sets it)")
	benchNodes = flag.Int("bench-nodes", 1000, "number of fake nodes (for a quick smoke run; the documented figures use 1000)")
	// managerArgs are extra manager flags for an experiment (the
	// documented figures use none): the steady-state, whole-load and
	// redemption benchmarks pass them to their manager.
	managerArgs = flag.String("manager-args", "", "extra manager flags, separated by spaces, for an experiment (such as --ticket-workers=32)")
)

// withManagerArgs returns args and the -manager-args flags.
func withManagerArgs(args ...string) []string {
	return append(args, strings.Fields(*managerArgs)...)
}

const (
	// phaseTimeout bounds each measured phase.
	phaseTimeout = 5 * time.Minute
	// benchSite and benchSlice name the Site and the Slice of phase (a).
	benchSite, benchSlice = "bench", "all"
)

// TestBenchmarks runs the slice rollout benchmark of issue 2, then the
// resource pool binding benchmark of issue 3, then the authority
// allocation benchmark of issue 25, on one emulated cluster and writes
// their sections of the file named by -bench-out.
func TestBenchmarks(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	binDir := findBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	c := startCluster(ctx, t, binDir, *benchNodes)
	manager := startManager(ctx, t, c)
	res, err := runSliceRollout(ctx, t, c)
	if err != nil {
		t.Fatal(err)
	}
	res.peakRSS, err = manager.PeakRSSBytes()
	if err != nil {
		t.Fatalf("Reading the manager's peak RSS: %v", err)
	}
	res.machine = describeMachine()
	reportManagerErrors(t, manager)
	if err := writeSection(*benchOut, sliceRolloutHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())

	binding, err := runPoolBinding(ctx, t, c, res.floor)
	if err != nil {
		t.Fatal(err)
	}
	reportManagerErrors(t, manager)
	if err := writeSection(*benchOut, poolBindingHeading, binding.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, binding.markdown())

	alloc, err := runAllocation(ctx, t, c)
	if err != nil {
		t.Fatal(err)
	}
	reportManagerErrors(t, manager)
	publish(t, allocationHeading, alloc.markdown())
}

// findBinDir returns the bin folder, skipping the test
// when the emulator binaries or the manager are missing.
func findBinDir(t *testing.T) string {
	t.Helper()
	binDir, err := emulator.FindBinDir()
	if err == nil {
		err = emulator.CheckBinaries(binDir)
	}
	if err == nil {
		_, err = os.Stat(filepath.Join(binDir, "planetkube"))
	}
	if err != nil {
		t.Skipf("Skipping the benchmarks: binaries missing, run `make tools build` (%v)", err)
	}
	return binDir
}

// startCluster starts an emulated cluster of n fake nodes over the default
// sites, kept in a fixed work folder so its logs outlive the run.
func startCluster(ctx context.Context, t *testing.T, binDir string, n int) *emulator.Cluster {
	t.Helper()
	began := time.Now()
	c, err := emulator.Start(ctx, emulator.Options{
		BinDir:  binDir,
		WorkDir: filepath.Join(os.TempDir(), "planetkube-bench"),
		Nodes:   n,
		Sites:   []string{benchSite}, // one site: a root pool spans only its own site's nodes
		Log:     testWriter{t},
	})
	if err != nil {
		t.Fatalf("Starting the emulated cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stopping the cluster: %v", err)
		}
	})
	t.Logf("Cluster of %d nodes up in %s; logs in %s", len(c.NodeNames), time.Since(began).Round(time.Millisecond), c.LogDir)
	return c
}

// startManager installs PlanetKube and starts bin/planetkube as its
// ServiceAccount, as `make run` does.
func startManager(ctx context.Context, t *testing.T, c *emulator.Cluster) *emulator.Process {
	t.Helper()
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := c.StartPlanetKube(ctx)
	if err != nil {
		t.Fatalf("Starting the manager: %v", err)
	}
	return p
}

// createNamespace creates namespace name, which may exist already.
func createNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// reportManagerErrors logs how many lines of the manager's log are errors,
// and the first few of them.
func reportManagerErrors(t *testing.T, p *emulator.Process) {
	t.Helper()
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Logf("Reading the manager log: %v", err)
		return
	}
	var errs []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "ERROR") || strings.Contains(line, `"level":"error"`) {
			errs = append(errs, line)
		}
	}
	t.Logf("Manager log %s: %d error lines", p.LogPath, len(errs))
	for _, line := range errs[:min(len(errs), 5)] {
		t.Logf("  %s", line)
	}
}

// testWriter sends the emulator's progress messages to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// runParallel runs fn(0..n-1) on w goroutines and returns the first error
// (no new call starts after it).
func runParallel(w, n int, fn func(i int) error) error {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		first   error
		wg      sync.WaitGroup
		stopped atomic.Bool
	)
	for range min(w, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					stopped.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return first
}
