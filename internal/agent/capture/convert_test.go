package capture

import (
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
			key:  key{id: 7, proto: 6, src: ap("10.244.0.2:40000"), dst: ap("203.0.113.2:80")},
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
			key:  key{proto: 1, src: ap("10.244.0.2:99"), dst: ap("203.0.113.2:0")},
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

// FuzzDecode feeds arbitrary netlink payloads to the event decoder: it must
// never panic, and a NEW or DESTROY it accepts has valid, unmapped tuples.
func FuzzDecode(f *testing.F) {
	// A NEW event header for conntrack (subsystem 1, message 0) with an
	// nfgenmsg, and nothing else; and garbage.
	f.Add(uint16(1<<8|0), uint16(netlink.Create|netlink.Excl), []byte{2, 0, 0, 0})
	f.Add(uint16(1<<8|2), uint16(0), []byte{2, 0, 0, 0, 4, 0, 1, 0})
	f.Add(uint16(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		ev := decode(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)},
			Data:   data,
		}, time.Now())
		switch ev.typ {
		case evNew, evDestroy:
			for _, ap := range []netip.AddrPort{ev.key.src, ev.key.dst, ev.rec.Reply.Src, ev.rec.Reply.Dst} {
				if !ap.Addr().IsValid() || ap.Addr().Is4In6() {
					t.Fatalf("Accepted event with address %s: %+v", ap, ev)
				}
			}
		case evDecodeError:
			if ev.err == nil {
				t.Fatal("Decode error without an error")
			}
		default:
			t.Fatalf("Unexpected event type %d", ev.typ)
		}
	})
}
