package emulator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long Process.Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 10 * time.Second

// Process is a child process started by the emulator, in a process group of its
// own, killed by the kernel if the process that started it dies.
type Process struct {
	// Name says what the process is, e.g. "kube-apiserver" or "manager-1".
	Name string
	// LogPath is the file that receives the process's stdout and stderr.
	LogPath string

	binary    string
	args, env []string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error // the result of cmd.Wait, set before done is closed
}

// startProcess runs binary with args and env appended to the environment of
// this process, its output going to logPath.
func startProcess(name, logPath, binary string, args, env []string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, binary, err)
	}
	p := &Process{Name: name, LogPath: logPath, binary: binary, args: args, env: env, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the process's exit error once it has exited (nil for exit code 0
// or while it runs).
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// State says how the process exited ("exit status 1", "signal: killed"), or
// "running".
func (p *Process) State() string {
	if !p.Exited() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Process) Kill() error {
	p.signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Stop sends SIGTERM to the process group, waits for the process to exit and
// kills the group if it has not exited after 10 s.
func (p *Process) Stop() error {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		_ = p.Kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM, killed", p.Name, stopGrace)
	}
}

// signal sends sig to the process group (the process leads its own group)
// unless the process has been reaped, when its id may belong to another.
func (p *Process) signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), sig)
	}
}

// PeakRSSBytes returns the peak resident set size of the process: VmHWM from
// /proc while it runs, the rusage maximum once it has exited.
func (p *Process) PeakRSSBytes() (int64, error) {
	if p.Exited() {
		ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return 0, errors.New("no rusage for exited process")
		}
		return ru.Maxrss * 1024, nil // Linux reports kilobytes
	}
	kb, err := procStatusKB(p.Pid(), "VmHWM")
	if err != nil && p.Exited() { // exited while reading
		return p.PeakRSSBytes()
	}
	return kb * 1024, err
}

// RSSBytes returns the process's resident set size now (VmRSS).
func (p *Process) RSSBytes() (int64, error) {
	kb, err := procStatusKB(p.Pid(), "VmRSS")
	return kb * 1024, err
}

// AnonRSSBytes returns the process's anonymous resident memory now
// (RssAnon: its heap, stacks and runtime, not the pages of its binary,
// which the kernel can drop and read again).
func (p *Process) AnonRSSBytes() (int64, error) {
	kb, err := procStatusKB(p.Pid(), "RssAnon")
	return kb * 1024, err
}

// procStatusKB reads a "<field>: N kB" line of /proc/<pid>/status.
func procStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %s of pid %d: %w", field, pid, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s in status of pid %d", field, pid)
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errPortInUse marks a process that exited because its port was taken between
// freePort and its start (another test suite starting at the same moment).
var errPortInUse = errors.New("port in use")

// exitError describes a process that exited when it should not have.
func (p *Process) exitError() error {
	tail := p.LogTail(20)
	err := fmt.Errorf("%s exited (%s); last lines of %s:\n%s", p.Name, p.State(), p.LogPath, tail)
	if strings.Contains(tail, "address already in use") {
		return errors.Join(err, errPortInUse)
	}
	return err
}

// CPUTime returns the CPU time (user + system) the process has used so far,
// read from /proc while it runs.
func (p *Process) CPUTime() (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Pid()), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading stat of pid %d: %w", p.Pid(), err)
	}
	// The command may hold spaces: the fields after it start past ") ".
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+2:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short stat of pid %d", p.Pid())
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime (fields 14 and 15)
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing stat of pid %d: %w", p.Pid(), err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond, nil
}

// StartProcess runs binary with args, env appended to this process's
// environment, its output appended to logPath, as the emulator runs its
// own components (for the real nodes of internal/testing/realnode).
func StartProcess(name, logPath, binary string, args, env []string) (*Process, error) {
	return startProcess(name, logPath, binary, args, env)
}

// Again starts the same command as p once more, with the same log.
func (p *Process) Again() (*Process, error) {
	return startProcess(p.Name, p.LogPath, p.binary, p.args, p.env)
}
