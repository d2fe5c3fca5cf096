package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/planetkube/planetkube/internal/flow"
)

// flowKey identifies a flow across its snapshots.
type flowKey struct {
	start int64
	proto uint8
	orig  flow.Tuple
}

type attrKey struct {
	sg *segment
	id uint64
}

// Query returns the flows to q.Dst and/or of q.Slice that overlap the window
// [q.From, q.To): started before To and still open or ended at or after From,
// one per flow (the last written record of a flow wins), ordered by start.
// At least one of Dst and Slice is required, To must be after From and
// Limit must be in 1..MaxLimit.
func (s *Store) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	if !q.Dst.IsValid() && q.Slice == "" {
		return nil, errors.New("store: query: need a destination IP or a slice")
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return nil, fmt.Errorf("store: query: limit %d not in 1..%d", q.Limit, MaxLimit)
	}
	if !q.To.After(q.From) {
		return nil, fmt.Errorf("store: query: window end %v not after start %v", q.To, q.From)
	}
	dst := norm(q.Dst)

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errors.New("store: query: store is closed")
	}
	// Candidates are kept small; only the records returned are decoded
	// with their attribution.
	type cand struct {
		start, end int64 // µs
		open       bool
		sg         *segment
		off        uint32
	}
	var cands []cand
	seen := map[flowKey]int{}
	attrs := map[attrKey]attribution{}
	attrOf := func(sg *segment, id uint64) (attribution, error) {
		k := attrKey{sg, id}
		a, ok := attrs[k]
		if !ok {
			e, _ := sg.entry(id)
			if a, ok = parseAttr(e); !ok {
				return a, fmt.Errorf("store: query: segment %d: corrupt attribution %d", sg.seq, id)
			}
			attrs[k] = a
		}
		return a, nil
	}
	to := q.To
	var r flow.Record
	for _, sg := range s.segs {
		if !fromMicros(sg.minStart).Before(q.To) || fromMicros(sg.maxTime).Before(q.From) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("store: query: %w", err)
		}
		offs, err := sg.offsets(dst, q.Slice)
		if err != nil {
			return nil, fmt.Errorf("store: query: segment %d: %w", sg.seq, err)
		}
		data := sg.bytes()
		for _, off := range offs {
			d := dec{b: data, i: int(off)}
			id, ok := decodeRecord(&d, sg.base, sg.entry, &r)
			if !ok {
				return nil, fmt.Errorf("store: query: segment %d: corrupt record at %d", sg.seq, off)
			}
			if !r.Start.Before(to) || dst.IsValid() && r.Orig.Dst.Addr() != dst {
				continue
			}
			if q.Slice != "" && dst.IsValid() { // the slice index needs no check
				if id == 0 {
					continue
				}
				a, err := attrOf(sg, id)
				if err != nil {
					return nil, err
				}
				if a.slice != q.Slice {
					continue
				}
			}
			c := cand{start: micros(r.Start), end: micros(r.End), open: r.End.IsZero(), sg: sg, off: off}
			k := flowKey{c.start, r.Proto, r.Orig}
			if i, ok := seen[k]; ok {
				cands[i] = c
				continue
			}
			seen[k] = len(cands)
			cands = append(cands, c)
		}
	}
	cands = slices.DeleteFunc(cands, func(c cand) bool {
		return !c.open && fromMicros(c.end).Before(q.From)
	})
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(a.start, b.start) })
	out := make([]flow.Record, 0, min(len(cands), q.Limit))
	for _, c := range cands[:min(len(cands), q.Limit)] {
		d := dec{b: c.sg.bytes(), i: int(c.off)}
		id, _ := decodeRecord(&d, c.sg.base, c.sg.entry, &r)
		if id != 0 {
			a, err := attrOf(c.sg, id)
			if err != nil {
				return nil, err
			}
			r.Slice, r.Sliver, r.PodUID = a.slice, a.sliver, a.uid
		}
		out = append(out, r)
	}
	return out, nil
}
