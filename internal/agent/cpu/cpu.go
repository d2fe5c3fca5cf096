// Package cpu keeps each sliver's CPU weight on its node: the node
// agent finds the sliver pod's cgroup (cgroupfs or systemd driver, cgroup v1
// cpu.shares or v2 cpu.weight, from the mounts) and writes the weight that
// its CPU request gives it, again every few seconds, because the kubelet and
// systemd rewrite cgroups. PlanetLab gave every sliver an equal share of the
// node's CPU (cpu_share 1) by the same kind of weight; PlanetKube's slivers
// request CPU in proportion to their slice's cpuShare, so the weight of the
// request is the slice's share.
package cpu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/planetkube/planetkube/internal/agent/podcgroup"
)

// Bounds of cpu.shares (v1) and cpu.weight (v2), as the kernel takes them.
const (
	MinShares, MaxShares = 2, 262144
	MinWeight, MaxWeight = 1, 10000
)

// MilliToShares is the kubelet's cpu.shares for a CPU request: 1024 per CPU,
// at least MinShares.
func MilliToShares(milli int64) uint64 {
	if milli <= 0 {
		return MinShares
	}
	return min(MaxShares, max(MinShares, uint64(milli)*1024/1000))
}

// SharesToWeight converts cpu.shares to cgroup v2's cpu.weight with the
// formula runc and the kubelet use now, which maps 2 → 1, 1024 → 100 and
// 262144 → 10000 along a curve (the older linear one gave 1024 → 39):
// weight = ceil(10^((l² + 125·l)/612 − 7/34)), l = log2(shares).
func SharesToWeight(shares uint64) uint64 {
	if shares <= MinShares {
		return MinWeight
	}
	if shares >= MaxShares {
		return MaxWeight
	}
	l := math.Log2(float64(shares))
	w := math.Ceil(math.Pow(10, (l*l+125*l)/612.0-7.0/34.0))
	return min(MaxWeight, max(MinWeight, uint64(w)))
}

// Hierarchy is where the cpu controller is: a cgroup v1 hierarchy (file
// cpu.shares) or the v2 tree (file cpu.weight).
type Hierarchy struct {
	Root string
	V2   bool
}

// File is the name of the weight file in this hierarchy.
func (h Hierarchy) File() string {
	if h.V2 {
		return "cpu.weight"
	}
	return "cpu.shares"
}

// Value is what the weight file holds for shares.
func (h Hierarchy) Value(shares uint64) uint64 {
	if h.V2 {
		return SharesToWeight(shares)
	}
	return min(MaxShares, max(MinShares, shares))
}

// FindHierarchy reads /proc/self/mountinfo (r) and returns the cgroup v1
// hierarchy that has the cpu controller or, when there is none, the cgroup2
// mount whose root enables cpu (hasCPU reads its cgroup.controllers; nil
// reads the file).
func FindHierarchy(r io.Reader, hasCPU func(root string) bool) (Hierarchy, error) {
	if hasCPU == nil {
		hasCPU = func(root string) bool { return podcgroup.V2Enables(root, "cpu") }
	}
	var v2 []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		mountpoint := unescape(f[4])
		switch g[0] {
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if opt == "cpu" {
					return Hierarchy{Root: mountpoint}, nil
				}
			}
		case "cgroup2":
			v2 = append(v2, mountpoint)
		}
	}
	if err := sc.Err(); err != nil {
		return Hierarchy{}, fmt.Errorf("reading mountinfo: %w", err)
	}
	for _, m := range v2 {
		if hasCPU(m) {
			return Hierarchy{Root: m, V2: true}, nil
		}
	}
	return Hierarchy{}, errors.New("no cgroup hierarchy with the cpu controller is mounted (neither a v1 cpu hierarchy nor a cgroup2 tree with cpu enabled)")
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DetectAt returns the cpu hierarchy at root, a host's cgroup folder mounted
// into the agent (say /host/sys/fs/cgroup): the v2 tree itself when it
// enables cpu, else the v1 cpu hierarchy at root, root/cpu or
// root/cpu,cpuacct.
func DetectAt(root string) (Hierarchy, error) {
	if podcgroup.V2Enables(root, "cpu") {
		return Hierarchy{Root: root, V2: true}, nil
	}
	for _, dir := range []string{root, filepath.Join(root, "cpu"), filepath.Join(root, "cpu,cpuacct")} {
		if _, err := os.Stat(filepath.Join(dir, "cpu.shares")); err == nil {
			return Hierarchy{Root: dir}, nil
		}
	}
	return Hierarchy{}, fmt.Errorf("no cpu cgroup hierarchy at %s (neither cgroup.controllers with cpu nor cpu.shares at it, cpu/ or cpu,cpuacct/)", root)
}
