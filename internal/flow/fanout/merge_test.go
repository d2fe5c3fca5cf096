package fanout_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/fanout"
)

// before orders records by start, then node.
func before(a, b flow.Record) int {
	if c := a.Start.Compare(b.Start); c != 0 {
		return c
	}
	return strings.Compare(a.Node, b.Node)
}

// sortMerge is what Merge must answer, the plain way: each part sorted,
// then every record, sorted stably by start then node, cut after the
// earliest last record of a part that was truncated, then limited.
func sortMerge(parts []fanout.Part, limit int) ([]flow.Record, bool) {
	var all []flow.Record
	var cut *flow.Record
	truncated := false
	for _, p := range parts {
		slices.SortStableFunc(p.Records, before)
		all = append(all, p.Records...)
		if n := len(p.Records); p.Truncated {
			truncated = true
			if n > 0 && (cut == nil || before(p.Records[n-1], *cut) < 0) {
				cut = &p.Records[n-1]
			}
		}
	}
	slices.SortStableFunc(all, before)
	if cut != nil {
		if n := slices.IndexFunc(all, func(r flow.Record) bool { return before(r, *cut) > 0 }); n >= 0 {
			all = all[:n]
		}
	}
	if len(all) > limit {
		return all[:limit], true
	}
	return all, truncated
}

// TestMergeMatchesASort: Merge, which walks the parts' heads, answers as
// sorting every record does, ties (same start and node, told apart by
// their bytes) in the same order, over random parts: many nodes or one,
// some truncated, some empty, some not in order.
func TestMergeMatchesASort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		var parts []fanout.Part
		for p := range 1 + rng.IntN(8) {
			var recs []flow.Record
			for range rng.IntN(12) {
				node := fmt.Sprintf("node-%d", p)
				if rng.IntN(3) == 0 { // a part holding several nodes, as the archive's
					node = fmt.Sprintf("node-%d", rng.IntN(3))
				}
				recs = append(recs, flow.Record{Node: node, Start: t0.Add(time.Duration(rng.IntN(6)) * time.Second), OrigBytes: uint64(len(parts)*100 + len(recs))})
			}
			if rng.IntN(5) != 0 {
				slices.SortStableFunc(recs, before)
			}
			parts = append(parts, fanout.Part{Records: recs, Truncated: rng.IntN(4) == 0})
		}
		limit := 1 + rng.IntN(30)
		wantParts := make([]fanout.Part, len(parts))
		for j, p := range parts {
			wantParts[j] = fanout.Part{Records: slices.Clone(p.Records), Truncated: p.Truncated}
		}
		want, wantTrunc := sortMerge(wantParts, limit)
		got, gotTrunc := fanout.Merge(parts, limit)
		if gotTrunc != wantTrunc || len(got) != len(want) {
			t.Fatalf("Case %d: %d records (truncated %v), want %d (%v)", i, len(got), gotTrunc, len(want), wantTrunc)
		}
		for j := range got {
			if got[j].Node != want[j].Node || !got[j].Start.Equal(want[j].Start) || got[j].OrigBytes != want[j].OrigBytes {
				t.Fatalf("Case %d: record %d is %s %v #%d, want %s %v #%d", i, j,
					got[j].Node, got[j].Start, got[j].OrigBytes, want[j].Node, want[j].Start, want[j].OrigBytes)
			}
		}
	}
}
