package usage

import (
	"math"
	"time"

	"github.com/planetkube/planetkube/internal/naming"
)

// forgetAfter is how many rounds a node's counters are kept without a
// report from it (an agent that missed a few rounds goes on from them).
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
			t := a.slice(key, r.KnownSlice)
			cpu, flows, first := a.change(nodeSlice{rep.Node, key}, rep.Since, s)
			if !first || counts(a.sliceWritten[key], rep.Since) {
				t.CPUSeconds += cpu
				t.Flows += flows
			}
			t.BytesToday += max(0, s.BytesToday)
			t.BudgetBytes += max(0, s.BudgetBytes)
			t.Slivers += max(0, s.Slivers)
			if s.Slivers > 0 {
				t.Nodes++
			}
			if st == nil {
				continue
			}
			foreign := a.foreign(s.Slice, site)
			st.Slivers += max(0, s.Slivers)
			if foreign {
				st.ForeignSlivers += max(0, s.Slivers)
			}
			if !first || counts(a.siteWritten[site], rep.Since) {
				st.CPUSeconds += cpu
				if foreign {
					st.CPUSecondsToOthers += cpu
				}
			}
		}
	}
	for k, v := range a.last {
		if a.round-v.round > forgetAfter {
			delete(a.last, k)
		}
	}
	return a.slices, a.sites
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

// Forget drops a slice's totals (the Slice is gone).
func (a *Accumulator) Forget(k Key) {
	delete(a.slices, k)
	delete(a.sliceWritten, k)
	for ns := range a.last {
		if ns.key == k {
			delete(a.last, ns)
		}
	}
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
