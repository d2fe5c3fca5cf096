package usage

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/naming"
	usageapi "github.com/planetkube/planetkube/internal/usage"
)

var since = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

const (
	codeen = "plc.princeton.codeen"
	coral  = "plc.nyu.coral"
)

// sliverAt is a sliver of a slice (codeen or coral) made at an offset from
// since (negative: before the agent started).
func sliverAt(uid, slice string, made time.Duration) Sliver {
	s := Sliver{UID: uid, QoS: corev1.PodQOSBurstable, Slice: slice, Created: since.Add(made), Active: true}
	_, s.Namespace, s.Name, _ = naming.ParseFullName(slice)
	return s
}

// step is one thing that happens to a tally.
type step struct {
	update *Sliver
	delete string
	flows  map[string]int64
	fold   map[string]uint64 // readings in ns
	noFold bool              // with fold nil: no Fold call
}

func upd(s Sliver) step             { return step{update: &s, noFold: true} }
func del(uid string) step           { return step{delete: uid, noFold: true} }
func read(r map[string]uint64) step { return step{fold: r} }
func flows(f map[string]int64) step { return step{flows: f, noFold: true} }
func ended(s Sliver) Sliver         { s.Active = false; return s }
func sec(n float64) uint64          { return uint64(n * 1e9) }
func want(slice string, slivers int, cpu float64, flows int64) usageapi.Slice {
	_, site, name, _ := naming.ParseFullName(slice)
	return usageapi.Slice{Slice: slice, Namespace: site, Name: name, Slivers: slivers, CPUSeconds: cpu, Flows: flows}
}

// TestTallyFolds: readings of pods' CPU counters fold into per-slice totals
// since the agent started: a pod from before counts from its first reading,
// a later one in full; a sliver gone keeps what it used and its UID is
// forgotten; a counter that goes back (its cgroup made again) never takes
// the total down; a pod not read keeps what it had.
func TestTallyFolds(t *testing.T) {
	cases := []struct {
		name    string
		steps   []step
		want    []usageapi.Slice
		tracked int
	}{
		{
			name:    "a pod from before the start counts from its first reading",
			steps:   []step{upd(sliverAt("a", codeen, -time.Hour)), read(map[string]uint64{"a": sec(100)}), read(map[string]uint64{"a": sec(102.5)})},
			want:    []usageapi.Slice{want(codeen, 1, 2.5, 0)},
			tracked: 1,
		},
		{
			name:    "a pod of unknown age counts from its first reading",
			steps:   []step{upd(Sliver{UID: "a", Slice: codeen, Namespace: "princeton", Name: "codeen", Active: true}), read(map[string]uint64{"a": sec(100)}), read(map[string]uint64{"a": sec(101)})},
			want:    []usageapi.Slice{want(codeen, 1, 1, 0)},
			tracked: 1,
		},
		{
			name:    "a pod made since the start counts in full",
			steps:   []step{upd(sliverAt("a", codeen, time.Minute)), read(map[string]uint64{"a": sec(3)}), read(map[string]uint64{"a": sec(5)})},
			want:    []usageapi.Slice{want(codeen, 1, 5, 0)},
			tracked: 1,
		},
		{
			name: "slivers of one slice add up, slices apart, sorted",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), upd(sliverAt("b", codeen, time.Minute)), upd(sliverAt("c", coral, time.Minute)),
				read(map[string]uint64{"a": sec(1), "b": sec(2), "c": sec(4)}),
			},
			want:    []usageapi.Slice{want(coral, 1, 4, 0), want(codeen, 2, 3, 0)},
			tracked: 3,
		},
		{
			name: "a sliver gone keeps what it used, read once more, and its UID is forgotten",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), upd(sliverAt("b", codeen, time.Minute)),
				read(map[string]uint64{"a": sec(1), "b": sec(2)}),
				del("a"),
				read(map[string]uint64{"a": sec(1.5), "b": sec(3)}),
				read(map[string]uint64{"b": sec(4)}),
			},
			want:    []usageapi.Slice{want(codeen, 1, 5.5, 0)},
			tracked: 1,
		},
		{
			name: "a slice whose slivers are all gone stays, with none now",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), read(map[string]uint64{"a": sec(7)}),
				del("a"), read(nil),
			},
			want:    []usageapi.Slice{want(codeen, 0, 7, 0)},
			tracked: 0,
		},
		{
			name: "a gone pod whose cgroup is gone too keeps its last reading",
			steps: []step{
				upd(sliverAt("a", codeen, -time.Minute)), read(map[string]uint64{"a": sec(10)}), read(map[string]uint64{"a": sec(12)}),
				read(nil), del("a"), read(nil), read(nil),
			},
			want:    []usageapi.Slice{want(codeen, 0, 2, 0)},
			tracked: 0,
		},
		{
			name: "a counter that goes back counts from zero: the total never goes down",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)),
				read(map[string]uint64{"a": sec(10)}),
				read(map[string]uint64{"a": sec(1)}), // the cgroup made again
				read(map[string]uint64{"a": sec(3)}),
			},
			want:    []usageapi.Slice{want(codeen, 1, 13, 0)},
			tracked: 1,
		},
		{
			name: "a pod from before whose counter goes back counts the new one from zero",
			steps: []step{
				upd(sliverAt("a", codeen, -time.Hour)),
				read(map[string]uint64{"a": sec(1000)}), read(map[string]uint64{"a": sec(1001)}),
				read(map[string]uint64{"a": sec(2)}),
			},
			want:    []usageapi.Slice{want(codeen, 1, 3, 0)},
			tracked: 1,
		},
		{
			name: "a pod not read keeps what it had",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), read(map[string]uint64{"a": sec(4)}), read(nil), read(map[string]uint64{}),
			},
			want:    []usageapi.Slice{want(codeen, 1, 4, 0)},
			tracked: 1,
		},
		{
			name: "an ended sliver is not one now but its use counts",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), read(map[string]uint64{"a": sec(4)}),
				upd(ended(sliverAt("a", codeen, time.Minute))), read(nil),
			},
			want:    []usageapi.Slice{want(codeen, 0, 4, 0)},
			tracked: 1,
		},
		{
			name: "a pod keeps the slice it was first seen with",
			steps: []step{
				upd(sliverAt("a", codeen, time.Minute)), read(map[string]uint64{"a": sec(4)}),
				upd(sliverAt("a", coral, time.Minute)), read(map[string]uint64{"a": sec(5)}),
			},
			want:    []usageapi.Slice{want(codeen, 1, 5, 0)},
			tracked: 1,
		},
		{
			name: "flows count per slice, before the pod is seen too; a slice known by flows only is left out",
			steps: []step{
				flows(map[string]int64{codeen: 2, "plc.mit.ghost": 9, "": 4}),
				upd(sliverAt("a", codeen, time.Minute)),
				flows(map[string]int64{codeen: 3}),
				del("a"), read(nil),
			},
			want:    []usageapi.Slice{want(codeen, 0, 0, 5)},
			tracked: 0,
		},
		{
			name:  "no pods, no slices",
			steps: []step{read(nil)},
			want:  []usageapi.Slice{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tally := &Tally{Since: since}
			for _, s := range tc.steps {
				switch {
				case s.update != nil:
					tally.Update(*s.update)
				case s.delete != "":
					tally.Delete(s.delete)
				case s.flows != nil:
					for slice, n := range s.flows {
						tally.AddFlows(slice, n)
					}
				}
				if !s.noFold {
					tally.Fold(s.fold)
				}
			}
			got := tally.Slices()
			for i := range got { // compare CPU seconds to the nanosecond
				got[i].CPUSeconds = float64(int64(got[i].CPUSeconds*1e9+0.5)) / 1e9
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Slices() =\n%+v\nwant\n%+v", got, tc.want)
			}
			if n := tally.Tracked(); n != tc.tracked {
				t.Errorf("Tracked() = %d pods, want %d", n, tc.tracked)
			}
		})
	}
}

// TestTallyPodsListsDeletedOnesForALastReading: a pass reads every known
// pod's cgroup, deleted ones included (their last use counts), until the
// fold that forgets them.
func TestTallyPodsListsDeletedOnesForALastReading(t *testing.T) {
	tally := &Tally{Since: since}
	tally.Update(sliverAt("b", codeen, 0))
	g := sliverAt("a", coral, 0)
	g.QoS = corev1.PodQOSGuaranteed
	tally.Update(g)
	tally.Delete("a")
	want := []Pod{{UID: "a", QoS: corev1.PodQOSGuaranteed}, {UID: "b", QoS: corev1.PodQOSBurstable}}
	if got := tally.Pods(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Pods() = %v, want %v", got, want)
	}
	tally.Fold(nil)
	if got := tally.Pods(); len(got) != 1 || got[0].UID != "b" {
		t.Fatalf("Pods() after the fold = %v, want b only", got)
	}
}

// TestFinalFlows: a flow counts once, by its record that ends it; open
// snapshots and node traffic do not count.
func TestFinalFlows(t *testing.T) {
	end := since.Add(time.Minute)
	recs := []flow.Record{
		{Slice: codeen, Start: since},           // a snapshot of an open flow
		{Slice: codeen, Start: since, End: end}, // the same flow, ended
		{Slice: codeen, Start: since, End: end}, // another
		{Slice: coral, Start: since, End: end},  // lost or ended: End set
		{Slice: "", Start: since, End: end},     // node traffic
		{Slice: coral, Start: since},            // open
		{Slice: "plc.mit.x", Start: since},      // open only: no entry
		{Slice: "plc.mit.y", Start: since, End: end},
	}
	want := map[string]int64{codeen: 2, coral: 1, "plc.mit.y": 1}
	if got := FinalFlows(recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("FinalFlows = %v, want %v", got, want)
	}
	if got := FinalFlows(recs[:1]); got != nil {
		t.Fatalf("FinalFlows of a snapshot = %v, want none", got)
	}
}

// TestSliverOf: a local sliver names its Slice by its site and slice
// labels, a foreign one by its full name (the authority's namespace); a pod
// the PodTracker gives no slice is not a sliver.
func TestSliverOf(t *testing.T) {
	made := metav1.NewTime(since)
	local := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID("u1"), Namespace: "princeton-codeen", Name: "codeen-node1", CreationTimestamp: made,
			Labels: map[string]string{planetv1.LabelSite: "princeton", planetv1.LabelSlice: "codeen"}},
		Status: corev1.PodStatus{QOSClass: corev1.PodQOSBurstable, Phase: corev1.PodRunning},
	}
	got, ok := SliverOf(local, codeen)
	wantLocal := Sliver{UID: "u1", QoS: corev1.PodQOSBurstable, Slice: codeen, Namespace: "princeton", Name: "codeen", Created: since, Active: true}
	if !ok || got != wantLocal {
		t.Errorf("SliverOf(local) = %+v, %v; want %+v", got, ok, wantLocal)
	}

	full := "ple.inria.foo"
	foreign := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID("u2"), Namespace: naming.ForeignSliceNamespace("ple", "inria", "foo"), Name: "foo-node1",
			Annotations: map[string]string{planetv1.AnnotationSliceFullName: full}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded},
	}
	got, ok = SliverOf(foreign, full)
	wantForeign := Sliver{UID: "u2", Slice: full, Namespace: naming.AuthorityNamespace("ple"), Name: naming.ForeignSliceName("inria", "foo")}
	if !ok || got != wantForeign {
		t.Errorf("SliverOf(foreign) = %+v, %v; want %+v", got, ok, wantForeign)
	}

	if _, ok := SliverOf(local, ""); ok {
		t.Error("a pod without a slice is a sliver")
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u3", Namespace: "kube-system", Name: "x"}}
	if _, ok := SliverOf(other, codeen); ok {
		t.Error("a pod without a Slice is a sliver")
	}
}
