package store

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// On-disk constants; doc.go specifies the layout.
const (
	logMagic = "PKFSLOG1"
	idxMagic = "PKFSIDX2"
	// idxMagicV1 is the index without slice times, still read.
	idxMagicV1      = "PKFSIDX1"
	logHeaderSize   = 16
	frameHeaderSize = 8
	idxHeaderSize   = 64
	// maxFrame bounds one frame's payload (one Add batch).
	maxFrame = 256 << 20
	// maxSegmentBytes bounds Options.SegmentBytes, so that record offsets
	// fit in 32 bits.
	maxSegmentBytes = 1 << 30
)

// Record flags (first byte of a record).
const (
	fDstKind   = 3      // original destination: 0 invalid, 1 IPv4, 2 IPv6
	fOpen      = 1 << 2 // End is zero
	fMirrorSrc = 1 << 3 // Reply.Src == Orig.Dst
	fNoNAT     = 1 << 4 // Reply.Dst == Orig.Src
	fSamePort  = 1 << 5 // Reply.Dst.Port == Orig.Src.Port (NAT case)
	fProtoSh   = 6      // bits 6-7: 0 other (a byte follows), 1 TCP, 2 UDP, 3 ICMP
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func zz(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzz(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// micros is t in unix microseconds (the store's precision).
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros inverts micros, in UTC; the zero time round-trips.
func fromMicros(us int64) time.Time {
	t := time.UnixMicro(us).UTC()
	if t.Equal(time.Time{}) {
		return time.Time{}
	}
	return t
}

// norm is how the store keeps an address: IPv4-mapped IPv6 as IPv4, no zone.
func norm(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func normAP(p netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(norm(p.Addr()), p.Port())
}

func addrKind(a netip.Addr) byte {
	switch {
	case a.Is4():
		return 1
	case a.Is6():
		return 2
	}
	return 0
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		v := a.As4()
		return append(b, v[:]...)
	case a.Is6():
		v := a.As16()
		return append(b, v[:]...)
	}
	return b
}

// addrFrom decodes appendAddr's bytes; ok is false for a bad length.
func addrFrom(b []byte) (netip.Addr, bool) {
	switch len(b) {
	case 0:
		return netip.Addr{}, true
	case 4:
		return netip.AddrFrom4([4]byte(b)), true
	case 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

func addrLen(kind byte) int {
	switch kind {
	case 1:
		return 4
	case 2:
		return 16
	}
	return 0
}

func appendU16(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }

// attribution is a record's Slice, Sliver and PodUID.
type attribution struct{ slice, sliver, uid string }

// appendAttr encodes an attribution as a dictionary entry.
func appendAttr(b []byte, a attribution) []byte {
	for _, s := range [3]string{a.slice, a.sliver, a.uid} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func parseAttr(e []byte) (attribution, bool) {
	d := dec{b: e}
	var s [3]string
	for i := range s {
		s[i] = string(d.bytes(int(min(d.uvarint(), uint64(len(e)+1)))))
	}
	if d.bad || d.i != len(e) {
		return attribution{}, false
	}
	return attribution{s[0], s[1], s[2]}, true
}

// sliceOfAttr returns the slice of an encoded attribution.
func sliceOfAttr(e []byte) (string, bool) {
	a, ok := parseAttr(e)
	return a.slice, ok
}

// dec reads varints and bytes from b, never past its end: the first short
// read sets bad and every later read returns zero values.
type dec struct {
	b   []byte
	i   int
	bad bool
}

func (d *dec) uvarint() uint64 {
	if d.bad {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.i += n
	return v
}

func (d *dec) byte1() byte {
	if d.bad || d.i >= len(d.b) {
		d.bad = true
		return 0
	}
	d.i++
	return d.b[d.i-1]
}

func (d *dec) u16() uint16 {
	b := d.bytes(2)
	if len(b) < 2 {
		return 0
	}
	return uint16(b[0]) | uint16(b[1])<<8
}

func (d *dec) bytes(n int) []byte {
	if d.bad || n < 0 || n > len(d.b)-d.i {
		d.bad = true
		return nil
	}
	d.i += n
	return d.b[d.i-n : d.i]
}

// encoder appends records of one segment; intern returns the dictionary id
// (1-based) of an entry, adding it to the frame being built if new.
type encoder struct {
	base   int64
	intern func(entry []byte) uint64
	tmp    []byte
}

// appendRecord encodes r (already normalized) after b.
func (e *encoder) appendRecord(b []byte, r *flow.Record) []byte {
	flags := addrKind(r.Orig.Dst.Addr())
	if r.End.IsZero() {
		flags |= fOpen
	}
	if r.Reply.Src == r.Orig.Dst {
		flags |= fMirrorSrc
	}
	if r.Reply.Dst == r.Orig.Src {
		flags |= fNoNAT
	} else if r.Reply.Dst.Port() == r.Orig.Src.Port() {
		flags |= fSamePort
	}
	var proto byte
	switch r.Proto {
	case 6:
		proto = 1
	case 17:
		proto = 2
	case 1:
		proto = 3
	}
	flags |= proto << fProtoSh
	b = append(b, flags)
	if proto == 0 {
		b = append(b, r.Proto)
	}
	start := micros(r.Start)
	b = binary.AppendUvarint(b, zz(start-e.base))
	if flags&fOpen == 0 {
		b = binary.AppendUvarint(b, zz(micros(r.End)-start))
	}
	e.tmp = appendAddr(e.tmp[:0], r.Orig.Src.Addr())
	b = binary.AppendUvarint(b, e.intern(e.tmp))
	b = appendU16(b, r.Orig.Src.Port())
	b = appendAddr(b, r.Orig.Dst.Addr())
	b = appendU16(b, r.Orig.Dst.Port())
	if flags&fMirrorSrc == 0 {
		b = append(b, addrKind(r.Reply.Src.Addr()))
		b = appendAddr(b, r.Reply.Src.Addr())
		b = appendU16(b, r.Reply.Src.Port())
	}
	if flags&fNoNAT == 0 {
		e.tmp = appendAddr(e.tmp[:0], r.Reply.Dst.Addr())
		b = binary.AppendUvarint(b, e.intern(e.tmp))
		if flags&fSamePort == 0 {
			b = appendU16(b, r.Reply.Dst.Port())
		}
	}
	b = binary.AppendUvarint(b, r.OrigBytes)
	b = binary.AppendUvarint(b, r.OrigPackets)
	b = binary.AppendUvarint(b, r.ReplyBytes)
	b = binary.AppendUvarint(b, r.ReplyPackets)
	var attr uint64
	if r.Slice != "" || r.Sliver != "" || r.PodUID != "" {
		e.tmp = appendAttr(e.tmp[:0], attribution{r.Slice, r.Sliver, r.PodUID})
		attr = e.intern(e.tmp)
	}
	return binary.AppendUvarint(b, attr)
}

// addrEntry reads a dictionary id at d's position and returns the address
// that entry interns.
func addrEntry(d *dec, entry func(uint64) ([]byte, bool)) (netip.Addr, bool) {
	e, ok := entry(d.uvarint())
	if !ok {
		return netip.Addr{}, false
	}
	return addrFrom(e)
}

// decodeRecord decodes the record at d's position (all but the
// attribution's strings: attr is its dictionary id, 0 for none). entry
// returns a dictionary entry by id. ok is false on corrupt input.
func decodeRecord(d *dec, base int64, entry func(uint64) ([]byte, bool), r *flow.Record) (attr uint64, ok bool) {
	*r = flow.Record{}
	flags := d.byte1()
	switch flags >> fProtoSh {
	case 0:
		r.Proto = d.byte1()
	case 1:
		r.Proto = 6
	case 2:
		r.Proto = 17
	case 3:
		r.Proto = 1
	}
	start := base + unzz(d.uvarint())
	r.Start = fromMicros(start)
	if flags&fOpen == 0 {
		r.End = fromMicros(start + unzz(d.uvarint()))
	}
	src, ok := addrEntry(d, entry)
	if !ok {
		return 0, false
	}
	r.Orig.Src = netip.AddrPortFrom(src, d.u16())
	dk := flags & fDstKind
	if dk == 3 {
		return 0, false
	}
	dst, _ := addrFrom(d.bytes(addrLen(dk)))
	r.Orig.Dst = netip.AddrPortFrom(dst, d.u16())
	if flags&fMirrorSrc != 0 {
		r.Reply.Src = r.Orig.Dst
	} else {
		k := d.byte1()
		if k > 2 {
			return 0, false
		}
		a, _ := addrFrom(d.bytes(addrLen(k)))
		r.Reply.Src = netip.AddrPortFrom(a, d.u16())
	}
	if flags&fNoNAT != 0 {
		r.Reply.Dst = r.Orig.Src
	} else {
		a, ok := addrEntry(d, entry)
		if !ok {
			return 0, false
		}
		port := r.Orig.Src.Port()
		if flags&fSamePort == 0 {
			port = d.u16()
		}
		r.Reply.Dst = netip.AddrPortFrom(a, port)
	}
	r.OrigBytes = d.uvarint()
	r.OrigPackets = d.uvarint()
	r.ReplyBytes = d.uvarint()
	r.ReplyPackets = d.uvarint()
	attr = d.uvarint()
	if d.bad {
		return 0, false
	}
	return attr, true
}
