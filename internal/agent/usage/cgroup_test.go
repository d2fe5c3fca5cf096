package usage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/planetkube/planetkube/internal/agent/podcgroup"
)

// writeFile writes a file, making its folder.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDetectAt: the v2 tree when it enables cpu, else the v1 hierarchy
// with cpuacct, whichever way it is mounted.
func TestDetectAt(t *testing.T) {
	cases := []struct {
		name  string
		files []string // relative to the root: cgroup.controllers holds "cpu memory"
		want  string   // relative Root; "!" for an error
		v2    bool
	}{
		{name: "v2", files: []string{"cgroup.controllers", "cpu.stat"}, want: ".", v2: true},
		{name: "v1 cpuacct apart (this machine's)", files: []string{"cpu/cpu.shares", "cpuacct/cpuacct.usage", "unified/cgroup.procs"}, want: "cpuacct"},
		{name: "v1 co-mounted", files: []string{"cpu,cpuacct/cpuacct.usage", "cpu,cpuacct/cpu.shares"}, want: "cpu,cpuacct"},
		{name: "v1 co-mounted the other way", files: []string{"cpuacct,cpu/cpuacct.usage"}, want: "cpuacct,cpu"},
		{name: "the hierarchy itself", files: []string{"cpuacct.usage"}, want: "."},
		{name: "none", files: []string{"memory/memory.usage_in_bytes"}, want: "!"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				content := "0\n"
				if filepath.Base(f) == "cgroup.controllers" {
					content = "cpuset cpu io memory pids\n"
				}
				writeFile(t, filepath.Join(root, f), content)
			}
			h, err := DetectAt(root)
			if tc.want == "!" {
				if err == nil {
					t.Fatalf("DetectAt = %+v, want an error", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tc.want); h.Root != want || h.V2 != tc.v2 {
				t.Fatalf("DetectAt = %+v, want {Root: %s V2: %v}", h, want, tc.v2)
			}
		})
	}
}

// TestUsageReadsBothVersions: cpuacct.usage is nanoseconds, cpu.stat's
// usage_usec microseconds; a malformed file is an error.
func TestUsageReadsBothVersions(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, file, content string
		v2                  bool
		want                uint64
		err                 bool
	}{
		{name: "v1", file: "cpuacct.usage", content: "1234567890\n", want: 1234567890},
		{name: "v2", file: "cpu.stat", content: "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n", v2: true, want: 1_500_000_000},
		{name: "v1 malformed", file: "cpuacct.usage", content: "lots\n", err: true},
		{name: "v2 without usage", file: "cpu.stat", content: "user_usec 1\n", v2: true, err: true},
		{name: "v2 malformed", file: "cpu.stat", content: "usage_usec -3\n", v2: true, err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, tc.file), tc.content)
			got, err := Hierarchy{Root: dir, V2: tc.v2}.Usage(dir)
			if tc.err != (err != nil) || got != tc.want {
				t.Fatalf("Usage = %d, %v; want %d (error: %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

// TestPodUsageFindsEitherDriversCgroup: a pod's cgroup is found under
// either kubelet cgroup driver's layout; a pod with none is
// podcgroup.ErrNotFound.
func TestPodUsageFindsEitherDriversCgroup(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-poda_b.slice", "cpuacct.usage"), "7\n")
	writeFile(t, filepath.Join(root, "kubepods", "podc-d", "cpuacct.usage"), "9\n")
	if err := os.MkdirAll(filepath.Join(root, "kubepods", "burstable", "podempty"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := Hierarchy{Root: root}
	if n, err := h.PodUsage(corev1.PodQOSBestEffort, "a-b"); err != nil || n != 7 {
		t.Errorf("systemd layout: %d, %v; want 7", n, err)
	}
	if n, err := h.PodUsage(corev1.PodQOSGuaranteed, "c-d"); err != nil || n != 9 {
		t.Errorf("cgroupfs layout: %d, %v; want 9", n, err)
	}
	if _, err := h.PodUsage(corev1.PodQOSBurstable, "gone"); !errors.Is(err, podcgroup.ErrNotFound) {
		t.Errorf("no cgroup: %v, want ErrNotFound", err)
	}
	if _, err := h.PodUsage(corev1.PodQOSBurstable, "empty"); !errors.Is(err, podcgroup.ErrNotFound) {
		t.Errorf("a cgroup without its file (being removed): %v, want ErrNotFound", err)
	}
}
