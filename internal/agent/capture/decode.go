package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/planetkube/planetkube/internal/flow"
)

// Netlink and ctnetlink numbers the decoder reads (linux/netlink.h,
// linux/netfilter/nfnetlink_conntrack.h).
const (
	nlmsgHdrLen  = 16
	nfgenHdrLen  = 4
	nlaHdrLen    = 4
	nlaTypeMask  = 0x00ff // ctnetlink types are below 256; drops NLA_F_NESTED and NLA_F_NET_BYTEORDER (as ti-mo/conntrack does)
	ctnlSubsys   = 1      // NFNL_SUBSYS_CTNETLINK
	ctMsgNew     = 0      // IPCTNL_MSG_CT_NEW
	ctMsgDelete  = 2      // IPCTNL_MSG_CT_DELETE
	nlmFCreate   = 0x400
	nlmFExcl     = 0x200
	ctaTupleOrig = 1
	ctaTupleRepl = 2
	ctaCountOrig = 9
	ctaCountRepl = 10
	ctaID        = 12
	ctaTimestamp = 20

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src, ctaIPv4Dst, ctaIPv6Src, ctaIPv6Dst = 1, 2, 3, 4

	ctaProtoNum, ctaProtoSrcPort, ctaProtoDstPort, ctaProtoICMPID = 1, 2, 3, 4
	ctaProtoICMPv6ID                                              = 7

	ctaCountPackets, ctaCountBytes, ctaCount32Packets, ctaCount32Bytes = 1, 2, 3, 4

	ctaTimestampStart, ctaTimestampStop = 1, 2
)

var errTruncated = errors.New("truncated conntrack message")

// attrs walks the netlink attributes of b.
type attrs struct {
	b   []byte
	bad bool
}

// next returns the next attribute's type (flags cleared) and payload; ok
// is false at the end or on a malformed attribute (then bad is set).
func (a *attrs) next() (typ uint16, data []byte, ok bool) {
	if len(a.b) < nlaHdrLen {
		a.bad = len(a.b) != 0
		return 0, nil, false
	}
	n := int(binary.NativeEndian.Uint16(a.b))
	if n > len(a.b) {
		a.bad = true
		return 0, nil, false
	}
	typ = binary.NativeEndian.Uint16(a.b[2:]) & nlaTypeMask
	// A length below the header's is an empty attribute taking a header's
	// room, as the netlink library reads it.
	n = max(n, nlaHdrLen)
	data = a.b[nlaHdrLen:n]
	adv := (n + 3) &^ 3
	if adv > len(a.b) {
		adv = len(a.b)
	}
	a.b = a.b[adv:]
	return typ, data, true
}

// decodeEvent decodes one conntrack event message (a netlink message of
// the ctnetlink subsystem) without allocating: the header says NEW or
// DESTROY, and the attributes give the key and the record that convert
// would make (both tuples, the counters, the timestamps, the ID). Unknown
// attributes are skipped, as the kernel adds new ones.
func decodeEvent(b []byte, at time.Time) event {
	ev := event{at: at, typ: evDecodeError}
	if len(b) < nlmsgHdrLen+nfgenHdrLen {
		ev.err = errTruncated
		return ev
	}
	n := int(binary.NativeEndian.Uint32(b))
	typ := binary.NativeEndian.Uint16(b[4:])
	flags := binary.NativeEndian.Uint16(b[6:])
	if n < nlmsgHdrLen+nfgenHdrLen || n > len(b) {
		ev.err = errTruncated
		return ev
	}
	if typ>>8 != ctnlSubsys {
		ev.err = fmt.Errorf("message type %#x is not conntrack's", typ)
		return ev
	}
	switch typ & 0xff {
	case ctMsgNew:
		if flags&(nlmFCreate|nlmFExcl) == 0 {
			ev.err = errors.New("unexpected event type update")
			return ev
		}
		ev.typ = evNew
	case ctMsgDelete:
		ev.typ = evDestroy
	default:
		ev.err = fmt.Errorf("unexpected conntrack message %d", typ&0xff)
		return ev
	}
	var (
		id            uint32
		orig, reply   flow.Tuple
		haveO, haveR  bool
		start, stop   int64
		proto         uint8
		origC, replyC [2]uint64 // bytes, packets
	)
	top := attrs{b: b[nlmsgHdrLen+nfgenHdrLen : n]}
	for {
		t, data, ok := top.next()
		if !ok {
			break
		}
		var okT bool
		switch t {
		case ctaTupleOrig:
			orig, proto, okT = decodeTuple(data, false)
			haveO = okT
		case ctaTupleRepl:
			reply, _, okT = decodeTuple(data, true)
			haveR = okT
		case ctaCountOrig:
			origC = decodeCounters(data)
		case ctaCountRepl:
			replyC = decodeCounters(data)
		case ctaID:
			if len(data) == 4 {
				id = binary.BigEndian.Uint32(data)
			}
		case ctaTimestamp:
			start, stop = decodeTimestamp(data)
		}
	}
	if top.bad || !haveO || !haveR {
		ev.typ, ev.err = evDecodeError, errors.New("flow without valid tuples")
		return ev
	}
	ev.rec = flow.Record{
		Proto: proto, Orig: orig, Reply: reply,
		OrigBytes: origC[0], OrigPackets: origC[1], ReplyBytes: replyC[0], ReplyPackets: replyC[1],
	}
	if start > 0 {
		ev.rec.Start = time.Unix(0, start)
	}
	if stop > 0 {
		ev.rec.End = time.Unix(0, stop)
	}
	ev.key = newKey(id, proto, orig)
	return ev
}

// decodeTuple decodes a CTA_TUPLE_* nest as convert's tuple does: addresses
// unmapped; for ICMP and ICMPv6 the ID is the source port of an original
// tuple and the destination port of a reply tuple.
func decodeTuple(b []byte, reply bool) (flow.Tuple, uint8, bool) {
	var src, dst netip.Addr
	var proto uint8
	var sport, dport, icmpID uint16
	var icmp bool
	a := attrs{b: b}
	for {
		t, data, ok := a.next()
		if !ok {
			break
		}
		switch t {
		case ctaTupleIP:
			ip := attrs{b: data}
			for {
				it, addr, ok := ip.next()
				if !ok {
					break
				}
				v, ok := netip.AddrFromSlice(addr)
				if !ok {
					return flow.Tuple{}, 0, false
				}
				switch it {
				case ctaIPv4Src, ctaIPv6Src:
					src = v.Unmap()
				case ctaIPv4Dst, ctaIPv6Dst:
					dst = v.Unmap()
				}
			}
			if ip.bad {
				return flow.Tuple{}, 0, false
			}
		case ctaTupleProto:
			p := attrs{b: data}
			for {
				pt, v, ok := p.next()
				if !ok {
					break
				}
				switch pt {
				case ctaProtoNum:
					if len(v) != 1 {
						return flow.Tuple{}, 0, false
					}
					proto = v[0]
					icmp = proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6
				case ctaProtoSrcPort, ctaProtoDstPort, ctaProtoICMPID, ctaProtoICMPv6ID:
					if len(v) != 2 {
						return flow.Tuple{}, 0, false
					}
					port := binary.BigEndian.Uint16(v)
					switch pt {
					case ctaProtoSrcPort:
						sport = port
					case ctaProtoDstPort:
						dport = port
					default:
						icmpID = port
					}
				}
			}
			if p.bad {
				return flow.Tuple{}, 0, false
			}
		}
	}
	if a.bad || !src.IsValid() || !dst.IsValid() {
		return flow.Tuple{}, 0, false
	}
	if icmp {
		sport, dport = icmpID, 0
		if reply {
			sport, dport = 0, icmpID
		}
	}
	return flow.Tuple{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}, proto, true
}

// decodeCounters decodes a CTA_COUNTERS_* nest: bytes and packets.
func decodeCounters(b []byte) [2]uint64 {
	var c [2]uint64
	a := attrs{b: b}
	for {
		t, v, ok := a.next()
		if !ok {
			return c
		}
		switch {
		case (t == ctaCountBytes || t == ctaCountPackets) && len(v) == 8:
			c[t&1] = binary.BigEndian.Uint64(v) // bytes → 0, packets → 1
		case (t == ctaCount32Bytes || t == ctaCount32Packets) && len(v) == 4:
			c[t&1] = uint64(binary.BigEndian.Uint32(v))
		}
	}
}

// decodeTimestamp decodes a CTA_TIMESTAMP nest: start and stop in Unix ns.
func decodeTimestamp(b []byte) (start, stop int64) {
	a := attrs{b: b}
	for {
		t, v, ok := a.next()
		if !ok {
			return start, stop
		}
		if len(v) != 8 {
			continue
		}
		switch t {
		case ctaTimestampStart:
			start = int64(binary.BigEndian.Uint64(v))
		case ctaTimestampStop:
			stop = int64(binary.BigEndian.Uint64(v))
		}
	}
}
