// Package usage is the node agent's side of "see the use": it reads the
// CPU time of the node's sliver pods from their cgroups every interval,
// counts the flows the agent records per slice, takes each slice's bytes
// of the day from the bandwidth budget, and serves the totals per slice as
// a usage.Report (package internal/usage) on the agent's API port, from the
// last reading.
//
// Tally is the pure part, folding readings into totals; Collector reads
// the cgroups and serves.
package usage

import (
	"math"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/planetkube/planetkube/internal/agent/sliver"
	"github.com/planetkube/planetkube/internal/flow"
	usageapi "github.com/planetkube/planetkube/internal/usage"
)

// Sliver is what the tally needs of a sliver pod on the node.
type Sliver struct {
	// UID is the pod's UID: its cgroup's name.
	UID string
	// QoS is the pod's QoS class: where its cgroup is.
	QoS corev1.PodQOSClass
	// Slice is its slice's full name; Namespace and Name are the Slice
	// object's.
	Slice, Namespace, Name string
	// Created is when the pod was made. A pod made before the tally's
	// Since (or of unknown age) counts its CPU time from its first
	// reading; a later one from its cgroup's start, in full.
	Created time.Time
	// Active says it counts as a sliver on the node now: it has not ended.
	Active bool
}

// SliverOf returns what the tally needs of a pod whose slice's full name
// is full (the agent's PodTracker names it), and false for a pod that is
// not a sliver.
func SliverOf(pod *corev1.Pod, full string) (Sliver, bool) {
	ref := sliver.SliceRef(pod)
	if full == "" || ref == nil {
		return Sliver{}, false
	}
	return Sliver{
		UID: string(pod.UID), QoS: pod.Status.QOSClass,
		Slice: full, Namespace: ref.Namespace, Name: ref.Name,
		Created: pod.CreationTimestamp.Time,
		Active:  pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed,
	}, true
}

// Pod names a pod whose cgroup a pass reads.
type Pod struct {
	UID string
	QoS corev1.PodQOSClass
}

// Tally keeps, per slice, the CPU time its slivers used and the flows it
// recorded since Since. A pod's CPU counter is remembered by UID while the
// pod is known; once the pod is deleted, the next Fold adds what it used to
// its slice's total and forgets the UID. A counter below the last reading
// (its cgroup made again under the same UID) counts from zero, so a total
// never goes down. Slices are kept until the agent restarts. A Tally is not
// safe for concurrent use; the zero value with Since set is ready.
type Tally struct {
	// Since is when counting started (the agent's start).
	Since time.Time

	pods   map[string]*podState
	slices map[string]*sliceState
}

// podState is what the tally knows of a pod.
type podState struct {
	Sliver
	// gone: the pod was deleted; the next Fold folds and forgets it.
	gone bool
	// read: last holds a reading.
	read bool
	// last is the last reading of its counter, ns.
	last uint64
	// used is the CPU time counted for it, ns.
	used uint64
}

// sliceState is what the tally keeps of a slice.
type sliceState struct {
	namespace, name string
	// cpu is the CPU time of its pods that are gone, ns.
	cpu uint64
	// flows is the flows it recorded.
	flows int64
}

func (t *Tally) init() {
	if t.pods == nil {
		t.pods, t.slices = map[string]*podState{}, map[string]*sliceState{}
	}
}

// slice returns the state of a slice, made if needed.
func (t *Tally) slice(name string) *sliceState {
	t.init()
	s := t.slices[name]
	if s == nil {
		s = &sliceState{}
		t.slices[name] = s
	}
	return s
}

// Update records a sliver pod that was added or changed. A pod keeps the
// slice it was first seen with.
func (t *Tally) Update(s Sliver) {
	t.init()
	if p, ok := t.pods[s.UID]; ok {
		p.Active, p.QoS = s.Active, s.QoS
		return
	}
	t.pods[s.UID] = &podState{Sliver: s}
	st := t.slice(s.Slice)
	if st.namespace == "" {
		st.namespace, st.name = s.Namespace, s.Name
	}
}

// Delete records that a pod is gone: its cgroup is read once more at the
// next Fold if it is still there, and then its use is folded into its
// slice's total and its UID forgotten.
func (t *Tally) Delete(uid string) {
	if p, ok := t.pods[uid]; ok {
		p.gone, p.Active = true, false
	}
}

// AddFlows counts n flows recorded for a slice (its full name).
func (t *Tally) AddFlows(slice string, n int64) {
	if slice == "" || n <= 0 {
		return
	}
	s := t.slice(slice)
	s.flows = satAdd(s.flows, n)
}

// Pods lists the pods whose cgroups the next pass reads: every pod known,
// deleted ones included, sorted by UID.
func (t *Tally) Pods() []Pod {
	out := make([]Pod, 0, len(t.pods))
	for uid, p := range t.pods {
		out = append(out, Pod{UID: uid, QoS: p.QoS})
	}
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// Tracked is how many pods' counters the tally remembers.
func (t *Tally) Tracked() int { return len(t.pods) }

// Fold folds one pass's readings (nanoseconds, by pod UID; a pod whose
// cgroup was not read has none and keeps what it had) into the pods'
// counts, then folds the deleted pods into their slices and forgets them.
func (t *Tally) Fold(readings map[string]uint64) {
	for uid, p := range t.pods {
		if r, ok := readings[uid]; ok {
			switch {
			case !p.read && !p.Created.After(t.Since):
				// It ran before counting started: only what it uses from
				// now on counts.
			case !p.read || r < p.last:
				// A pod made since counts its whole counter, and so does
				// a cgroup made again (its counter restarted from zero).
				p.used = satAddU(p.used, r)
			default:
				p.used = satAddU(p.used, r-p.last)
			}
			p.last, p.read = r, true
		}
		if p.gone {
			s := t.slice(p.Slice)
			s.cpu = satAddU(s.cpu, p.used)
			delete(t.pods, uid)
		}
	}
}

// Slices returns the totals of every slice that had a sliver pod on the
// node since Since, sorted by full name; the bytes of the day are left
// zero. A slice known only by its flows (its pod never seen) is left out:
// its Slice object is not known.
func (t *Tally) Slices() []usageapi.Slice {
	type sum struct {
		cpu     uint64
		slivers int
	}
	sums := map[string]*sum{}
	for _, p := range t.pods {
		s := sums[p.Slice]
		if s == nil {
			s = &sum{}
			sums[p.Slice] = s
		}
		s.cpu = satAddU(s.cpu, p.used)
		if p.Active {
			s.slivers++
		}
	}
	out := make([]usageapi.Slice, 0, len(t.slices))
	for name, st := range t.slices {
		if st.namespace == "" {
			continue
		}
		cpu, slivers := st.cpu, 0
		if s := sums[name]; s != nil {
			cpu, slivers = satAddU(cpu, s.cpu), s.slivers
		}
		out = append(out, usageapi.Slice{
			Slice: name, Namespace: st.namespace, Name: st.name,
			Slivers: slivers, CPUSeconds: float64(cpu) / 1e9, Flows: st.flows,
		})
	}
	slices.SortFunc(out, func(a, b usageapi.Slice) int { return strings.Compare(a.Slice, b.Slice) })
	return out
}

// FinalFlows counts, per slice, the records of a batch that end a flow
// (End set: a flow seen ending, or given up as lost): each flow counts
// once, though an open one is also stored as snapshots. Node traffic (no
// slice) is left out.
func FinalFlows(recs []flow.Record) map[string]int64 {
	var out map[string]int64
	for i := range recs {
		if recs[i].Slice == "" || recs[i].End.IsZero() {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[recs[i].Slice]++
	}
	return out
}

// satAddU adds without wrapping.
func satAddU(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// satAdd adds non-negative counts without wrapping.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
