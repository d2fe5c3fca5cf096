// Package memory is the node agent's memory watchdog (PlanetLab's
// pl_mom): every interval it reads the node's memory and each sliver pod's
// working set from its memory cgroup, asks internal/agent/memory/policy what to
// do, and acts: at the warning mark an event on the Node and a metric; at
// the reset mark it deletes the pod of the sliver using the most memory
// (the Slice controller makes it again) and says so in an event on its
// Slice. It never reboots anything.
//
// What "the node's memory" is depends on the Source: the whole machine's
// (/proc/meminfo, pl_mom's), or the pods' share of it (the working set of
// the kubelet's kubepods cgroup against that cgroup's limit, which the
// kubelet sets to the node's allocatable memory when it enforces
// allocatable on pods).
package memory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/memory/policy"
	"github.com/planetkube/planetkube/internal/agent/podcgroup"
	"github.com/planetkube/planetkube/internal/agent/sliver"
)

// Reasons of the guard's events.
const (
	ReasonMemoryPressure = "MemoryPressure"
	ReasonSliverReset    = "SliverReset"
)

// Source is what the watchdog measures as the node's memory.
type Source string

const (
	// SourceNode is the whole node: /proc/meminfo's MemTotal and
	// MemAvailable (pl_mom's reading; the default).
	SourceNode Source = "node"
	// SourcePods is the pods' share: the working set of the kubelet's
	// kubepods cgroup against its memory limit (the node's allocatable
	// when the kubelet's enforceNodeAllocatable includes pods), so that
	// what the system and other daemons use does not count against the
	// slivers, and the mark is reached before the kubelet evicts or the
	// kernel kills in that cgroup.
	SourcePods Source = "pods"
)

// ParseSource parses a --memory-source value.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case SourceNode, SourcePods:
		return Source(s), nil
	}
	return "", fmt.Errorf("memory source %q: want %s or %s", s, SourceNode, SourcePods)
}

// Hierarchy is where the memory controller is: a cgroup v1 hierarchy
// (memory.usage_in_bytes) or the v2 tree (memory.current).
type Hierarchy struct {
	Root string
	V2   bool
}

// DetectAt returns the memory hierarchy at root, a host's cgroup folder
// mounted into the agent: the v2 tree when it enables memory, else the v1
// hierarchy at root or root/memory.
func DetectAt(root string) (Hierarchy, error) {
	if podcgroup.V2Enables(root, "memory") {
		return Hierarchy{Root: root, V2: true}, nil
	}
	for _, dir := range []string{root, filepath.Join(root, "memory")} {
		if _, err := os.Stat(filepath.Join(dir, "memory.usage_in_bytes")); err == nil {
			return Hierarchy{Root: dir}, nil
		}
	}
	return Hierarchy{}, fmt.Errorf("no memory cgroup hierarchy at %s (neither cgroup.controllers with memory nor memory.usage_in_bytes at it or memory/)", root)
}

// WorkingSet is a cgroup's memory in use less its inactive file cache, as
// the kubelet counts a working set: what a reset would free.
func (h Hierarchy) WorkingSet(dir string) (uint64, error) {
	usageFile, inactiveKey := "memory.usage_in_bytes", "total_inactive_file"
	if h.V2 {
		usageFile, inactiveKey = "memory.current", "inactive_file"
	}
	raw, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return 0, err
	}
	usage, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(dir, usageFile), err)
	}
	f, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return usage, nil //nolint:nilerr // no stat: the usage is the best there is
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == inactiveKey {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && n < usage {
				return usage - n, nil
			}
		}
	}
	return usage, nil
}

// KubepodsDir returns the kubelet's kubepods cgroup under root (a
// hierarchy's folder joined with the kubelet's cgroupRoot): kubepods.slice
// (systemd driver) or kubepods (cgroupfs).
func KubepodsDir(root string) (string, error) {
	for _, name := range []string{"kubepods.slice", "kubepods"} {
		dir := filepath.Join(root, name)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no kubepods cgroup (kubepods.slice or kubepods) under %s: is the kubelet's cgroupRoot --kubelet-cgroup-root, and cgroupsPerQOS on?", root)
}

// v1Unlimited is cgroup v1's memory.limit_in_bytes with no limit set
// (PAGE_COUNTER_MAX pages of 4 KiB); larger page sizes give other values,
// all above any machine's memory.
const v1Unlimited = 1<<63 - 4096

// Limit returns a cgroup's memory limit (memory.limit_in_bytes on v1,
// memory.max on v2); ok is false when it has none.
func (h Hierarchy) Limit(dir string) (limit uint64, ok bool, err error) {
	file := "memory.limit_in_bytes"
	if h.V2 {
		file = "memory.max"
	}
	raw, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, false, err
	}
	v := strings.TrimSpace(string(raw))
	if h.V2 && v == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", filepath.Join(dir, file), err)
	}
	if !h.V2 && n >= v1Unlimited {
		return 0, false, nil
	}
	return n, true, nil
}

// PodsMemInfo reads the pods' share of the node as a MemInfo: Total is the
// limit of the kubepods cgroup under h.Root, Available that less the
// cgroup's working set. A limit above the node's memory, or none (the
// kubelet does not enforce allocatable on pods), is the node's MemTotal:
// the pods may then use the whole node. node reads the node's memory.
func (h Hierarchy) PodsMemInfo(node func() (policy.MemInfo, error)) (policy.MemInfo, error) {
	dir, err := KubepodsDir(h.Root)
	if err != nil {
		return policy.MemInfo{}, err
	}
	limit, limited, err := h.Limit(dir)
	if err != nil {
		return policy.MemInfo{}, err
	}
	total := limit
	if n, err := node(); err != nil {
		return policy.MemInfo{}, err
	} else if !limited || limit > n.Total {
		total = n.Total
	}
	if total == 0 {
		return policy.MemInfo{}, fmt.Errorf("%s has a memory limit of 0", dir)
	}
	used, err := h.WorkingSet(dir)
	if err != nil {
		return policy.MemInfo{}, err
	}
	return policy.MemInfo{Total: total, Available: total - min(used, total)}, nil
}

// Metrics report the node's memory and the guard's actions.
type Metrics struct {
	InUse  prometheus.Gauge
	Some10 prometheus.Gauge
	Resets prometheus.Counter
}

// NewMetrics makes the metrics (the caller registers them).
func NewMetrics() Metrics {
	return Metrics{
		InUse:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "planetkube_agent_memory_in_use_ratio", Help: "Memory in use as the watchdog last read it: the node's (1 - MemAvailable/MemTotal), or with --memory-source=pods the pods' (the kubepods cgroup's working set over its limit)."}),
		Some10: prometheus.NewGauge(prometheus.GaugeOpts{Name: "planetkube_agent_memory_pressure_some_avg10", Help: "Memory pressure stall (PSI some, avg10, percent) of the node."}),
		Resets: prometheus.NewCounter(prometheus.CounterOpts{Name: "planetkube_agent_sliver_resets_total", Help: "Slivers reset (their pod deleted) because the node's memory passed the reset mark."}),
	}
}

// Guard watches one node.
type Guard struct {
	Watchdog  *policy.Watchdog
	Hierarchy Hierarchy
	// Node is this node's name.
	Node string
	// Pods returns the node's sliver pods.
	Pods func() []*corev1.Pod
	// Source is what MemInfo reads, for the events' words (default
	// SourceNode).
	Source Source
	// MemInfo reads the node's memory (default /proc/meminfo; with
	// SourcePods, Hierarchy.PodsMemInfo); Pressure its PSI (default
	// /proc/pressure/memory; missing is not an error).
	MemInfo  func() (policy.MemInfo, error)
	Pressure func() (policy.Pressure, error)
	// Client deletes the pod of a sliver to reset; Recorder writes events.
	Client   client.Client
	Recorder events.EventRecorder
	Metrics  Metrics
	// Interval between checks (default the watchdog's).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NeedLeaderElection: every node's agent watches its own node.
func (g *Guard) NeedLeaderElection() bool { return false }

// Start checks at once and then every interval until ctx ends.
func (g *Guard) Start(ctx context.Context) error {
	every := g.Interval
	if every <= 0 {
		every = g.Watchdog.Interval
	}
	log := ctrl.LoggerFrom(ctx).WithName("memguard")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := g.Check(ctx); err != nil {
			log.Error(err, "Checking the node's memory")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check reads the node, decides and acts; it returns the decision.
func (g *Guard) Check(ctx context.Context) (policy.Decision, error) {
	now := time.Now()
	if g.Now != nil {
		now = g.Now()
	}
	mem, err := g.memInfo()
	if err != nil {
		return policy.Decision{}, err
	}
	if p, err := g.pressure(); err == nil && g.Metrics.Some10 != nil {
		g.Metrics.Some10.Set(p.Some.Avg10)
	}
	pods := map[string]*corev1.Pod{}
	var slivers []policy.Sliver
	for _, pod := range g.Pods() {
		if pod.Status.Phase != corev1.PodRunning || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		full := pod.Annotations[planetv1.AnnotationSliceFullName]
		dir, err := podcgroup.Find(g.Hierarchy.Root, pod.Status.QOSClass, string(pod.UID))
		if err != nil || full == "" {
			continue // not started yet, gone, or not a sliver
		}
		bytes, err := g.Hierarchy.WorkingSet(dir)
		if err != nil {
			continue
		}
		pods[pod.Namespace+"/"+pod.Name] = pod
		slivers = append(slivers, policy.Sliver{Slice: full, Namespace: pod.Namespace, Pod: pod.Name, Bytes: bytes})
	}
	d := g.Watchdog.Check(mem, slivers, now)
	if g.Metrics.InUse != nil {
		g.Metrics.InUse.Set(d.InUse)
	}
	log := ctrl.LoggerFrom(ctx).WithName("memguard")
	switch {
	case d.Reset != nil:
		return d, g.reset(ctx, pods[d.Reset.Namespace+"/"+d.Reset.Pod], *d.Reset, d.InUse)
	case d.Level >= policy.Warn && d.Notify:
		log.Info("Node memory is high", "inUse", d.InUse, "reason", d.Reason)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: g.Node}}
		g.Recorder.Eventf(node, nil, corev1.EventTypeWarning, ReasonMemoryPressure, "Watch",
			"%.0f%% of %s is in use: %s", 100*d.InUse, g.what(), d.Reason)
	}
	return d, nil
}

// reset deletes the sliver's pod (the Slice controller makes it again) and
// says so on its Slice.
func (g *Guard) reset(ctx context.Context, pod *corev1.Pod, s policy.Sliver, inUse float64) error {
	if pod == nil {
		return errors.New("the sliver to reset is no longer listed")
	}
	uid := pod.UID
	if err := g.Client.Delete(ctx, pod, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("resetting sliver %s/%s: %w", s.Namespace, s.Pod, err)
	}
	if g.Metrics.Resets != nil {
		g.Metrics.Resets.Inc()
	}
	ctrl.LoggerFrom(ctx).WithName("memguard").Info("Reset the sliver using the most memory", "slice", s.Slice, "pod", s.Namespace+"/"+s.Pod, "bytes", s.Bytes, "inUse", inUse)
	if slice := sliver.SliceRef(pod); slice != nil {
		if g.Source == SourcePods {
			g.Recorder.Eventf(slice, pod, corev1.EventTypeWarning, ReasonSliverReset, "Reset",
				"node %s reached %.0f%% of %s in use; its sliver %s, using %d MiB (the most), was reset", g.Node, 100*inUse, g.what(), pod.Name, s.Bytes>>20)
		} else {
			g.Recorder.Eventf(slice, pod, corev1.EventTypeWarning, ReasonSliverReset, "Reset",
				"node %s reached %.0f%% memory in use; its sliver %s, using %d MiB (the most), was reset", g.Node, 100*inUse, pod.Name, s.Bytes>>20)
		}
	}
	return nil
}

// what names the memory the watchdog measures, in events.
func (g *Guard) what() string {
	if g.Source == SourcePods {
		return "the memory for pods (the kubepods cgroup's limit)"
	}
	return "the node's memory"
}

func (g *Guard) memInfo() (policy.MemInfo, error) {
	if g.MemInfo != nil {
		return g.MemInfo()
	}
	return NodeMemInfo()
}

// NodeMemInfo reads the node's memory from /proc/meminfo.
func NodeMemInfo() (policy.MemInfo, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return policy.MemInfo{}, err
	}
	defer f.Close()
	return policy.ParseMemInfo(f)
}

func (g *Guard) pressure() (policy.Pressure, error) {
	if g.Pressure != nil {
		return g.Pressure()
	}
	f, err := os.Open("/proc/pressure/memory")
	if err != nil {
		return policy.Pressure{}, err
	}
	defer f.Close()
	return policy.ParsePressure(f)
}
