package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	// docHeader opens docs/benchmarks.md; the sections follow it.
	docHeader = "# Benchmarks\n\nThe results in this file are produced by `make bench` (package `test/bench`); " +
		"each run rewrites the sections it measures and keeps the others.\n"
	// sliceRolloutHeading is the heading of the slice rollout section.
	sliceRolloutHeading = "## Slice rollout (issue 2)"
	// runningTarget is how many times the floor the slice may take to be all Running.
	runningTarget = 2.0
)

// machine describes where the benchmark ran.
type machine struct {
	cpus             int
	cpuModel, kernel string
	goVersion        string
	date             time.Time
}

// describeMachine returns the machine this process runs on.
func describeMachine() machine {
	return machine{
		cpus:      runtime.NumCPU(),
		cpuModel:  cpuModel(),
		kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		goVersion: runtime.Version(),
		date:      time.Now().UTC(),
	}
}

// String is the date and the machine, as the sections open with them.
func (m machine) String() string {
	return fmt.Sprintf("Date: %s. Machine: %d CPUs (%s), Linux %s, %s.", m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	for _, line := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// readFile returns the content of path, or "" when it cannot be read.
func readFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

// seconds formats d in seconds with two decimals.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// ratio formats a/b with two decimals.
func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2f×", a.Seconds()/b.Seconds()) }

// verdict says whether the slice met the Running target.
func (r *rolloutResult) verdict() string {
	if r.slice.running.Seconds() <= runningTarget*r.floor.running.Seconds() {
		return "PASS"
	}
	return "MISS"
}

// markdown returns the body of the slice rollout section.
func (r *rolloutResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench`. Date: %s. Machine: %d CPUs (%s), Linux %s, %s. "+
		"One emulated cluster of %d kwok nodes, all of site `"+benchSite+"` (so that one pool can span them in the binding benchmark below); every pod runs `%s`.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion, r.nodes, pauseImage)
	fmt.Fprintf(&b, "Time from the start to all %d pods created (the %dth first seen by a watch) and to all Running:\n\n", r.nodes, r.nodes)
	b.WriteString("| Rollout, one pod per node | All created | All Running |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| (a) Slice `all` (PlanetKube manager; clock starts at the Slice's creation) | %s | %s |\n", seconds(r.slice.created), seconds(r.slice.running))
	fmt.Fprintf(&b, "| (b) Floor: bare client-go, no rate limit, %d goroutines, `spec.nodeName` set | %s | %s |\n", floorWorkers, seconds(r.floor.created), seconds(r.floor.running))
	fmt.Fprintf(&b, "| (c) DaemonSet, kube-controller-manager at defaults | %s | %s |\n\n", seconds(r.ds.created), seconds(r.ds.running))
	b.WriteString("| Ratio | Created | Running |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| Slice / floor | %s | %s |\n", ratio(r.slice.created, r.floor.created), ratio(r.slice.running, r.floor.running))
	fmt.Fprintf(&b, "| Slice / DaemonSet | %s | %s |\n\n", ratio(r.slice.created, r.ds.created), ratio(r.slice.running, r.ds.running))
	fmt.Fprintf(&b, "Target: slice all Running ≤ %.0f× floor — **%s** (%s).\n\n", runningTarget, r.verdict(), ratio(r.slice.running, r.floor.running))
	fmt.Fprintf(&b, "Manager peak RSS (VmHWM) over the run: %.0f MiB.\n\n", float64(r.peakRSS)/(1<<20))
	b.WriteString(r.interpretation())
	return b.String()
}

// interpretation explains what bounds each figure.
func (r *rolloutResult) interpretation() string {
	return fmt.Sprintf("The floor is bound by the API server's write throughput on this machine "+
		"(%.0f pod creates/s, with etcd, kube-apiserver, the scheduler's and kwok's watches all sharing the CPUs); "+
		"kwok then marks the pods Running as fast as it can patch their status. "+
		"The DaemonSet is bound by kube-controller-manager's client rate limit (20 QPS, burst 30 by default): "+
		"%d creates cannot take much less than %.0f s, and the scheduler must still bind each pod. "+
		"The manager runs at its defaults (`--kube-api-qps=1000`, `--kube-api-burst=2000`, `--sliver-writers=256`), "+
		"so like the floor it is bound by the API server's write throughput, plus what comes before the first sliver "+
		"(the slice's namespace and RBAC) and its own reconcile and cache work, all on the same CPUs as the control plane; "+
		"its slivers carry `spec.nodeName`, so the scheduler is not on their path.\n",
		float64(r.nodes)/r.floor.created.Seconds(), r.nodes, float64(r.nodes-30)/20)
}

// publish writes a benchmark's section of the -bench-out file and logs it.
func publish(t *testing.T, heading, body string) {
	t.Helper()
	if err := writeSection(*benchOut, heading, body); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, body)
}

// writeSection writes body under heading in the file at path, replacing that
// section if present and keeping every other section.
func writeSection(path, heading, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	sections := splitSections(string(old))
	section := heading + "\n\n" + strings.TrimRight(body, "\n") + "\n"
	replaced := false
	for i, s := range sections {
		if strings.HasPrefix(s, heading+"\n") {
			sections[i], replaced = section, true
		}
	}
	if !replaced {
		sections = append(sections, section)
	}
	return os.WriteFile(path, []byte(docHeader+"\n"+strings.Join(sections, "\n")), 0o644)
}

// splitSections returns the "## " sections of a markdown document, each
// without trailing blank lines, dropping whatever comes before the first.
func splitSections(doc string) []string {
	var sections []string
	for _, line := range strings.SplitAfter(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			sections = append(sections, line)
		case len(sections) > 0:
			sections[len(sections)-1] += line
		}
	}
	for i := range sections {
		sections[i] = strings.TrimRight(sections[i], "\n") + "\n"
	}
	return sections
}
