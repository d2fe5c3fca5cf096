package ipfix

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// sample are flows of both families, NATed or not, of slices and not.
func sample() []Flow {
	return []Flow{
		{Src: ap("10.244.1.5:40000"), Dst: ap("198.51.100.7:443"), PostNATSrc: ap("192.0.2.10:61000"), Proto: 6,
			Octets: 5_000_000_000, Packets: 3_400_000, ReverseOctets: 1234, ReversePackets: 12, Start: t0, End: t0.Add(90 * time.Second), Slice: "plc.princeton.codeen"},
		{Src: ap("[fd00::5]:5353"), Dst: ap("[2001:db8::7]:53"), PostNATSrc: ap("[2001:db8:1::10]:5353"), Proto: 17,
			Octets: 80, Packets: 1, Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), Slice: "ple.inria." + strings.Repeat("x", 243)},
		{Src: ap("192.0.2.10:123"), Dst: ap("198.51.100.7:123"), Proto: 17, Octets: 48, Packets: 1, ReverseOctets: 48, ReversePackets: 1,
			Start: t0.Add(3 * time.Second), End: t0.Add(3 * time.Second)},
	}
}

func decodeAll(t testing.TB, msgs ...[]byte) *decoded {
	t.Helper()
	d := newDecoded()
	for i, m := range msgs {
		if err := d.decode(m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	return d
}

func TestMessagesRoundTrip(t *testing.T) {
	e := &Encoder{ObservationDomain: 7, EnterpriseNumber: DefaultEnterpriseNumber, MaxMessage: udpMessage}
	names := []string{"plc.princeton.codeen", sample()[1].Slice}
	msgs := e.Messages(t0, names, sample())
	d := decodeAll(t, append([][]byte{e.Templates(t0)}, msgs...)...)
	if !reflect.DeepEqual(d.flows, sample()) {
		t.Errorf("flows:\n got %+v\nwant %+v", d.flows, sample())
	}
	for _, n := range names {
		if d.names[SliceID(n)] != n {
			t.Errorf("name of %d: %q, want %q", SliceID(n), d.names[SliceID(n)], n)
		}
	}
	if d.odid != 7 || d.exportTime != uint32(t0.Unix()) {
		t.Errorf("header odid %d, export time %d", d.odid, d.exportTime)
	}
	// Sequence numbers count the data records before each message.
	e2 := &Encoder{MaxMessage: 512, EnterpriseNumber: 1}
	var many []Flow
	for range 20 {
		many = append(many, sample()...)
	}
	msgs = e2.Messages(t0, names, many)
	if len(msgs) < 2 {
		t.Fatalf("%d messages for 60 flows in 512 bytes", len(msgs))
	}
	var want uint32
	d = decodeAll(t, e2.Templates(t0))
	for _, m := range msgs {
		if len(m) > 512 {
			t.Errorf("a message of %d bytes, limit 512", len(m))
		}
		before := d.dataRecords
		if err := d.decode(m); err != nil {
			t.Fatal(err)
		}
		if d.seq != want {
			t.Errorf("sequence %d, want %d", d.seq, want)
		}
		want += uint32(d.dataRecords - before)
	}
	if len(d.flows) != 60 || e2.seq != want {
		t.Errorf("%d flows decoded, encoder's sequence %d (want %d)", len(d.flows), e2.seq, want)
	}
	// Nothing to send is no message (an empty set would end a collector's
	// reading of the message).
	if got := e2.Messages(t0, nil, nil); len(got) != 0 {
		t.Errorf("%d messages for nothing", len(got))
	}
}

func TestSliceID(t *testing.T) {
	if SliceID("") != 0 || SliceID("plc.princeton.codeen") == 0 || SliceID("plc.princeton.codeen") != SliceID("plc.princeton.codeen") ||
		SliceID("plc.princeton.codeen") == SliceID("plc.mit.chord") {
		t.Error("slice numbers are not 0 for none, stable and distinct")
	}
}

// FuzzMessages: whatever the flows, the messages are well formed, within the
// size limit, and decode to the flows given.
func FuzzMessages(f *testing.F) {
	f.Add([]byte("\x0a\xf4\x01\x05\xc6\x33\x64\x07"), "plc.a.b", uint16(600), uint64(1), uint64(2), int64(0), true)
	f.Add([]byte(strings.Repeat("\xfd", 32)), strings.Repeat("n", 253), uint16(512), ^uint64(0), uint64(0), int64(-5), false)
	f.Fuzz(func(t *testing.T, addrs []byte, slice string, size uint16, octets, packets uint64, startMs int64, nat bool) {
		var a [48]byte
		copy(a[:], addrs)
		v6 := len(addrs) > 16
		addr := func(i int) netip.Addr {
			if v6 {
				return netip.AddrFrom16([16]byte(a[i*16 : i*16+16]))
			}
			return netip.AddrFrom4([4]byte(a[i*4 : i*4+4]))
		}
		if len(slice) > maxSliceName {
			slice = slice[:maxSliceName]
		}
		fl := Flow{Src: netip.AddrPortFrom(addr(0), uint16(octets)), Dst: netip.AddrPortFrom(addr(1), uint16(packets)), Proto: uint8(octets >> 8),
			Octets: octets, Packets: packets, ReverseOctets: packets, ReversePackets: octets,
			Start: time.UnixMilli(max(0, startMs%(1<<45))).UTC(), End: time.UnixMilli(max(0, startMs%(1<<45)) + 1000).UTC(), Slice: slice}
		if nat {
			fl.PostNATSrc = netip.AddrPortFrom(addr(2), 1+uint16(octets>>16))
		}
		if v6 && fl.Src.Addr().Is4In6() {
			return // an IPv4-mapped address is IPv4 on the wire
		}
		if fl.PostNATSrc.IsValid() && fl.PostNATSrc.Addr().IsUnspecified() {
			fl.PostNATSrc = netip.AddrPortFrom(fl.PostNATSrc.Addr(), fl.PostNATSrc.Port())
		}
		e := &Encoder{EnterpriseNumber: 32473, MaxMessage: 512 + int(size)%(65535-512)}
		flows := []Flow{fl, fl, fl}
		msgs := e.Messages(t0, []string{slice}, flows)
		d := newDecoded()
		if err := d.decode(e.Templates(t0)); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if len(m) > e.MaxMessage {
				t.Fatalf("message of %d bytes, limit %d", len(m), e.MaxMessage)
			}
			if err := d.decode(m); err != nil {
				t.Fatal(err)
			}
		}
		if len(d.flows) != 3 {
			t.Fatalf("%d flows decoded", len(d.flows))
		}
		for _, g := range d.flows {
			want := fl
			if !want.PostNATSrc.IsValid() || want.PostNATSrc.Addr().IsUnspecified() && want.PostNATSrc.Port() == 0 {
				want.PostNATSrc = netip.AddrPort{}
			}
			if !reflect.DeepEqual(g, want) {
				t.Fatalf("decoded %+v\nwant    %+v", g, want)
			}
		}
	})
}

// TestDeltas: snapshots of an open flow are exported as what it did since
// the last one, an unchanged one not at all, and its end forgets it.
func TestDeltas(t *testing.T) {
	e, err := New(Options{Collector: "udp://127.0.0.1:4739", Now: func() time.Time { return t0.Add(time.Hour) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := flow.Record{Start: t0, Proto: 6, Orig: flow.Tuple{Src: ap("10.244.1.5:40000"), Dst: ap("198.51.100.7:443")},
		Reply:     flow.Tuple{Src: ap("198.51.100.7:443"), Dst: ap("192.0.2.10:61000")},
		OrigBytes: 100, OrigPackets: 2, ReplyBytes: 1000, ReplyPackets: 3, Slice: "plc.a.b"}
	step := func(r flow.Record) []Flow { return e.deltas([]flow.Record{r}) }
	got := step(r)
	if len(got) != 1 || got[0].Octets != 100 || got[0].ReverseOctets != 1000 || !got[0].End.Equal(t0.Add(time.Hour)) || got[0].PostNATSrc != ap("192.0.2.10:61000") {
		t.Fatalf("first snapshot %+v", got)
	}
	if got := step(r); len(got) != 0 {
		t.Errorf("an unchanged snapshot was exported: %+v", got)
	}
	r.OrigBytes, r.OrigPackets, r.ReplyBytes = 250, 5, 1000
	if got := step(r); len(got) != 1 || got[0].Octets != 150 || got[0].Packets != 3 || got[0].ReverseOctets != 0 {
		t.Errorf("second snapshot %+v, want the delta 150 bytes, 3 packets", got)
	}
	r.End, r.OrigBytes = t0.Add(time.Minute), 300
	if got := step(r); len(got) != 1 || got[0].Octets != 50 || !got[0].End.Equal(r.End) || len(e.last) != 0 {
		t.Errorf("end %+v (tracking %d)", got, len(e.last))
	}
	// A node's own flow, not NATed, of no slice.
	own := flow.Record{Start: t0, End: t0.Add(time.Second), Proto: 17, Orig: flow.Tuple{Src: ap("192.0.2.10:123"), Dst: ap("198.51.100.7:123")},
		Reply: flow.Tuple{Src: ap("198.51.100.7:123"), Dst: ap("192.0.2.10:123")}, OrigBytes: 48, OrigPackets: 1}
	if got := step(own); len(got) != 1 || got[0].PostNATSrc.IsValid() || got[0].Slice != "" {
		t.Errorf("own flow %+v", got)
	}
}

func TestParseCollector(t *testing.T) {
	for _, ok := range []string{"udp://127.0.0.1:4739", "tcp://collector.example:4739", "udp://[2001:db8::1]:2055"} {
		if _, _, err := ParseCollector(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:4739", "http://c:4739", "udp://c", "udp://user@c:1", "tcp://c:1/path", "udp://c:1?x=1", "sctp://c:1"} {
		if _, _, err := ParseCollector(bad); err == nil || !strings.Contains(err.Error(), "not a collector address") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestExportOverTCP: over TCP the templates come first, each message is
// framed by its length, and the exporter reconnects when the collector
// goes away, sending the templates again.
func TestExportOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := New(Options{Collector: "tcp://" + ln.Addr().String(), ObservationDomain: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	rec := flow.Record{Start: t0, End: t0.Add(time.Second), Proto: 6, Orig: flow.Tuple{Src: ap("10.244.1.5:40000"), Dst: ap("198.51.100.7:443")},
		Reply: flow.Tuple{Src: ap("198.51.100.7:443"), Dst: ap("192.0.2.10:61000")}, OrigBytes: 100, OrigPackets: 2, Slice: "plc.a.b"}

	conns := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for round := range 2 {
		// Export until the exporter (re)connects: after the collector
		// closed, a batch or two go into the broken connection (dropped
		// and counted) before the write fails and it dials again.
		var c net.Conn
		for c == nil {
			rec.Start = rec.Start.Add(time.Minute)
			e.Export([]flow.Record{rec})
			select {
			case c = <-conns:
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("round %d: the exporter did not connect", round)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		d := newDecoded()
		for len(d.flows) == 0 {
			var hdr [headerLen]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			msg := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
			copy(msg, hdr[:])
			if _, err := io.ReadFull(c, msg[headerLen:]); err != nil {
				t.Fatal(err)
			}
			if err := d.decode(msg); err != nil { // templates first, or this fails
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if d.flows[0].Slice != "plc.a.b" || d.flows[0].Octets != 100 || d.names[SliceID("plc.a.b")] != "plc.a.b" || d.odid != 3 {
			t.Errorf("round %d: %+v, names %v", round, d.flows, d.names)
		}
		c.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
