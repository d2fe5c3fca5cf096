package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/planetkube/planetkube/internal/agent/cpu"
	"github.com/planetkube/planetkube/internal/testing/cpuload"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

const (
	enforcementHeading = "## On-host enforcement (issue 12)"
	// enfPairs is how many times the two sides alternate; enfWindow how
	// long each measures.
	enfPairs  = 3
	enfWindow = 5 * time.Second
	// enfSlivers is the node size for the agent's own cost.
	enfSlivers = 100
)

// enfShares are the slices' cpuShare of the fairness run.
var enfShares = []uint64{1, 1, 2, 4}

// enfResult holds the enforcement benchmark's figures.
type enfResult struct {
	agent, none         []float64 // Jain's index per pair
	agentRatio          []float64 // measured share of the share-4 sliver over its ideal, with the agent
	passCPU             time.Duration
	passes, fixedPerRun int
	machine             machine
}

// TestEnforcementBench measures CPU fairness on one CPU: len(enfShares)
// sliver stand-ins, busy, in pod cgroups of a kubepods-like tree; with the
// agent's weights (shares × 1024) against the anchor, the kernel's default
// (every cgroup 1024), alternating over enfPairs; Jain's index of each
// sliver's CPU over its ideal share. Then the agent's own CPU per pass over
// enfSlivers pod cgroups.
func TestEnforcementBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	h := benchCPUHierarchy(t)
	root := filepath.Join(h.Root, fmt.Sprintf("planetkube-bench-%d", os.Getpid()))
	tree := cpu.Hierarchy{Root: root}
	uids := make([]string, len(enfShares))
	for i := range enfShares {
		uids[i] = fmt.Sprintf("fair-%d", i)
	}
	dirs := makePodCgroups(t, root, uids)
	pids := make([]int, len(uids))
	for i, dir := range dirs {
		pids[i] = cpuload.Spin(t, dir)
	}
	res := &enfResult{machine: describeMachine()}
	e := &cpu.Enforcer{Hierarchy: tree}
	for pair := range enfPairs {
		sides := []bool{true, false}
		if pair%2 == 1 {
			sides = []bool{false, true}
		}
		for _, withAgent := range sides {
			for i, uid := range uids {
				shares := uint64(1024)
				if withAgent {
					shares = enfShares[i] * 1024
				}
				if _, err := e.Apply(cpu.Target{UID: uid, QoS: corev1.PodQOSBurstable, Shares: shares}); err != nil {
					t.Fatal(err)
				}
			}
			j, top := measureFairness(t, pids)
			if withAgent {
				res.agent, res.agentRatio = append(res.agent, j), append(res.agentRatio, top)
			} else {
				res.none = append(res.none, j)
			}
			t.Logf("Pair %d, agent %v: Jain's index %.3f", pair+1, withAgent, j)
		}
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	res.passCPU, res.passes, res.fixedPerRun = agentPassCost(t, root)
	if err := writeSection(*benchOut, enforcementHeading, res.markdown()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

// benchCPUHierarchy returns the host's v1 cpu hierarchy, or skips.
func benchCPUHierarchy(t *testing.T) cpu.Hierarchy {
	t.Helper()
	h, err := cpu.DetectAt("/sys/fs/cgroup")
	msg := ""
	switch {
	case os.Geteuid() != 0:
		msg = "Benchmark needs root (it makes cgroups)"
	case err != nil || h.V2:
		msg = fmt.Sprintf("Benchmark needs a cgroup v1 cpu hierarchy (%v)", err)
	}
	skiplog.UnlessRoot(t, msg)
	return h
}

// makePodCgroups makes Burstable pod cgroups (cgroupfs layout) under root
// and removes them at the end.
func makePodCgroups(t *testing.T, root string, uids []string) []string {
	t.Helper()
	var dirs []string
	for _, uid := range uids {
		dir := filepath.Join(root, "kubepods", "burstable", "pod"+uid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			for range 50 { // a killed process leaves its cgroup a moment later
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = os.Remove(filepath.Join(root, "kubepods", "burstable"))
		_ = os.Remove(filepath.Join(root, "kubepods"))
		_ = os.Remove(root)
	})
	return dirs
}

// measureFairness measures each process's CPU over enfWindow and returns
// Jain's index of (measured share / ideal share) and that ratio for the
// sliver of the largest share.
func measureFairness(t *testing.T, pids []int) (float64, float64) {
	t.Helper()
	time.Sleep(500 * time.Millisecond) // let the new weights take hold; the window starts after
	before := make([]int64, len(pids))
	for i, p := range pids {
		before[i] = cpuload.Ticks(t, p)
	}
	time.Sleep(enfWindow)
	used := make([]float64, len(pids))
	for i, p := range pids {
		used[i] = float64(cpuload.Ticks(t, p) - before[i])
	}
	return jainOfShares(used, enfShares)
}

// jainOfShares returns Jain's index of (measured share / ideal share) over
// what each slice used and its share, and that ratio for the last slice.
func jainOfShares(used []float64, shares []uint64) (float64, float64) {
	var total, sumShares float64
	for i := range used {
		total += used[i]
		sumShares += float64(shares[i])
	}
	var sum, sumSq, top float64
	for i := range used {
		x := (used[i] / total) / (float64(shares[i]) / sumShares)
		sum, sumSq = sum+x, sumSq+x*x
		if i == len(used)-1 {
			top = x
		}
	}
	return sum * sum / (float64(len(used)) * sumSq), top
}

// agentPassCost measures the agent's CPU for one pass of the weight loop
// over enfSlivers pod cgroups, a tenth of them changed by someone else
// before each pass.
func agentPassCost(t *testing.T, root string) (time.Duration, int, int) {
	t.Helper()
	uids := make([]string, enfSlivers)
	pods := make([]*corev1.Pod, enfSlivers)
	for i := range uids {
		uids[i] = fmt.Sprintf("cost-%03d", i)
		p := &corev1.Pod{}
		p.UID = types.UID(uids[i])
		p.Status.Phase, p.Status.QOSClass = corev1.PodRunning, corev1.PodQOSBurstable
		p.Spec.Containers = []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: cpu.CPURequest(int64(250 * (1 + i%4)))}}}
		pods[i] = p
	}
	dirs := makePodCgroups(t, root, uids)
	loop := &cpu.Loop{Enforcer: &cpu.Enforcer{Hierarchy: cpu.Hierarchy{Root: root}}, Pods: func() []*corev1.Pod { return pods }}
	if _, err := loop.Once(); err != nil {
		t.Fatal(err)
	}
	const passes = 200
	fixed := 0
	var cpu time.Duration
	for range passes {
		for i := 0; i < enfSlivers; i += 10 {
			if err := os.WriteFile(filepath.Join(dirs[i], "cpu.shares"), []byte("2"), 0); err != nil {
				t.Fatal(err)
			}
		}
		c0 := selfCPU()
		n, err := loop.Once()
		cpu += selfCPU() - c0
		if err != nil {
			t.Fatal(err)
		}
		fixed += n
	}
	return cpu / passes, passes, fixed / passes
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// markdown returns the body of the enforcement section.
func (r *enfResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestEnforcementBench -v -args -bench-out=$PWD/docs/benchmarks.md`, as root). "+
		"Date: %s. Machine: %d CPUs (%s), Linux %s, %s; cgroup v1 cpu hierarchy (the real kernel).\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "**CPU fairness**: %d sliver stand-ins (busy loops pinned to one CPU, each in a Burstable pod cgroup of a kubepods tree) of slices with cpuShare %v; over %s each side measures every sliver's CPU time, and Jain's index of (measured share / ideal share) says how fair (1 = exactly the shares). The agent's side writes the weights it keeps (shares × 1024); the anchor is the kernel's default (every cgroup 1024). The sides alternate over %d pairs.\n\n",
		len(enfShares), enfShares, enfWindow, len(r.agent))
	b.WriteString("| Pair | Jain's index, agent | Jain's index, kernel default | share-4 sliver: measured / ideal (agent) |\n|---|---|---|---|\n")
	for i := range r.agent {
		fmt.Fprintf(&b, "| %d | %.3f | %.3f | %.2f |\n", i+1, r.agent[i], r.none[i], r.agentRatio[i])
	}
	am, alo, ahi := medianRange(r.agent)
	nm, nlo, nhi := medianRange(r.none)
	fmt.Fprintf(&b, "\nMedian Jain's index **%.3f** (%.3f–%.3f) with the agent against **%.3f** (%.3f–%.3f) with the kernel's default.\n\n", am, alo, ahi, nm, nlo, nhi)
	fmt.Fprintf(&b, "**The agent's own CPU**: one pass of the weight loop over %d sliver pod cgroups (%d of them changed by someone else before each pass, and written back) costs **%s** of CPU (mean of %d passes); at the default interval of %s that is %.4f%% of one CPU.\n\n",
		enfSlivers, r.fixedPerRun, r.passCPU.Round(time.Microsecond), r.passes, cpu.DefaultInterval, 100*r.passCPU.Seconds()/cpu.DefaultInterval.Seconds())
	b.WriteString("Bandwidth fairness and the memory watchdog's time to reset: see their sections below.\n")
	return b.String()
}
