package usage

import (
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	codee = Key{"princeton", "codeen"}
	ple   = Key{"planetkube-auth-ple", "inria-x"}
)

func report(node string, since time.Time, slices ...Slice) *Report {
	return &Report{Node: node, Since: since, Slices: slices}
}

func codeen(cpu float64, flows int64, slivers int) Slice {
	return Slice{Slice: "plc.princeton.codeen", Namespace: "princeton", Name: "codeen", CPUSeconds: cpu, Flows: flows, Slivers: slivers, BytesToday: 100, BudgetBytes: 1000}
}

func foreign(cpu float64) Slice {
	return Slice{Slice: "ple.inria.x", Namespace: "planetkube-auth-ple", Name: "inria-x", CPUSeconds: cpu, Slivers: 1}
}

func sites(node string) string {
	return map[string]string{"p1": "princeton", "p2": "princeton", "m1": "mit"}[node]
}

func TestFold(t *testing.T) {
	a := &Accumulator{Local: "plc"}
	r := func(reps ...*Report) (map[Key]*Totals, map[string]*SiteTotals) {
		return a.Fold(Round{Reports: reps, SiteOf: sites})
	}
	// Round 1: two nodes, a new manager that never wrote: all counts.
	sl, st := r(report("p1", t0, codeen(10, 5, 1), foreign(4)), report("m1", t0, codeen(20, 1, 1)))
	if got := *sl[codee]; got != (Totals{CPUSeconds: 30, Flows: 6, BytesToday: 200, BudgetBytes: 2000, Nodes: 2, Slivers: 2}) {
		t.Fatalf("round 1: %+v", got)
	}
	if got := *st["princeton"]; got != (SiteTotals{Slivers: 2, ForeignSlivers: 1, CPUSeconds: 14, CPUSecondsToOthers: 4}) {
		t.Fatalf("princeton, round 1: %+v", got)
	}
	if got := *st["mit"]; got != (SiteTotals{Slivers: 1, ForeignSlivers: 1, CPUSeconds: 20, CPUSecondsToOthers: 20}) {
		t.Fatalf("mit, round 1: %+v (codeen is princeton's)", got)
	}
	// Round 2: p1 grows; m1 does not answer (its counters are kept).
	sl, _ = r(report("p1", t0, codeen(15, 7, 1), foreign(4)))
	if got := *sl[codee]; got.CPUSeconds != 35 || got.Flows != 8 || got.Nodes != 1 || got.BytesToday != 100 {
		t.Fatalf("round 2: %+v", got)
	}
	// Round 3: m1's agent restarted (a later Since, counters from zero):
	// its 3 seconds are new; p1's sliver is gone but its counts stay.
	sl, _ = r(report("p1", t0, codeen(15, 7, 0), foreign(4)), report("m1", t0.Add(time.Hour), codeen(3, 0, 1)))
	if got := *sl[codee]; got.CPUSeconds != 38 || got.Flows != 8 || got.Nodes != 1 || got.Slivers != 1 {
		t.Fatalf("round 3: %+v", got)
	}
	// A counter that goes down with the same agent adds nothing.
	sl, _ = r(report("p1", t0, codeen(1, 1, 1)))
	if got := sl[codee].CPUSeconds; got != 38 {
		t.Fatalf("a counter going down: %v", got)
	}
	// Nonsense adds nothing.
	sl, _ = r(report("p1", t0, Slice{Namespace: "princeton", Name: "codeen", CPUSeconds: -5, Flows: -3}))
	if got := *sl[codee]; got.CPUSeconds != 38 || got.Flows != 8 {
		t.Fatalf("negative counters: %+v", got)
	}
}

// TestFoldAfterRestart: a new manager goes on from what was written; a
// node's counters from an agent that started before that write were
// counted then.
func TestFoldAfterRestart(t *testing.T) {
	written := t0.Add(time.Hour)
	a := &Accumulator{Local: "plc"}
	round := Round{SiteOf: sites,
		KnownSlice: func(name string) (Totals, time.Time, bool) {
			if name != "princeton/codeen" {
				return Totals{}, time.Time{}, false
			}
			return Totals{CPUSeconds: 100, Flows: 50}, written, true
		},
		KnownSite: func(name string) (SiteTotals, time.Time, bool) {
			return SiteTotals{CPUSeconds: 1000, CPUSecondsToOthers: 10}, written, name == "princeton"
		},
	}
	round.Reports = []*Report{
		report("p1", t0, codeen(40, 9, 1), foreign(7)),          // started before the write: counted then
		report("p2", written.Add(time.Minute), codeen(5, 1, 1)), // started after it: all new
	}
	sl, st := a.Fold(round)
	if got := *sl[codee]; got.CPUSeconds != 105 || got.Flows != 51 {
		t.Fatalf("codeen: %+v, want 105 s and 51 flows", got)
	}
	if got := sl[ple].CPUSeconds; got != 7 {
		t.Fatalf("a slice never written counts whole: %v", got)
	}
	if got := *st["princeton"]; got.CPUSeconds != 1005 || got.CPUSecondsToOthers != 10 || got.Slivers != 3 {
		t.Fatalf("princeton: %+v", got)
	}
	round.Reports = []*Report{report("p1", t0, codeen(42, 9, 1), foreign(7))}
	sl, _ = a.Fold(round)
	if got := sl[codee].CPUSeconds; got != 107 {
		t.Fatalf("next round: %v, want 107", got)
	}
}

// TestFoldDeletedAndSilent: a deleted slice that agents still report is
// not counted, for itself or its node's site, and counts only what is new
// if made again; a node silent for long goes on from its last reading;
// a node where the slice runs nothing now lends it no budget.
func TestFoldDeletedAndSilent(t *testing.T) {
	a := &Accumulator{Local: "plc"}
	exists := map[Key]bool{codee: true, ple: true}
	round := func(reps ...*Report) (map[Key]*Totals, map[string]*SiteTotals) {
		return a.Fold(Round{Reports: reps, SiteOf: sites, SliceExists: func(k Key) bool { return exists[k] }})
	}
	round(report("p1", t0, codeen(100, 10, 1), foreign(50)), report("m1", t0, codeen(1, 0, 1)))
	exists[ple] = false
	for range 5 {
		sl, st := round(report("p1", t0, codeen(100, 10, 1), foreign(50)))
		if _, ok := sl[ple]; ok {
			t.Fatal("a deleted slice keeps totals")
		}
		if got := *st["princeton"]; got.CPUSeconds != 150 || got.CPUSecondsToOthers != 50 {
			t.Fatalf("princeton grows with a deleted slice's counters: %+v", got)
		}
	}
	// Made again under its name: only what its counters grow by counts.
	exists[ple] = true
	round(report("p1", t0, codeen(100, 10, 1), foreign(50)))
	sl, _ := round(report("p1", t0, codeen(100, 10, 1), foreign(53)))
	if got := sl[ple].CPUSeconds; got != 3 {
		t.Fatalf("the slice made again: %v CPU seconds, want 3", got)
	}
	// m1 silent for 20 rounds, then back with the same agent.
	for range 20 {
		round(report("p1", t0, codeen(100, 10, 1)))
	}
	gone := codeen(2, 0, 0)
	gone.BytesToday = 0
	sl, _ = round(report("p1", t0, codeen(100, 10, 1)), report("m1", t0, gone))
	if got := *sl[codee]; got.CPUSeconds != 102 || got.Flows != 10 {
		t.Fatalf("after m1's silence: %+v, want 102 s and 10 flows", got)
	}
	// m1 runs no sliver of codeen now and it sent nothing there today:
	// its budget is not codeen's.
	if got := *sl[codee]; got.BudgetBytes != 1000 || got.Nodes != 1 {
		t.Fatalf("budget %d over %d nodes, want p1's 1000 only", got.BudgetBytes, got.Nodes)
	}
	// Nonsense near the limits saturates.
	sl, _ = round(report("p1", t0, Slice{Namespace: "princeton", Name: "codeen", Slivers: 1, BytesToday: 1 << 62, BudgetBytes: 1 << 62, Flows: 1 << 62}),
		report("m1", t0, Slice{Namespace: "princeton", Name: "codeen", Slivers: 1, BytesToday: 1 << 62, BudgetBytes: 1 << 62, Flows: 1 << 62}))
	if got := *sl[codee]; got.BytesToday < 0 || got.BudgetBytes < 0 || got.Flows < 0 {
		t.Fatalf("overflow: %+v", got)
	}
}
