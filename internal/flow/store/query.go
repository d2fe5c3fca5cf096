package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
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

// attrCache keeps the attributions a query has parsed.
type attrCache map[attrKey]attribution

// of returns the attribution id of v's segment.
func (c attrCache) of(v *segView, id uint64) (attribution, error) {
	k := attrKey{v.sg, id}
	a, ok := c[k]
	if !ok {
		e, _ := v.entry(id)
		if a, ok = parseAttr(e); !ok {
			return a, fmt.Errorf("store: query: segment %d: corrupt attribution %d", v.sg.seq, id)
		}
		c[k] = a
	}
	return a, nil
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
	if q.Port != 0 && !q.Dst.IsValid() {
		return nil, errors.New("store: query: a port needs a destination IP")
	}
	dst := norm(q.Dst)

	views, err := s.snapshot(dst, q)
	if err != nil {
		return nil, err
	}
	defer releaseViews(views)
	if testHookQueryUnlocked != nil {
		testHookQueryUnlocked()
	}
	if !dst.IsValid() || q.Slice == "" {
		return queryByTimes(ctx, views, q)
	}
	return queryScan(ctx, views, q, dst)
}

// queryScan answers a query by decoding every record its views list: the
// way for queries by destination and slice, which must read each record's
// attribution.
func queryScan(ctx context.Context, views []segView, q flow.Query, dst netip.Addr) ([]flow.Record, error) {
	// Candidates are kept small; only the records returned are decoded
	// with their attribution.
	type cand struct {
		start, end int64 // µs
		open       bool
		v          *segView
		off        uint32
	}
	var cands []cand
	seen := map[flowKey]int{}
	attrOf := attrCache{}.of
	to := q.To
	var r flow.Record
	for i := range views {
		v := &views[i]
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("store: query: %w", err)
		}
		offs, data := v.offs, v.data
		for _, off := range offs {
			d := dec{b: data, i: int(off)}
			id, ok := decodeRecord(&d, v.sg.base, v.entry, &r)
			if !ok {
				return nil, fmt.Errorf("store: query: segment %d: corrupt record at %d", v.sg.seq, off)
			}
			if !r.Start.Before(to) || dst.IsValid() && r.Orig.Dst.Addr() != dst || q.Port != 0 && r.Orig.Dst.Port() != q.Port {
				continue
			}
			if q.Slice != "" && dst.IsValid() { // the slice index needs no check
				if id == 0 {
					continue
				}
				a, err := attrOf(v, id)
				if err != nil {
					return nil, err
				}
				if a.slice != q.Slice {
					continue
				}
			}
			c := cand{start: micros(r.Start), end: micros(r.End), open: r.End.IsZero(), v: v, off: off}
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
		d := dec{b: c.v.data, i: int(c.off)}
		id, _ := decodeRecord(&d, c.v.sg.base, c.v.entry, &r)
		if id != 0 {
			a, err := attrOf(c.v, id)
			if err != nil {
				return nil, err
			}
			r.Slice, r.Sliver, r.PodUID = a.slice, a.sliver, a.uid
		}
		out = append(out, r)
	}
	return out, nil
}

// testHookQueryUnlocked, when set (tests), runs in Query between taking
// its snapshot and decoding, with Store.mu not held.
var testHookQueryUnlocked func()

// segView is what a query reads of a segment, taken under Store.mu so that
// the decoding can run without it: the open segment's buffer, dictionary
// and offsets only grow by appending, so the slices taken stay valid for
// their length; a sealed segment's mapped files stay mapped while the view
// holds its use lock.
type segView struct {
	sg     *segment
	sealed bool
	data   []byte
	offs   []uint32
	dict   [][]byte
	// times reads the records' times from the index, in offs' order (a
	// slice query on a sealed segment with a v2 index), else nil.
	times *sliceTimes
}

// entry returns the view's dictionary entry id (1-based).
func (v *segView) entry(id uint64) ([]byte, bool) {
	if v.sealed {
		return v.sg.ix.entry(id)
	}
	if id == 0 || id > uint64(len(v.dict)) {
		return nil, false
	}
	return v.dict[id-1], true
}

// snapshot takes the views of the segments whose time range overlaps the
// query's window, under Store.mu for reading; the sealed ones' use locks
// are held on return (the caller releases them).
func (s *Store) snapshot(dst netip.Addr, q flow.Query) ([]segView, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errors.New("store: query: store is closed")
	}
	var views []segView
	for _, sg := range s.segs {
		if !fromMicros(sg.minStart).Before(q.To) || fromMicros(sg.maxTime).Before(q.From) {
			continue
		}
		offs, times, err := sg.offsets(dst, q.Slice)
		if err != nil {
			releaseViews(views)
			return nil, fmt.Errorf("store: query: segment %d: %w", sg.seq, err)
		}
		v := segView{sg: sg, sealed: sg.sealed(), data: sg.bytes(), offs: offs, times: times}
		if v.sealed {
			sg.use.RLock()
		} else {
			v.dict = sg.dict
		}
		views = append(views, v)
	}
	return views, nil
}

// releaseViews gives back the use locks a snapshot took.
func releaseViews(views []segView) {
	for _, v := range views {
		if v.sealed {
			v.sg.use.RUnlock()
		}
	}
}
