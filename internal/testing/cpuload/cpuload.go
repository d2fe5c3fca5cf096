// Package cpuload runs CPU-bound stand-ins for slivers in cgroups and reads
// how much CPU they got, for the tests and benchmarks of CPU weights on the
// real kernel.
package cpuload

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Spin starts a busy loop pinned to CPU 0 in the cgroup folder dir (so that
// stand-ins compete for one CPU) and returns its pid; it is killed when the
// test ends.
func Spin(t testing.TB, dir string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	var cpus unix.CPUSet
	cpus.Set(0)
	if err := unix.SchedSetaffinity(pid, &cpus); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
	return pid
}

// Ticks is a process's user and system CPU time in clock ticks.
func Ticks(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) start after ") ".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}
