package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// segment is one data file and, once sealed, its index file.
//
// An open segment keeps a copy of its data and its index in memory (the
// writer appends under Store.mu, queries read under its read lock); a
// sealed one has both files mapped read-only.
type segment struct {
	// use is held for reading by the queries that read the segment's
	// mapped files outside Store.mu, and for writing by whoever unmaps
	// them (drop, release), after the segment left Store.segs.
	use sync.RWMutex

	seq      uint64
	base     int64 // µs; record starts are relative to it
	minStart int64 // µs, smallest record start
	maxTime  int64 // µs, largest of record starts, ends and batch insert times
	records  int64
	dataSize int64 // committed bytes of the data file
	idxSize  int64

	// Sealed.
	data []byte // mapped data file (dataSize bytes)
	idx  []byte // mapped index file
	ix   idxView

	// Open.
	buf     []byte                  // copy of the data file
	dict    [][]byte                // dictionary entries, id-1 -> bytes
	dst     map[netip.Addr][]uint32 // dst -> record offsets, increasing
	slices  map[string][]uint32     // slice -> record offsets, increasing
	f       *os.File                // data file, for appending (writer only)
	intern  map[string]uint64       // dictionary entry -> id (writer only)
	sliceOf map[uint64]string       // attribution id -> slice (writer only)
	created time.Time               // first insert, by the store's clock
}

func segName(dir string, seq uint64, ext string) string {
	return filepath.Join(dir, SegmentFileName(seq, ext))
}

func (sg *segment) sealed() bool { return sg.f == nil && sg.buf == nil }

func (sg *segment) bytes() []byte {
	if sg.buf != nil {
		return sg.buf
	}
	return sg.data
}

func (sg *segment) diskBytes() int64 { return sg.dataSize + sg.idxSize }

// newOpenSegment returns an empty in-memory open segment.
func newOpenSegment(seq uint64, base int64) *segment {
	return &segment{
		seq: seq, base: base, minStart: math.MaxInt64, maxTime: math.MinInt64,
		dst: map[netip.Addr][]uint32{}, slices: map[string][]uint32{},
		intern: map[string]uint64{}, sliceOf: map[uint64]string{},
	}
}

func logHeader(base int64) []byte {
	b := append([]byte(logMagic), make([]byte, 8)...)
	binary.LittleEndian.PutUint64(b[8:], uint64(base))
	return b
}

// entry returns dictionary entry id (1-based).
func (sg *segment) entry(id uint64) ([]byte, bool) {
	if !sg.sealed() {
		if id == 0 || id > uint64(len(sg.dict)) {
			return nil, false
		}
		return sg.dict[id-1], true
	}
	return sg.ix.entry(id)
}

// frameEntry is one record of a frame being applied.
type frameEntry struct {
	off   uint32
	dst   netip.Addr
	slice string
}

// parsedFrame is a frame's effect on a segment's in-memory index.
type parsedFrame struct {
	dict      [][]byte
	entries   []frameEntry
	minStart  int64
	maxTime   int64
	newSlices map[uint64]string
}

// parseFrame decodes the payload of a frame that starts at offset off
// (header included) of the segment, validating every record.
func (sg *segment) parseFrame(payload []byte, off int64) (parsedFrame, error) {
	pf := parsedFrame{minStart: math.MaxInt64, maxTime: math.MinInt64}
	d := dec{b: payload}
	pf.maxTime = sg.base + unzz(d.uvarint())
	n := d.uvarint()
	if n > uint64(len(payload)) {
		return pf, errors.New("bad dictionary count")
	}
	for range n {
		l := d.uvarint()
		if l > uint64(len(payload)) {
			return pf, errors.New("bad dictionary entry")
		}
		pf.dict = append(pf.dict, d.bytes(int(l)))
	}
	nd := uint64(len(sg.dict))
	entry := func(id uint64) ([]byte, bool) {
		switch {
		case id == 0:
			return nil, false
		case id <= nd:
			return sg.dict[id-1], true
		case id-nd <= uint64(len(pf.dict)):
			return pf.dict[id-nd-1], true
		}
		return nil, false
	}
	nr := d.uvarint()
	if d.bad || nr > uint64(len(payload)) {
		return pf, errors.New("bad record count")
	}
	pf.entries = make([]frameEntry, 0, nr)
	var r flow.Record
	for range nr {
		roff := off + frameHeaderSize + int64(d.i)
		attr, ok := decodeRecord(&d, sg.base, entry, &r)
		if !ok {
			return pf, errors.New("bad record")
		}
		start := micros(r.Start)
		pf.minStart = min(pf.minStart, start)
		pf.maxTime = max(pf.maxTime, start)
		if !r.End.IsZero() {
			pf.maxTime = max(pf.maxTime, micros(r.End))
		}
		fe := frameEntry{off: uint32(roff), dst: r.Orig.Dst.Addr()}
		if attr != 0 {
			s, ok := sg.sliceOf[attr]
			if !ok {
				if s, ok = pf.newSlices[attr]; !ok {
					e, _ := entry(attr)
					if s, ok = sliceOfAttr(e); !ok {
						return pf, errors.New("bad attribution")
					}
					if pf.newSlices == nil {
						pf.newSlices = map[uint64]string{}
					}
					pf.newSlices[attr] = s
				}
			}
			fe.slice = s
		}
		pf.entries = append(pf.entries, fe)
	}
	if d.bad || d.i != len(payload) {
		return pf, errors.New("bad frame length")
	}
	return pf, nil
}

// apply adds a parsed frame to the open segment's in-memory index; the
// caller holds Store.mu (or owns the segment alone).
func (sg *segment) apply(pf parsedFrame, frame []byte) {
	for _, e := range pf.dict {
		e = bytes.Clone(e)
		sg.dict = append(sg.dict, e)
		sg.intern[string(e)] = uint64(len(sg.dict))
	}
	for id, s := range pf.newSlices {
		sg.sliceOf[id] = s
	}
	for _, e := range pf.entries {
		if e.dst.IsValid() {
			sg.dst[e.dst] = append(sg.dst[e.dst], e.off)
		}
		if e.slice != "" {
			sg.slices[e.slice] = append(sg.slices[e.slice], e.off)
		}
	}
	sg.records += int64(len(pf.entries))
	sg.minStart = min(sg.minStart, pf.minStart)
	sg.maxTime = max(sg.maxTime, pf.maxTime)
	sg.buf = append(sg.buf, frame...)
	sg.dataSize = int64(len(sg.buf))
}

// recoverData rebuilds an open segment from the bytes of its data file:
// every complete, valid frame from the start; it returns the segment and
// the length of the valid prefix (the rest is a torn or corrupt tail).
func recoverData(seq uint64, b []byte) (*segment, int64, error) {
	if len(b) < logHeaderSize || string(b[:8]) != logMagic {
		return nil, 0, errors.New("bad data file header")
	}
	sg := newOpenSegment(seq, int64(binary.LittleEndian.Uint64(b[8:16])))
	sg.buf = append(make([]byte, 0, len(b)), b[:logHeaderSize]...)
	sg.dataSize = logHeaderSize
	off := int64(logHeaderSize)
	for {
		rest := b[off:]
		if len(rest) < frameHeaderSize {
			break
		}
		n := int64(binary.LittleEndian.Uint32(rest))
		if n > maxFrame || n > int64(len(rest))-frameHeaderSize {
			break
		}
		payload := rest[frameHeaderSize : frameHeaderSize+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			break
		}
		pf, err := sg.parseFrame(payload, off)
		if err != nil {
			break
		}
		if sg.records == 0 && len(pf.entries) > 0 {
			sg.created = fromMicros(pf.maxTime)
		}
		sg.apply(pf, rest[:frameHeaderSize+n])
		off += frameHeaderSize + n
	}
	return sg, off, nil
}

// buildIndex returns the index file of an open segment.
func (sg *segment) buildIndex() []byte {
	var d4, d6 []netip.Addr
	for a := range sg.dst {
		if a.Is4() {
			d4 = append(d4, a)
		} else {
			d6 = append(d6, a)
		}
	}
	slices.SortFunc(d4, func(a, b netip.Addr) int { return a.Compare(b) })
	slices.SortFunc(d6, func(a, b netip.Addr) int { return a.Compare(b) })
	names := make([]string, 0, len(sg.slices))
	for s := range sg.slices {
		names = append(names, s)
	}
	sort.Strings(names)

	var blob []byte
	postings := func(offs []uint32) uint32 {
		at := uint32(len(blob))
		blob = binary.AppendUvarint(blob, uint64(len(offs)))
		prev := uint32(0)
		for _, o := range offs {
			blob = binary.AppendUvarint(blob, uint64(o-prev))
			prev = o
		}
		return at
	}
	str := func(s []byte) uint32 {
		at := uint32(len(blob))
		blob = binary.AppendUvarint(blob, uint64(len(s)))
		blob = append(blob, s...)
		return at
	}
	le := binary.LittleEndian
	tables := make([]byte, 0, 8*len(d4)+20*len(d6)+8*len(names)+4*len(sg.dict))
	for _, a := range d4 {
		tables = appendAddr(tables, a)
		tables = le.AppendUint32(tables, postings(sg.dst[a]))
	}
	for _, a := range d6 {
		tables = appendAddr(tables, a)
		tables = le.AppendUint32(tables, postings(sg.dst[a]))
	}
	data := sg.bytes()
	for _, s := range names {
		tables = le.AppendUint32(tables, str([]byte(s)))
		offs := sg.slices[s]
		tables = le.AppendUint32(tables, postings(offs))
		blob = appendTimes(blob, data, sg.base, offs)
	}
	for _, e := range sg.dict {
		tables = le.AppendUint32(tables, str(e))
	}

	b := make([]byte, 0, idxHeaderSize+len(tables)+len(blob)+4)
	b = append(b, idxMagic...)
	b = le.AppendUint64(b, uint64(sg.dataSize))
	b = le.AppendUint64(b, uint64(sg.records))
	b = le.AppendUint64(b, uint64(sg.base))
	b = le.AppendUint64(b, uint64(sg.minStart))
	b = le.AppendUint64(b, uint64(sg.maxTime))
	b = le.AppendUint32(b, uint32(len(d4)))
	b = le.AppendUint32(b, uint32(len(d6)))
	b = le.AppendUint32(b, uint32(len(names)))
	b = le.AppendUint32(b, uint32(len(sg.dict)))
	b = append(b, tables...)
	b = append(b, blob...)
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// appendTimes appends the times of the records at offs (in data) as a slice
// posting list's times: for each, the zigzag delta of its start from the
// previous one's (from base for the first), then 0 for an open record or
// 1 + its duration, as uvarints (see doc.go).
func appendTimes(blob, data []byte, base int64, offs []uint32) []byte {
	prev := base
	for _, o := range offs {
		d := dec{b: data, i: int(o)}
		_, start, end, open, _ := peekTimes(&d, base) // records were checked when written
		blob = binary.AppendUvarint(blob, zz(start-prev))
		prev = start
		if open {
			blob = binary.AppendUvarint(blob, 0)
		} else {
			blob = binary.AppendUvarint(blob, zz(end-start)+1)
		}
	}
	return blob
}

// idxView reads an index file in place.
type idxView struct {
	v2                      bool   // slice postings carry times
	b                       []byte // the file without its checksum
	n4, n6, nSlice, nDict   int
	dst4, dst6, slice, dict int // table offsets
	blob                    int
	dataSize, records       int64
	base, minStart, maxTime int64
}

// parseIndex checks an index file and returns its view.
func parseIndex(b []byte) (idxView, error) {
	var v idxView
	if len(b) < idxHeaderSize+4 || string(b[:8]) != idxMagic && string(b[:8]) != idxMagicV1 {
		return v, errors.New("bad index header")
	}
	v.v2 = string(b[:8]) == idxMagic
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return v, errors.New("bad index checksum")
	}
	le := binary.LittleEndian
	v.b = body
	v.dataSize = int64(le.Uint64(b[8:]))
	v.records = int64(le.Uint64(b[16:]))
	v.base = int64(le.Uint64(b[24:]))
	v.minStart = int64(le.Uint64(b[32:]))
	v.maxTime = int64(le.Uint64(b[40:]))
	n4, n6, ns, nd := uint64(le.Uint32(b[48:])), uint64(le.Uint32(b[52:])), uint64(le.Uint32(b[56:])), uint64(le.Uint32(b[60:]))
	end := uint64(idxHeaderSize) + 8*n4 + 20*n6 + 8*ns + 4*nd
	if end > uint64(len(body)) || v.dataSize < logHeaderSize || v.dataSize > maxSegmentBytes+maxFrame+frameHeaderSize || v.records < 0 {
		return v, errors.New("bad index tables")
	}
	v.n4, v.n6, v.nSlice, v.nDict = int(n4), int(n6), int(ns), int(nd)
	v.dst4 = idxHeaderSize
	v.dst6 = v.dst4 + 8*v.n4
	v.slice = v.dst6 + 20*v.n6
	v.dict = v.slice + 8*v.nSlice
	v.blob = v.dict + 4*v.nDict
	return v, nil
}

func (v *idxView) u32(at int) uint32 { return binary.LittleEndian.Uint32(v.b[at:]) }

// blobAt returns a decoder after the length prefix at blob offset off, and
// that length (bytes of a string, items of a list: at most the bytes left).
func (v *idxView) blobAt(off uint32) (dec, uint64, bool) {
	at := uint64(v.blob) + uint64(off)
	if at >= uint64(len(v.b)) {
		return dec{}, 0, false
	}
	d := dec{b: v.b[at:]}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return dec{}, 0, false
	}
	return d, n, true
}

// blobBytes returns the length-prefixed string at blob offset off.
func (v *idxView) blobBytes(off uint32) ([]byte, bool) {
	d, n, ok := v.blobAt(off)
	if !ok {
		return nil, false
	}
	s := d.bytes(int(n))
	return s, !d.bad
}

func (v *idxView) entry(id uint64) ([]byte, bool) {
	if id == 0 || id > uint64(v.nDict) {
		return nil, false
	}
	return v.blobBytes(v.u32(v.dict + 4*int(id-1)))
}

// postings decodes the offsets list at blob offset off; offsets must fall
// inside the data (size bytes). It also returns a decoder at what follows
// the list (a slice posting list's times in a v2 index).
func (v *idxView) postings(off uint32, size int64) ([]uint32, dec, bool) {
	d, n, ok := v.blobAt(off)
	if !ok {
		return nil, dec{}, false
	}
	out := make([]uint32, 0, n)
	var o uint64
	for range n {
		o += d.uvarint()
		if d.bad || o >= uint64(size) {
			return nil, dec{}, false
		}
		out = append(out, uint32(o))
	}
	return out, d, true
}

// sliceTimes reads a slice posting list's times (see appendTimes) in
// order; it starts at the segment's base.
type sliceTimes struct {
	d    dec
	prev int64
}

// next returns the next record's start and end (µs) and whether it is
// open; ok is false past the data.
func (t *sliceTimes) next() (start, end int64, open, ok bool) {
	start = t.prev + unzz(t.d.uvarint())
	t.prev = start
	dur := t.d.uvarint()
	if dur == 0 {
		open = true
	} else {
		end = start + unzz(dur-1)
	}
	return start, end, open, !t.d.bad
}

// lookupDst returns the blob offset of a's postings.
func (v *idxView) lookupDst(a netip.Addr) (uint32, bool) {
	key := appendAddr(nil, a)
	tab, n, w := v.dst4, v.n4, 8
	if a.Is6() {
		tab, n, w = v.dst6, v.n6, 20
	}
	kl := len(key)
	i := sort.Search(n, func(i int) bool {
		return bytes.Compare(v.b[tab+i*w:tab+i*w+kl], key) >= 0
	})
	if i == n || !bytes.Equal(v.b[tab+i*w:tab+i*w+kl], key) {
		return 0, false
	}
	return v.u32(tab + i*w + kl), true
}

// lookupSlice returns the blob offset of slice s's postings.
func (v *idxView) lookupSlice(s string) (uint32, bool, error) {
	var bad bool
	name := func(i int) []byte {
		b, ok := v.blobBytes(v.u32(v.slice + 8*i))
		if !ok {
			bad = true
		}
		return b
	}
	i := sort.Search(v.nSlice, func(i int) bool { return string(name(i)) >= s })
	if bad {
		return 0, false, errors.New("bad slice table")
	}
	if i == v.nSlice || string(name(i)) != s {
		return 0, false, nil
	}
	return v.u32(v.slice + 8*i + 4), true, nil
}

// offsets returns the record offsets of segment sg for a query on dst (if
// valid) else on slice, and for a slice in a sealed segment with a v2 index
// the reader of their times (else nil). The caller holds Store.mu for
// reading.
func (sg *segment) offsets(dst netip.Addr, slice string) ([]uint32, *sliceTimes, error) {
	if !sg.sealed() {
		if dst.IsValid() {
			return sg.dst[dst], nil, nil
		}
		return sg.slices[slice], nil, nil
	}
	var off uint32
	var ok bool
	if dst.IsValid() {
		off, ok = sg.ix.lookupDst(dst)
	} else {
		var err error
		if off, ok, err = sg.ix.lookupSlice(slice); err != nil {
			return nil, nil, err
		}
	}
	if !ok {
		return nil, nil, nil
	}
	offs, rest, ok := sg.ix.postings(off, sg.dataSize)
	if !ok {
		return nil, nil, errors.New("bad postings")
	}
	if dst.IsValid() || !sg.ix.v2 {
		return offs, nil, nil
	}
	return offs, &sliceTimes{d: rest, prev: sg.base}, nil
}

// mapFile maps size bytes of f read-only.
func mapFile(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || size > math.MaxInt32*2 {
		return nil, fmt.Errorf("cannot map %d bytes", size)
	}
	return syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
}

func unmap(b []byte) {
	if b != nil {
		syscall.Munmap(b)
	}
}

// loadSealed maps a sealed segment's files and checks them.
func loadSealed(dir string, seq uint64) (*segment, error) {
	ib, err := readMapped(segName(dir, seq, "idx"), -1)
	if err != nil {
		return nil, err
	}
	v, err := parseIndex(ib)
	if err != nil {
		unmap(ib)
		return nil, err
	}
	db, err := readMapped(segName(dir, seq, "log"), v.dataSize)
	if err != nil {
		unmap(ib)
		return nil, err
	}
	if string(db[:8]) != logMagic || int64(binary.LittleEndian.Uint64(db[8:16])) != v.base {
		unmap(ib)
		unmap(db)
		return nil, errors.New("data file does not match its index")
	}
	return &segment{
		seq: seq, base: v.base, minStart: v.minStart, maxTime: v.maxTime,
		records: v.records, dataSize: v.dataSize, idxSize: int64(len(ib)),
		data: db, idx: ib, ix: v,
	}, nil
}

// readMapped maps the first size bytes of a file (size -1: all of it); the
// file must hold at least size bytes.
func readMapped(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if size < 0 {
		size = fi.Size()
	}
	if fi.Size() < size || size < logHeaderSize {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, fi.Size(), size)
	}
	return mapFile(f, size)
}
