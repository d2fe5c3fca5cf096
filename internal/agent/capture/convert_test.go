package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/planetkube/planetkube/internal/flow"
)

func TestConvert(t *testing.T) {
	start := time.Unix(1700000000, 123)
	stop := start.Add(time.Second)
	ap := netip.MustParseAddrPort
	tcp := conntrack.NewFlow(6, 0, netip.MustParseAddr("::ffff:10.244.0.2"), netip.MustParseAddr("203.0.113.2"), 40000, 80, 0, 0)
	tcp.ID = 7
	tcp.TupleReply.IP.DestinationAddress = netip.MustParseAddr("203.0.113.1")
	tcp.TupleReply.Proto.DestinationPort = 40001
	tcp.CountersOrig = conntrack.Counter{Packets: 3, Bytes: 180}
	tcp.CountersReply = conntrack.Counter{Direction: true, Packets: 2, Bytes: 120}
	tcp.Timestamp = conntrack.Timestamp{Start: start, Stop: stop}

	icmp := conntrack.NewFlow(1, 0, netip.MustParseAddr("10.244.0.2"), netip.MustParseAddr("203.0.113.2"), 0, 0, 0, 0)
	icmp.TupleOrig.Proto.ICMPv4, icmp.TupleOrig.Proto.ICMPID = true, 99
	icmp.TupleReply.Proto.ICMPv4, icmp.TupleReply.Proto.ICMPID = true, 99
	icmp.Timestamp.Start = time.Unix(0, 0) // absent in the kernel's terms

	noReply := tcp
	noReply.TupleReply = conntrack.Tuple{}

	for _, tc := range []struct {
		name string
		in   conntrack.Flow
		key  key
		rec  flow.Record
		ok   bool
	}{
		{
			name: "TCP with v4-mapped source, counters and timestamps",
			in:   tcp,
			key:  newKey(7, 6, flow.Tuple{Src: ap("10.244.0.2:40000"), Dst: ap("203.0.113.2:80")}),
			rec: flow.Record{
				Start: start, End: stop, Proto: 6,
				Orig:      flow.Tuple{Src: ap("10.244.0.2:40000"), Dst: ap("203.0.113.2:80")},
				Reply:     flow.Tuple{Src: ap("203.0.113.2:80"), Dst: ap("203.0.113.1:40001")},
				OrigBytes: 180, OrigPackets: 3, ReplyBytes: 120, ReplyPackets: 2,
			},
			ok: true,
		},
		{
			name: "ICMP carries its ID in the ports, zero start",
			in:   icmp,
			key:  newKey(0, 1, flow.Tuple{Src: ap("10.244.0.2:99"), Dst: ap("203.0.113.2:0")}),
			rec: flow.Record{
				Proto: 1,
				Orig:  flow.Tuple{Src: ap("10.244.0.2:99"), Dst: ap("203.0.113.2:0")},
				Reply: flow.Tuple{Src: ap("203.0.113.2:0"), Dst: ap("10.244.0.2:99")},
			},
			ok: true,
		},
		{name: "no reply tuple", in: noReply},
		{name: "empty", in: conntrack.Flow{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, rec, ok := convert(&tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if k != tc.key {
				t.Errorf("key = %+v, want %+v", k, tc.key)
			}
			if rec != tc.rec {
				t.Errorf("record = %+v,\nwant %+v", rec, tc.rec)
			}
		})
	}
}

// decodeTiMo is the reference decoder: github.com/ti-mo/conntrack's
// Event.Unmarshal and convert, which the capture used before decodeEvent.
func decodeTiMo(m netlink.Message, at time.Time) event {
	var ce conntrack.Event
	if err := ce.Unmarshal(m); err != nil {
		return event{typ: evDecodeError, at: at, err: err}
	}
	if ce.Flow == nil {
		return event{typ: evDecodeError, at: at, err: errors.New("event without a flow")}
	}
	k, rec, ok := convert(ce.Flow)
	if !ok {
		return event{typ: evDecodeError, at: at, err: errors.New("flow without valid tuples")}
	}
	switch ce.Type {
	case conntrack.EventNew:
		return event{typ: evNew, at: at, key: k, rec: rec}
	case conntrack.EventDestroy:
		return event{typ: evDestroy, at: at, key: k, rec: rec}
	}
	return event{typ: evDecodeError, at: at, err: fmt.Errorf("unexpected event type %v", ce.Type)}
}

// sameEvent says whether two decoded events agree (errors aside).
func sameEvent(a, b event) bool {
	return a.typ == b.typ && a.key == b.key && a.rec.Proto == b.rec.Proto && a.rec.Orig == b.rec.Orig && a.rec.Reply == b.rec.Reply &&
		a.rec.Start.Equal(b.rec.Start) && a.rec.End.Equal(b.rec.End) && countersOf(&a.rec) == countersOf(&b.rec)
}

// FuzzDecode feeds arbitrary messages to the event decoder: it must never
// panic; an event it accepts has valid, unmapped tuples; and where the
// reference decoder (ti-mo/conntrack) accepts a message too, both agree.
// (decodeEvent skips attributes it does not know, where the reference
// refuses the message.)
func FuzzDecode(f *testing.F) {
	// A NEW event header for conntrack (subsystem 1, message 0) with an
	// nfgenmsg, and nothing else; a DESTROY with a stray attribute; an
	// empty message; and a whole DESTROY as the kernel sends it.
	f.Add(uint16(1<<8|0), uint16(netlink.Create|netlink.Excl), []byte{2, 0, 0, 0})
	f.Add(uint16(1<<8|2), uint16(0), []byte{2, 0, 0, 0, 4, 0, 1, 0})
	f.Add(uint16(0), uint16(0), []byte{})
	f.Add(uint16(1<<8|2), uint16(0), kernelDestroy)
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)}, Data: data}
		now := time.Now()
		ev := decodeEvent(message(typ, flags, data), now)
		switch ev.typ {
		case evNew, evDestroy:
			if ev.key != newKey(ev.key.id, ev.rec.Proto, ev.rec.Orig) {
				t.Fatalf("Key %+v is not the record's %+v", ev.key, ev.rec)
			}
			for _, ap := range []netip.AddrPort{ev.rec.Orig.Src, ev.rec.Orig.Dst, ev.rec.Reply.Src, ev.rec.Reply.Dst} {
				if !ap.Addr().IsValid() || ap.Addr().Is4In6() {
					t.Fatalf("Accepted event with address %s: %+v", ap, ev)
				}
			}
			if ref := decodeTiMo(m, now); ref.typ != evDecodeError && !sameEvent(ev, ref) {
				t.Fatalf("decodeEvent %+v, the reference %+v", ev, ref)
			}
		case evDecodeError:
			if ev.err == nil {
				t.Fatal("Decode error without an error")
			}
			if ref := decodeTiMo(m, now); ref.typ != evDecodeError {
				t.Fatalf("decodeEvent refused (%v) what the reference decodes: %+v", ev.err, ref)
			}
		default:
			t.Fatalf("Unexpected event type %d", ev.typ)
		}
	})
}

// message is a netlink message of the given type, flags and payload, as
// the kernel sends it.
func message(typ, flags uint16, data []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(data))
	binary.NativeEndian.PutUint32(b, uint32(nlmsgHdrLen+len(data)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	return append(b, data...)
}

// kernelDestroy is the payload (nfgenmsg and attributes) of a DESTROY
// event of a UDP flow with counters and timestamps, laid out as Linux sends
// one (TestDecodeMatchesTheReferenceOnKernelEvents checks real ones).
var kernelDestroy = []byte{
	0x02, 0x00, 0x00, 0x00, // nfgenmsg: AF_INET, version 0
	0x34, 0x00, 0x01, 0x80, // CTA_TUPLE_ORIG
	0x14, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00, 10, 244, 0, 2, 0x08, 0x00, 0x02, 0x00, 203, 0, 113, 2,
	0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x01, 0x00, 17, 0, 0, 0, 0x06, 0x00, 0x02, 0x00, 0x9c, 0x40, 0, 0, 0x06, 0x00, 0x03, 0x00, 0x00, 0x35, 0, 0,
	0x34, 0x00, 0x02, 0x80, // CTA_TUPLE_REPLY
	0x14, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00, 203, 0, 113, 2, 0x08, 0x00, 0x02, 0x00, 203, 0, 113, 1,
	0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x01, 0x00, 17, 0, 0, 0, 0x06, 0x00, 0x02, 0x00, 0x00, 0x35, 0, 0, 0x06, 0x00, 0x03, 0x00, 0x9c, 0x40, 0, 0,
	0x08, 0x00, 0x0c, 0x00, 0, 0, 0, 42, // CTA_ID
	0x1c, 0x00, 0x09, 0x80, 0x0c, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0x0c, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 29, // CTA_COUNTERS_ORIG
	0x1c, 0x00, 0x0a, 0x80, 0x0c, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, // CTA_COUNTERS_REPLY
	0x1c, 0x00, 0x14, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x17, 0x9a, 0x7e, 0x8e, 0x57, 0x4f, 0x2d, 0x00, 0x0c, 0x00, 0x02, 0x00, 0x17, 0x9a, 0x7e, 0x8e, 0xd3, 0x11, 0x40, 0x00, // CTA_TIMESTAMP
}
