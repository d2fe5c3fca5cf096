// Package memload runs memory stand-ins for slivers in memory cgroups: a
// copy of the test binary that allocates and touches what it is told, for
// the tests and benchmarks of the memory watchdog on the real kernel.
package memload

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Env, set to 1 in a process's environment, makes the test binary a
// stand-in (see ServeIfStandIn).
const Env = "PLANETKUBE_MEMLOAD_STANDIN"

// ServeIfStandIn makes this process a stand-in when Env says so: it reads
// lines on stdin, each a number of MiB to allocate and touch, answers "ok"
// after each, and exits at the end of its input. Call it first in TestMain,
// or first in the test that Start names.
func ServeIfStandIn() {
	if os.Getenv(Env) != "1" {
		return
	}
	var held [][]byte
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		mib, _ := strconv.Atoi(strings.TrimSpace(in.Text()))
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
		fmt.Println("ok")
	}
	_ = held
	os.Exit(0)
}

// StandIn is a running stand-in.
type StandIn struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Scanner
}

// Start runs a stand-in in the memory cgroup folder cgroup: the test
// binary again, running only the test named test ("": none, for a
// TestMain that calls ServeIfStandIn). It is killed when t ends, or by Stop.
func Start(t testing.TB, cgroup, test string) *StandIn {
	t.Helper()
	run := "^$"
	if test != "" {
		run = "^" + test + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+run)
	cmd.Env = append(os.Environ(), Env+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &StandIn{cmd: cmd, in: in.(*os.File), out: bufio.NewScanner(out)}
	t.Cleanup(s.Stop)
	// Charged to the cgroup from here on: it allocates only when told.
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	return s
}

// Alloc makes the stand-in allocate and touch mib MiB more, and waits until
// it has.
func (s *StandIn) Alloc(t testing.TB, mib int) {
	t.Helper()
	if _, err := fmt.Fprintln(s.in, mib); err != nil {
		t.Fatal(err)
	}
	if !s.out.Scan() || s.out.Text() != "ok" {
		t.Fatalf("The stand-in did not allocate %d MiB", mib)
	}
}

// Stop kills the stand-in, freeing its memory.
func (s *StandIn) Stop() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}
