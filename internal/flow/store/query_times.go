package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// sliceRef is a record of a query's first pass: where it is and the times
// it was peeked for.
type sliceRef struct {
	start, end int64  // µs; end is openEnd for an open record
	pos        uint64 // its view's index << 32 | its offset: write order
}

// refBufs are a query's candidate lists, kept for the next query: a busy
// slice or destination has tens of thousands of records an hour.
type refBufs struct {
	cands, early []sliceRef
	starts       []int64
}

var refPool = sync.Pool{New: func() any { return new(refBufs) }}

// openEnd is the end of an open record: after any window.
const openEnd = math.MaxInt64

func (r sliceRef) vi() int      { return int(r.pos >> 32) }
func (r sliceRef) off() uint32  { return uint32(r.pos) }
func (r sliceRef) isOpen() bool { return r.end == openEnd }

func compareRefs(a, b sliceRef) int {
	return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.pos, b.pos))
}

// ceilMicros is the least µs time not before t.
func ceilMicros(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// queryByTimes answers a query by slice alone, or by destination (and
// port) alone, with the semantics of Query, decoding in full only the
// records it returns and those that share a start with another (a flow's
// records all have its start). A first pass reads each posting's times
// only: from the index for a slice on a sealed segment, else from the first
// bytes of the record (and, for a port, the few after them); records that
// started in time are split into those that may overlap the window (open,
// or ended at or after From) and those that ended before it. The first are
// sorted by start and walked in order until Limit flows are found; records
// of equal start, the others' included, are decoded and deduplicated (the
// last written record of a flow decides whether it is in the window and
// what is returned). A destination's postings hold only records to it, and
// a port is the flow's, shared by its records, so both filter before the
// deduplication as the slice's postings do.
func queryByTimes(ctx context.Context, views []segView, q flow.Query) ([]flow.Record, error) {
	to, from := ceilMicros(q.To), ceilMicros(q.From)
	n := 0
	for _, v := range views {
		n += len(v.offs)
	}
	bufs := refPool.Get().(*refBufs)
	defer refPool.Put(bufs)
	if cap(bufs.cands) < n {
		bufs.cands = make([]sliceRef, 0, n)
	}
	cands, early := bufs.cands[:0], bufs.early[:0]
	for vi := range views {
		v := &views[vi]
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("store: query: %w", err)
		}
		for _, off := range v.offs {
			var start, end int64
			var open, ok bool
			if v.times != nil { // from the index: the data is not touched
				start, end, open, ok = v.times.next()
			} else {
				d := dec{b: v.data, i: int(off)}
				var flags byte
				flags, start, end, open, ok = peekTimes(&d, v.sg.base)
				if ok && q.Port != 0 {
					var port uint16
					if port, ok = peekDstPort(&d, flags); ok && port != q.Port {
						continue
					}
				}
			}
			if !ok {
				return nil, fmt.Errorf("store: query: segment %d: corrupt record at %d", v.sg.seq, off)
			}
			if start >= to {
				continue
			}
			r := sliceRef{start: start, end: end, pos: uint64(vi)<<32 | uint64(off)}
			switch {
			case open:
				r.end = openEnd
				cands = append(cands, r)
			case end < from:
				early = append(early, r)
			default:
				cands = append(cands, r)
			}
		}
	}

	bufs.cands, bufs.early = cands[:0], early[:0] // grown: kept for the next query
	// A record that ended before the window matters only if a candidate
	// shares its start (they may be records of one flow), and those
	// candidates started before the window too: a few long flows.
	if len(early) > 0 {
		long := map[int64]struct{}{}
		for _, c := range cands {
			if c.start < from {
				long[c.start] = struct{}{}
			}
		}
		early = slices.DeleteFunc(early, func(r sliceRef) bool {
			_, ok := long[r.start]
			return !ok
		})
	}

	w := sliceWalk{views: views, from: from, limit: q.Limit}
	// Only the earliest Limit starts can be returned, unless records of one
	// flow share them: sort those first, and the rest only if needed.
	if len(cands) > 2*q.Limit {
		kth := nthStart(cands, q.Limit-1, &bufs.starts)
		headC, tailC := splitByStart(cands, kth)
		headE, tailE := splitByStart(early, kth)
		if err := w.walk(headC, headE); err != nil {
			return nil, err
		}
		cands, early = tailC, tailE
	}
	if err := w.walk(cands, early); err != nil {
		return nil, err
	}
	picked := w.picked
	var r flow.Record
	picked = picked[:min(len(picked), q.Limit)]
	out := make([]flow.Record, 0, len(picked))
	attrs := attrCache{}
	for _, ref := range picked {
		v := &views[ref.vi()]
		d := dec{b: v.data, i: int(ref.off())}
		id, ok := decodeRecord(&d, v.sg.base, v.entry, &r)
		if !ok {
			return nil, fmt.Errorf("store: query: segment %d: corrupt record at %d", v.sg.seq, ref.off())
		}
		if id != 0 {
			a, err := attrs.of(v, id)
			if err != nil {
				return nil, err
			}
			r.Slice, r.Sliver, r.PodUID = a.slice, a.sliver, a.uid
		}
		out = append(out, r)
	}
	return out, nil
}

// sliceWalk picks a query's flows from candidates in start order.
type sliceWalk struct {
	views  []segView
	from   int64
	limit  int
	picked []sliceRef
	group  []sliceRef
	r      flow.Record
}

// walk sorts cands and early (records that ended before the window, which
// only take part in deduplication) and picks flows in start order until
// the limit. Every start in a later call must be after those of this one.
func (w *sliceWalk) walk(cands, early []sliceRef) error {
	if len(w.picked) >= w.limit {
		return nil
	}
	slices.SortFunc(cands, compareRefs)
	slices.SortFunc(early, compareRefs)
	e := 0
	for i := 0; i < len(cands) && len(w.picked) < w.limit; {
		start := cands[i].start
		j := i
		for j < len(cands) && cands[j].start == start {
			j++
		}
		for e < len(early) && early[e].start < start {
			e++
		}
		k := e
		for k < len(early) && early[k].start == start {
			k++
		}
		if j-i == 1 && k == e {
			w.picked = append(w.picked, cands[i]) // alone: nothing to deduplicate
			i = j
			continue
		}
		if err := w.dedup(append(append(w.group[:0], cands[i:j]...), early[e:k]...)); err != nil {
			return err
		}
		i, e = j, k
	}
	return nil
}

// dedup picks from records that share a start: the last written record of
// each flow decides whether it is in the window and is what is returned;
// flows keep the order of their first record.
func (w *sliceWalk) dedup(group []sliceRef) error {
	slices.SortFunc(group, func(a, b sliceRef) int { return cmp.Compare(a.pos, b.pos) })
	last := map[flowKey]int{}
	var order []flowKey
	for gi, ref := range group {
		v := &w.views[ref.vi()]
		d := dec{b: v.data, i: int(ref.off())}
		if _, ok := decodeRecord(&d, v.sg.base, v.entry, &w.r); !ok {
			return fmt.Errorf("store: query: segment %d: corrupt record at %d", v.sg.seq, ref.off())
		}
		key := flowKey{micros(w.r.Start), w.r.Proto, w.r.Orig}
		if _, ok := last[key]; !ok {
			order = append(order, key)
		}
		last[key] = gi
	}
	for _, key := range order {
		if ref := group[last[key]]; ref.end >= w.from {
			w.picked = append(w.picked, ref)
		}
	}
	return nil
}

// nthStart returns the n-th smallest start (0-based) of refs; buf is
// scratch space.
func nthStart(refs []sliceRef, n int, buf *[]int64) int64 {
	starts := (*buf)[:0]
	for _, r := range refs {
		starts = append(starts, r.start)
	}
	*buf = starts
	lo, hi := 0, len(starts)-1
	for lo < hi {
		pivot := starts[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for starts[i] < pivot {
				i++
			}
			for starts[j] > pivot {
				j--
			}
			if i <= j {
				starts[i], starts[j] = starts[j], starts[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return starts[n]
		}
	}
	return starts[n]
}

// splitByStart splits refs (in place) into those that start at or before
// s and those after.
func splitByStart(refs []sliceRef, s int64) (head, tail []sliceRef) {
	i := 0
	for j := range refs {
		if refs[j].start <= s {
			refs[i], refs[j] = refs[j], refs[i]
			i++
		}
	}
	return refs[:i], refs[i:]
}

// peekTimes reads a record's flags, its start and end (µs) and whether it
// is open, from the first bytes of its encoding (see decodeRecord).
func peekTimes(d *dec, base int64) (flags byte, start, end int64, open, ok bool) {
	flags = d.byte1()
	if flags>>fProtoSh == 0 {
		d.byte1()
	}
	start = base + unzz(d.uvarint())
	open = flags&fOpen != 0
	if !open {
		end = start + unzz(d.uvarint())
	}
	return flags, start, end, open, !d.bad
}

// peekDstPort reads the original destination's port of the record whose
// flags and times peekTimes read at d's position: past the source's
// dictionary id and port and the destination's address (see
// decodeRecord).
func peekDstPort(d *dec, flags byte) (uint16, bool) {
	d.uvarint()
	d.u16()
	k := flags & fDstKind
	if k == 3 {
		return 0, false
	}
	d.bytes(addrLen(k))
	port := d.u16()
	return port, !d.bad
}
