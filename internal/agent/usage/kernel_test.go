package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/testing/cpuload"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// requireCPUAccounting returns the host's hierarchy to read CPU time in
// (v1 cpuacct, or v2), or skips (fails with PLANETKUBE_REQUIRE_ROOT=1)
// when the test is not root or there is none.
func requireCPUAccounting(t *testing.T) Hierarchy {
	t.Helper()
	h, err := DetectAt("/sys/fs/cgroup")
	msg := ""
	switch {
	case os.Geteuid() != 0:
		msg = "Test needs root (it makes cgroups)"
	case err != nil:
		msg = "Test needs a cgroup hierarchy with CPU accounting: " + err.Error()
	}
	skiplog.UnlessRoot(t, msg)
	return h
}

// TestCPUSecondsOfARealCgroup: a CPU burner in a pod cgroup made as the
// kubelet's cgroupfs driver makes it, under the host's real hierarchy. The
// reported CPU seconds match the burner's own CPU time and grow; when the
// cgroup goes they stay; a cgroup made again under the same UID counts from
// zero on top (never going down); when the pod is deleted its slice keeps
// it all and the UID is forgotten.
func TestCPUSecondsOfARealCgroup(t *testing.T) {
	host := requireCPUAccounting(t)
	root := filepath.Join(host.Root, fmt.Sprintf("planetkube-usage-test-%d", os.Getpid()))
	const uid = "0b7e6c4e-usage-test"
	dir := filepath.Join(root, "kubepods", "burstable", "pod"+uid)
	mkdir := func() {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir()
	t.Cleanup(func() { // after the burners are killed (cleanups run last first)
		for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir)), root} {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Logf("Removing the test cgroup %s: %v", d, err)
			}
		}
	})

	c := NewCollector("node1", Hierarchy{Root: root, V2: host.V2}, time.Now())
	c.Update(sliverAt("x", codeen, 0)) // another pod of the slice, never read: no cgroup
	s := sliverAt(uid, codeen, 0)
	s.Created = time.Now() // made since the collector started: counted in full
	c.Update(s)

	last := 0.0
	// read makes a report and returns the slice's CPU seconds, failing if
	// they went down.
	read := func() float64 {
		t.Helper()
		if err := c.Once(); err != nil {
			t.Fatal(err)
		}
		r := c.Report()
		if len(r.Slices) != 1 || r.Slices[0].Slice != codeen {
			t.Fatalf("report %+v, want the one slice %s", r, codeen)
		}
		cpu := r.Slices[0].CPUSeconds
		if cpu < last {
			t.Fatalf("CPU seconds went down: %.3f after %.3f", cpu, last)
		}
		last = cpu
		return cpu
	}
	atLeast := func(what string, want float64) {
		t.Helper()
		poll.Until(t, what, 20*time.Second, 100*time.Millisecond, func() error {
			if got := read(); got < want {
				return fmt.Errorf("%.3f CPU seconds, want at least %.3f", got, want)
			}
			return nil
		})
	}
	// gone kills a burner and removes the pod's cgroup once it is empty.
	gone := func(pid int) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "the pod cgroup removed", 10*time.Second, 20*time.Millisecond, func() error { return os.Remove(dir) })
	}

	pid := cpuload.Spin(t, dir)
	atLeast("the burner's CPU time counted", 0.5)
	// The cgroup counts the burner's CPU time: the reading is what the
	// process itself used (in clock ticks, 100 a second) at about the
	// same moment.
	cpu, ticks := read(), cpuload.Ticks(t, pid)
	if diff := math.Abs(cpu - float64(ticks)/100); diff > 0.3 {
		t.Fatalf("%.3f CPU seconds read from the cgroup, the burner used %.2f s: %.3f s apart", cpu, float64(ticks)/100, diff)
	}
	atLeast("the CPU seconds growing", cpu+0.5)

	gone(pid)
	before := read()
	for range 3 {
		if got := read(); got != before {
			t.Fatalf("the cgroup gone: %.3f CPU seconds, want the %.3f read before", got, before)
		}
	}

	mkdir() // the same UID's cgroup made again: its counter starts from zero
	pid = cpuload.Spin(t, dir)
	atLeast("the new cgroup's CPU time counted on top", before+0.3)
	gone(pid)
	final := read()
	c.Delete(uid)
	c.Delete("x")
	if got := read(); got != final {
		t.Fatalf("the pod deleted: %.3f CPU seconds, want the %.3f it used", got, final)
	}
	r := c.Report()
	if r.Slices[0].Slivers != 0 || c.Tracked() != 0 {
		t.Fatalf("the pods deleted: %d slivers, %d pods remembered; want none", r.Slices[0].Slivers, c.Tracked())
	}
	t.Logf("CPU seconds: %.3f from the first cgroup, %.3f in all", before, final)
}
