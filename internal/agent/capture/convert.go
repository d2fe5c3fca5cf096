package capture

import (
	"net/netip"

	"github.com/ti-mo/conntrack"

	"github.com/planetkube/planetkube/internal/flow"
)

// key identifies a conntrack entry: its ID (which the kernel may reuse) and
// its original tuple. It holds no pointers, so that the table of open flows
// costs the garbage collector nothing to scan and hashes fast.
type key struct {
	id           uint32
	proto        uint8
	sport, dport uint16
	src, dst     [16]byte
}

// newKey is the key of a conntrack entry with this ID, protocol and
// original tuple.
func newKey(id uint32, proto uint8, orig flow.Tuple) key {
	return key{id: id, proto: proto, sport: orig.Src.Port(), dport: orig.Dst.Port(), src: orig.Src.Addr().As16(), dst: orig.Dst.Addr().As16()}
}

// convert turns a conntrack flow into its key and a record with both tuples,
// the counters, and Start and End from the kernel's timestamps (zero when
// absent). Addresses are unmapped. For ICMP and ICMPv6, which have no ports,
// the original source port and the reply destination port carry the ICMP
// ID. ok is false when the flow has no valid original or reply tuple.
func convert(f *conntrack.Flow) (k key, rec flow.Record, ok bool) {
	orig, ok1 := tuple(f.TupleOrig, false)
	reply, ok2 := tuple(f.TupleReply, true)
	if !ok1 || !ok2 {
		return key{}, flow.Record{}, false
	}
	rec = flow.Record{
		Proto:        f.TupleOrig.Proto.Protocol,
		Orig:         orig,
		Reply:        reply,
		OrigBytes:    f.CountersOrig.Bytes,
		OrigPackets:  f.CountersOrig.Packets,
		ReplyBytes:   f.CountersReply.Bytes,
		ReplyPackets: f.CountersReply.Packets,
	}
	if !f.Timestamp.Start.IsZero() && f.Timestamp.Start.UnixNano() > 0 {
		rec.Start = f.Timestamp.Start
	}
	if !f.Timestamp.Stop.IsZero() && f.Timestamp.Stop.UnixNano() > 0 {
		rec.End = f.Timestamp.Stop
	}
	return newKey(f.ID, rec.Proto, orig), rec, true
}

// tuple converts one conntrack tuple; reply says it is the reply direction
// (where an ICMP ID goes to the destination port).
func tuple(t conntrack.Tuple, reply bool) (flow.Tuple, bool) {
	src, dst := t.IP.SourceAddress.Unmap(), t.IP.DestinationAddress.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return flow.Tuple{}, false
	}
	sport, dport := t.Proto.SourcePort, t.Proto.DestinationPort
	if t.Proto.ICMPv4 || t.Proto.ICMPv6 {
		sport, dport = t.Proto.ICMPID, 0
		if reply {
			sport, dport = 0, t.Proto.ICMPID
		}
	}
	return flow.Tuple{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}, true
}

// counters are a record's four counters.
type counters struct{ origBytes, origPackets, replyBytes, replyPackets uint64 }

// countersOf returns the counters of rec.
func countersOf(rec *flow.Record) counters {
	return counters{rec.OrigBytes, rec.OrigPackets, rec.ReplyBytes, rec.ReplyPackets}
}
