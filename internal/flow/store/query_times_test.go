package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// TestQueryByTimesMatchesTheScan: a query by slice, by destination or by
// destination and port, which decodes only what it returns, answers exactly
// as decoding every record of the slice or destination does, over random
// flows with snapshots, shared starts (to the microsecond), records spread
// over sealed and open segments, and windows and limits that cut through
// them at sub-microsecond bounds.
func TestQueryByTimesMatchesTheScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := open(t, Options{})
	type flowState struct {
		r    flow.Record
		left int // snapshots still to write before the final record
	}
	var live []*flowState
	for batch := range 40 {
		var recs []flow.Record
		for range 20 {
			// New flows start on a coarse grid so that starts collide.
			start := t0.Add(time.Duration(rng.IntN(120)) * 30 * time.Second)
			slice := "s"
			if rng.IntN(4) == 0 {
				slice = "other"
			}
			dst := fmt.Sprintf("198.51.100.%d:%d", 7+rng.IntN(2), 443+rng.IntN(2))
			r := rec(fmt.Sprintf("10.0.%d.%d:%d", rng.IntN(2), rng.IntN(3), 1000+rng.IntN(3)), dst, "192.0.2.1:9", start, time.Time{}, slice)
			if rng.IntN(5) == 0 {
				r.Proto = 17
			}
			live = append(live, &flowState{r: r, left: rng.IntN(3)})
		}
		for i := 0; i < len(live); i++ {
			f := live[i]
			if rng.IntN(2) == 0 {
				continue
			}
			r := f.r
			r.OrigBytes += uint64(rng.IntN(1000))
			f.r = r
			if f.left > 0 {
				f.left--
				recs = append(recs, r) // a snapshot: open
				continue
			}
			r.End = r.Start.Add(time.Duration(rng.IntN(90)) * time.Minute)
			recs = append(recs, r)
			live = append(live[:i], live[i+1:]...)
			i--
		}
		add(t, s, recs...)
		if batch%7 == 6 {
			seal(t, s)
		}
	}
	ctx := context.Background()
	for i := range 300 {
		from := t0.Add(time.Duration(rng.Int64N(int64(3*time.Hour))) - time.Hour)
		q := flow.Query{From: from, To: from.Add(time.Duration(1 + rng.Int64N(int64(2*time.Hour)))), Limit: 1 + rng.IntN(60)}
		if i%4 == 0 {
			q.Limit = MaxLimit
		}
		switch i % 3 {
		case 0:
			q.Slice = "s"
		case 1:
			q.Dst = netip.MustParseAddr("198.51.100.7")
		case 2:
			q.Dst, q.Port = netip.MustParseAddr("198.51.100.8"), 444
		}
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		views, err := s.snapshot(q.Dst, q)
		if err != nil {
			t.Fatal(err)
		}
		want, err := queryScan(ctx, views, q, q.Dst)
		releaseViews(views)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 && q.To.After(t0) && q.From.Before(t0.Add(time.Hour)) {
			t.Fatalf("Query %+v: the scan found nothing in the flows' hour: the test asks nothing", q)
		}
		if len(got) != len(want) {
			t.Fatalf("Query %+v: %d flows, the scan %d", q, len(got), len(want))
		}
		for j := range got {
			if !same(got[j], want[j]) || got[j].OrigBytes != want[j].OrigBytes {
				t.Fatalf("Query %+v: flow %d is %+v, the scan's %+v", q, j, got[j], want[j])
			}
		}
	}
}

// TestV1IndexStillReads: a sealed segment whose index has no slice times
// (written before they were added) answers slice queries as before, from
// the data.
func TestV1IndexStillReads(t *testing.T) {
	s := open(t, Options{})
	var recs []flow.Record
	for i := range 50 {
		start := t0.Add(time.Duration(i%10) * time.Minute)
		end := time.Time{}
		if i%3 != 0 {
			end = start.Add(time.Duration(i) * time.Minute)
		}
		recs = append(recs, rec(fmt.Sprintf("10.0.0.%d:%d", i%4, 1000+i), "198.51.100.7:443", "192.0.2.1:9", start, end, "s"))
	}
	add(t, s, recs...)
	seal(t, s)
	q := flow.Query{Slice: "s", From: t0.Add(5 * time.Minute), To: t0.Add(time.Hour), Limit: 20}
	want := query(t, s, q)
	if s.segs[0].ix.v2 != true {
		t.Fatal("A new index is not v2")
	}
	idx := segName(s.opt.Dir, s.segs[0].seq, "idx")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, idxMagicV1)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	if err := os.WriteFile(idx, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s = open(t, s.opt)
	if s.segs[0].ix.v2 {
		t.Fatal("The rewritten index still reads as v2")
	}
	got := query(t, s, q)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("v1 index: %d flows, v2 %d", len(got), len(want))
	}
	for i := range got {
		if !same(got[i], want[i]) {
			t.Errorf("Flow %d: v1 %+v, v2 %+v", i, got[i], want[i])
		}
	}
}
