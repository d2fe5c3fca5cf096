package usage

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/planetkube/planetkube/internal/agent/podcgroup"
)

// Hierarchy is where the slivers' CPU time is read: a cgroup v1 hierarchy
// with the cpuacct controller (cpuacct.usage, nanoseconds) or the v2 tree
// (cpu.stat's usage_usec). Root is the hierarchy's folder joined with the
// kubelet's cgroupRoot: where kubepods is.
type Hierarchy struct {
	Root string
	V2   bool
}

// DetectAt returns the hierarchy at root, a host's cgroup folder (say
// /host/sys/fs/cgroup): the v2 tree itself when it enables cpu, else the v1
// cpuacct hierarchy at root/cpuacct, root/cpu,cpuacct, root/cpuacct,cpu or
// root.
func DetectAt(root string) (Hierarchy, error) {
	if podcgroup.V2Enables(root, "cpu") {
		return Hierarchy{Root: root, V2: true}, nil
	}
	for _, dir := range []string{filepath.Join(root, "cpuacct"), filepath.Join(root, "cpu,cpuacct"), filepath.Join(root, "cpuacct,cpu"), root} {
		if _, err := os.Stat(filepath.Join(dir, "cpuacct.usage")); err == nil {
			return Hierarchy{Root: dir}, nil
		}
	}
	return Hierarchy{}, fmt.Errorf("no cgroup hierarchy to read CPU time at %s (neither cgroup.controllers with cpu nor cpuacct.usage at cpuacct/, cpu,cpuacct/, cpuacct,cpu/ or itself)", root)
}

// PodUsage returns the CPU time, in nanoseconds, that a pod's cgroup counts
// since the cgroup was made; an error wrapping podcgroup.ErrNotFound when
// the cgroup is not there (not yet, or any more).
func (h Hierarchy) PodUsage(qos corev1.PodQOSClass, uid string) (uint64, error) {
	dir, err := podcgroup.Find(h.Root, qos, uid)
	if err != nil {
		return 0, err
	}
	n, err := h.Usage(dir)
	if errors.Is(err, os.ErrNotExist) {
		// Removed between finding and reading it.
		return 0, fmt.Errorf("%w: %v", podcgroup.ErrNotFound, err)
	}
	return n, err
}

// Usage returns the CPU time, in nanoseconds, that the cgroup folder dir
// counts.
func (h Hierarchy) Usage(dir string) (uint64, error) {
	if !h.V2 {
		file := filepath.Join(dir, "cpuacct.usage")
		b, err := os.ReadFile(file)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		return n, nil
	}
	file := filepath.Join(dir, "cpu.stat")
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != "usage_usec" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: usage_usec: %w", file, err)
		}
		if n > math.MaxUint64/1000 {
			return math.MaxUint64, nil
		}
		return n * 1000, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return 0, fmt.Errorf("%s: no usage_usec", file)
}
