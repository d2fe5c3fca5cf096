package usage

import (
	"math"
	"time"

	"github.com/planetkube/planetkube/internal/naming"
)

// forgetAfter is how many rounds the readings of a deleted slice are kept
// after its agents stopped reporting it.
const forgetAfter = 12

// Key is a Slice object's namespace and name.
type Key struct{ Namespace, Name string }

// Totals are a slice's use summed over nodes: CPUSeconds and Flows
// cumulative, the rest as of the last round.
type Totals struct {
	CPUSeconds              float64
	Flows                   int64
	BytesToday, BudgetBytes int64
	Nodes, Slivers          int
}

// SiteTotals are a site's nodes' contribution: Slivers and ForeignSlivers
// as of the last round, the CPU seconds cumulative.
type SiteTotals struct {
	Slivers, ForeignSlivers        int
	CPUSeconds, CPUSecondsToOthers float64
}

// Known is what was written before (a status) for a slice or a site: its
// totals and when they were written. ok is false for none.
type Known[T any] func(name string) (totals T, at time.Time, ok bool)

// Accumulator folds rounds of node reports into cumulative totals per
// slice and per site that survive agents' restarts: each node's counters
// are compared with the same agent's previous ones (its Since), and a
// counter that started again from zero counts from zero. After a manager
// restart it goes on from the totals last written (Round.KnownSlice,
// KnownSite): a node's counters seen for the first time count whole only
// if its agent started after that write, none otherwise (so a restart
// loses at most one round of them). Not safe for concurrent use.
type Accumulator struct {
	// Local is this install's authority: a slice of another authority, or
	// of another site, is foreign to a node's site.
	Local  string
	round  int
	last   map[nodeSlice]reading
	slices map[Key]*Totals
	sites  map[string]*SiteTotals
	// written holds when each slice's and site's totals were last written
	// before this accumulator first counted them (zero: never).
	sliceWritten map[Key]time.Time
	siteWritten  map[string]time.Time
}

type nodeSlice struct {
	node string
	key  Key
}

type reading struct {
	since      time.Time
	cpuSeconds float64
	flows      int64
	round      int
}

// Round is one round of reports, one per node that answered.
type Round struct {
	Reports []*Report
	// SiteOf is a node's site ("" for none).
	SiteOf func(node string) string
	// KnownSlice and KnownSite give what was last written, for a slice or
	// site this accumulator has not counted yet. Slices are named
	// "<namespace>/<name>".
	KnownSlice Known[Totals]
	KnownSite  Known[SiteTotals]
	// SliceExists says whether a slice's object exists (nil: all do). A
	// slice that does not (deleted, while agents still report its
	// counters) is not counted, and its totals are dropped; its nodes'
	// readings are kept, so that a slice made again under its name counts
	// only what is new.
	SliceExists func(Key) bool
	// NodeExists says whether a node exists (nil: all do). A node's
	// readings are kept as long as it exists, however long its agent does
	// not answer, so that nothing it counted is counted twice.
	NodeExists func(string) bool
}

// Fold counts a round and returns the totals of every slice and site it
// has counted so far (the maps are the accumulator's: read them before the
// next Fold).
func (a *Accumulator) Fold(r Round) (map[Key]*Totals, map[string]*SiteTotals) {
	if a.last == nil {
		a.last, a.slices, a.sites = map[nodeSlice]reading{}, map[Key]*Totals{}, map[string]*SiteTotals{}
		a.sliceWritten, a.siteWritten = map[Key]time.Time{}, map[string]time.Time{}
	}
	a.round++
	for _, t := range a.slices {
		t.BytesToday, t.BudgetBytes, t.Nodes, t.Slivers = 0, 0, 0, 0
	}
	for _, t := range a.sites {
		t.Slivers, t.ForeignSlivers = 0, 0
	}
	for _, rep := range r.Reports {
		site := ""
		if r.SiteOf != nil {
			site = r.SiteOf(rep.Node)
		}
		var st *SiteTotals
		if site != "" {
			st = a.site(site, r.KnownSite)
		}
		for _, s := range rep.Slices {
			key := Key{s.Namespace, s.Name}
			cpu, flows, first := a.change(nodeSlice{rep.Node, key}, rep.Since, s)
			if r.SliceExists != nil && !r.SliceExists(key) {
				a.drop(key)
				continue
			}
			t := a.slice(key, r.KnownSlice)
			if !first || counts(a.sliceWritten[key], rep.Since) {
				t.CPUSeconds = satAdd(t.CPUSeconds, cpu)
				t.Flows = satAddInt(t.Flows, flows)
			}
			if s.Slivers > 0 || s.BytesToday > 0 {
				// A node where the slice has no sliver now and sent
				// nothing today lends it no budget.
				t.BytesToday = satAddInt(t.BytesToday, max(0, s.BytesToday))
				t.BudgetBytes = satAddInt(t.BudgetBytes, max(0, s.BudgetBytes))
			}
			t.Slivers += max(0, min(s.Slivers, 1<<20))
			if s.Slivers > 0 {
				t.Nodes++
			}
			if st == nil {
				continue
			}
			foreign := a.foreign(s.Slice, site)
			st.Slivers += max(0, min(s.Slivers, 1<<20))
			if foreign {
				st.ForeignSlivers += max(0, min(s.Slivers, 1<<20))
			}
			if !first || counts(a.siteWritten[site], rep.Since) {
				st.CPUSeconds = satAdd(st.CPUSeconds, cpu)
				if foreign {
					st.CPUSecondsToOthers = satAdd(st.CPUSecondsToOthers, cpu)
				}
			}
		}
	}
	for k, v := range a.last {
		nodeGone := r.NodeExists != nil && !r.NodeExists(k.node)
		sliceGone := r.SliceExists != nil && !r.SliceExists(k.key) && a.round-v.round > forgetAfter
		if nodeGone || sliceGone {
			delete(a.last, k)
		}
	}
	if r.SliceExists != nil {
		for k := range a.slices {
			if !r.SliceExists(k) {
				a.drop(k)
			}
		}
	}
	return a.slices, a.sites
}

// drop forgets a deleted slice's totals (not its nodes' readings).
func (a *Accumulator) drop(k Key) {
	delete(a.slices, k)
	delete(a.sliceWritten, k)
}

// satAdd adds without passing what a status can hold.
func satAdd(a, b float64) float64 { return min(a+b, math.MaxInt64) }

// satAddInt adds two counts of at least zero without overflowing.
func satAddInt(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// counts says whether the counters of an agent that started at since,
// seen for the first time, are new to totals last written at written
// (zero: never written).
func counts(written, since time.Time) bool {
	return written.IsZero() || written.Before(since)
}

// change returns what a node's counters of a slice grew by since the last
// round, and whether they are seen for the first time (then the counters
// themselves). A new agent (another Since) counts from zero.
func (a *Accumulator) change(k nodeSlice, since time.Time, s Slice) (float64, int64, bool) {
	cpu, flows := clean(s.CPUSeconds), max(0, s.Flows)
	prev, seen := a.last[k]
	a.last[k] = reading{since: since, cpuSeconds: cpu, flows: flows, round: a.round}
	switch {
	case !seen:
		return cpu, flows, true
	case !prev.since.Equal(since):
		return cpu, flows, false
	}
	return max(0, cpu-prev.cpuSeconds), max(0, flows-prev.flows), false
}

func (a *Accumulator) slice(k Key, known Known[Totals]) *Totals {
	if t := a.slices[k]; t != nil {
		return t
	}
	t := &Totals{}
	if known != nil {
		if kt, at, ok := known(k.Namespace + "/" + k.Name); ok {
			t.CPUSeconds, t.Flows, a.sliceWritten[k] = kt.CPUSeconds, kt.Flows, at
		}
	}
	a.slices[k] = t
	return t
}

func (a *Accumulator) site(name string, known Known[SiteTotals]) *SiteTotals {
	if t := a.sites[name]; t != nil {
		return t
	}
	t := &SiteTotals{}
	if known != nil {
		if kt, at, ok := known(name); ok {
			t.CPUSeconds, t.CPUSecondsToOthers, a.siteWritten[name] = kt.CPUSeconds, kt.CPUSecondsToOthers, at
		}
	}
	a.sites[name] = t
	return t
}

// foreign says whether a slice (full name) is another site's or
// authority's than site.
func (a *Accumulator) foreign(full, site string) bool {
	auth, s, _, ok := naming.ParseFullName(full)
	return !ok || auth != a.Local || s != site
}

// clean turns a counter that is not a finite, positive number into 0.
func clean(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}
