package store

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// t0 is whole microseconds: the store keeps microseconds.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func open(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, s.opt)
}

func add(t testing.TB, s *Store, recs ...flow.Record) {
	t.Helper()
	if err := s.Add(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func seal(t testing.TB, s *Store) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.seal(); err != nil {
		t.Fatal(err)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// rec is a flow from src to dst, masqueraded behind node, during [start, end).
func rec(src, dst, node string, start, end time.Time, slice string) flow.Record {
	o := flow.Tuple{Src: ap(src), Dst: ap(dst)}
	return flow.Record{
		Start: start, End: end, Proto: 6,
		Orig:      o,
		Reply:     flow.Tuple{Src: o.Dst, Dst: ap(node)},
		OrigBytes: 1 << 40, OrigPackets: 7, ReplyBytes: ^uint64(0), ReplyPackets: 3,
		Slice: slice, Sliver: "ns/" + slice + "-pod", PodUID: "uid-" + slice,
	}
}

func same(a, b flow.Record) bool {
	return a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Start.IsZero() == b.Start.IsZero() &&
		a.End.IsZero() == b.End.IsZero() && a.Proto == b.Proto && a.Orig == b.Orig && a.Reply == b.Reply &&
		a.OrigBytes == b.OrigBytes && a.OrigPackets == b.OrigPackets &&
		a.ReplyBytes == b.ReplyBytes && a.ReplyPackets == b.ReplyPackets &&
		a.Slice == b.Slice && a.Sliver == b.Sliver && a.PodUID == b.PodUID
}

func check(t *testing.T, got []flow.Record, want ...flow.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !same(got[i], want[i]) {
			t.Errorf("record %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
}

func query(t testing.TB, s *Store, q flow.Query) []flow.Record {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 100
	}
	got, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRoundTrip stores every kind of field and reads it back from the open
// segment, from the sealed one and after reopening.
func TestRoundTrip(t *testing.T) {
	h := time.Hour
	masq := rec("10.0.0.5:40000", "198.51.100.7:443", "192.0.2.1:40000", t0, t0.Add(h), "site_a")
	natPort := rec("10.0.0.5:40001", "198.51.100.8:443", "192.0.2.1:61001", t0, t0.Add(h), "site_a")
	noNAT := rec("192.0.2.1:5000", "198.51.100.9:22", "192.0.2.1:5000", t0, t0.Add(h), "")
	noNAT.Sliver, noNAT.PodUID = "", ""
	dnat := rec("10.0.0.5:40002", "10.96.0.10:53", "10.0.0.5:40002", t0, t0.Add(time.Second), "site_b")
	dnat.Proto, dnat.Reply.Src = 17, ap("10.244.1.3:5353")
	v6 := rec("[fd00::5]:40000", "[2001:db8::7]:443", "[2001:db8:1::1]:61000", t0.Add(h/2), t0.Add(h), "site_a")
	v6.Proto = 58
	openFlow := rec("10.0.0.6:1", "198.51.100.10:443", "192.0.2.1:1", t0, time.Time{}, "site_c")
	gre := rec("10.0.0.7:0", "198.51.100.11:0", "192.0.2.1:0", t0.Add(-48*h), t0.Add(48*h), "site_c")
	gre.Proto, gre.OrigBytes, gre.OrigPackets, gre.ReplyBytes, gre.ReplyPackets = 47, 0, ^uint64(0), 1, 1<<63
	onlyUID := rec("10.0.0.8:1", "198.51.100.12:1", "192.0.2.1:9", t0, t0, "")
	onlyUID.Sliver = ""
	noReply := rec("10.0.0.9:1", "198.51.100.13:1", "192.0.2.1:9", t0, t0.Add(h), "s")
	noReply.Reply = flow.Tuple{}
	mapped := rec("[::ffff:10.0.0.9]:1", "[::ffff:198.51.100.14]:53", "[::ffff:192.0.2.1]:2", t0, t0.Add(h), "")
	mappedWant := rec("10.0.0.9:1", "198.51.100.14:53", "192.0.2.1:2", t0, t0.Add(h), "")
	subMicro := rec("10.0.0.10:1", "198.51.100.15:1", "192.0.2.1:1", t0.Add(999), t0.Add(h+1999), "s")
	subMicroWant := subMicro
	subMicroWant.Start, subMicroWant.End = t0, t0.Add(h+time.Microsecond)
	zoned := rec("[fe80::1%eth0]:1", "[fe80::2%eth0]:2", "[fe80::3%eth0]:3", t0, t0.Add(h), "s")
	zonedWant := rec("[fe80::1]:1", "[fe80::2]:2", "[fe80::3]:3", t0, t0.Add(h), "s")
	withNode := rec("10.0.0.11:1", "198.51.100.16:443", "192.0.2.1:1", t0, t0.Add(h), "site_a")

	cases := []struct {
		name      string
		in, want  flow.Record
		queryAddr string // default: the wanted original destination
	}{
		{"masquerade same port", masq, masq, ""},
		{"masquerade new port", natPort, natPort, ""},
		{"no NAT", noNAT, noNAT, ""},
		{"DNAT reply source", dnat, dnat, ""},
		{"IPv6", v6, v6, ""},
		{"open flow", openFlow, openFlow, ""},
		{"other protocol, large counters, long flow", gre, gre, ""},
		{"uid only, zero length", onlyUID, onlyUID, ""},
		{"no reply tuple", noReply, noReply, ""},
		{"IPv4-mapped normalized", mapped, mappedWant, ""},
		{"IPv4-mapped query", mapped, mappedWant, "::ffff:198.51.100.14"},
		{"sub-microsecond truncated", subMicro, subMicroWant, ""},
		{"zones dropped", zoned, zonedWant, "fe80::2%eth1"},
		{"another source", withNode, withNode, ""},
	}
	s := open(t, Options{})
	for _, c := range cases {
		add(t, s, c.in)
	}
	checkAll := func(t *testing.T, s *Store) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				dst := c.want.Orig.Dst.Addr()
				if c.queryAddr != "" {
					dst = netip.MustParseAddr(c.queryAddr)
				}
				got := query(t, s, flow.Query{Dst: dst, From: t0.Add(-100 * h), To: t0.Add(100 * h)})
				check(t, got, c.want)
				if !got[0].Start.IsZero() && got[0].Start.Location() != time.UTC {
					t.Errorf("start not in UTC: %v", got[0].Start)
				}
				if c.want.Slice != "" {
					if !contains(query(t, s, flow.Query{Slice: c.want.Slice, From: t0.Add(-100 * h), To: t0.Add(100 * h)}), c.want) {
						t.Errorf("not found by slice %q", c.want.Slice)
					}
				}
			})
		}
	}
	t.Run("open segment", func(t *testing.T) { checkAll(t, s) })
	seal(t, s)
	t.Run("sealed", func(t *testing.T) { checkAll(t, s) })
	s = reopen(t, s)
	t.Run("reopened", func(t *testing.T) { checkAll(t, s) })
}

func TestAddQueryByDst(t *testing.T) {
	s := open(t, Options{})
	h := time.Hour
	v4a := rec("10.0.0.5:40000", "198.51.100.7:443", "192.0.2.1:61000", t0, t0.Add(h), "site_a")
	v4b := rec("10.0.0.6:40001", "198.51.100.7:80", "192.0.2.1:61001", t0.Add(2*h), t0.Add(3*h), "site_b")
	v4other := rec("10.0.0.5:40002", "198.51.100.8:443", "192.0.2.1:61002", t0, t0.Add(h), "site_a")
	mapped := rec("10.0.0.9:1", "[::ffff:198.51.100.7]:53", "192.0.2.1:2", t0.Add(h/2), t0.Add(h), "")
	mappedWant := mapped
	mappedWant.Orig.Dst, mappedWant.Reply.Src = ap("198.51.100.7:53"), ap("198.51.100.7:53")
	add(t, s, v4b, v4a, v4other, mapped)
	all := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0.Add(-h), To: t0.Add(10 * h)}
	// Ordered by start; the mapped address is the same IPv4 destination.
	check(t, query(t, s, all), v4a, mappedWant, v4b)
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("::ffff:198.51.100.7"), From: all.From, To: all.To}), v4a, mappedWant, v4b)
	check(t, query(t, s, flow.Query{Dst: all.Dst, From: t0.Add(90 * time.Minute), To: t0.Add(10 * h)}), v4b)
	check(t, query(t, s, flow.Query{Dst: all.Dst, Slice: "site_b", From: all.From, To: all.To}), v4b)
	// A port keeps the flows to that port at the address.
	check(t, query(t, s, flow.Query{Dst: all.Dst, Port: 443, From: all.From, To: all.To}), v4a)
	check(t, query(t, s, flow.Query{Dst: all.Dst, Port: 53, From: all.From, To: all.To}), mappedWant)
	check(t, query(t, s, flow.Query{Dst: all.Dst, Port: 22, From: all.From, To: all.To}))
	check(t, query(t, s, flow.Query{Slice: "nope", From: all.From, To: all.To}))
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("203.0.113.1"), From: all.From, To: all.To}))
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("2001:db8::1"), From: all.From, To: all.To}))
}

func TestQueryBySliceAndLimit(t *testing.T) {
	s := open(t, Options{})
	var want []flow.Record
	for i := range 50 {
		slice := "site_a"
		if i%2 == 1 {
			slice = "site_b"
		}
		r := rec(fmt.Sprintf("10.0.0.%d:1000", i), "198.51.100.1:443", "192.0.2.1:2000",
			t0.Add(time.Duration(50-i)*time.Second), t0.Add(time.Duration(51-i)*time.Second), slice)
		add(t, s, r) // several batches, to exercise the dictionary across frames
		if i == 20 {
			seal(t, s) // and across segments
		}
		if slice == "site_b" {
			want = append([]flow.Record{r}, want...) // by start
		}
	}
	q := flow.Query{Slice: "site_b", From: t0, To: t0.Add(time.Hour)}
	check(t, query(t, s, q), want...)
	q.Limit = 3
	check(t, query(t, s, q), want[:3]...)
	q.Limit = 1
	check(t, query(t, s, q), want[0])
}

func TestOverlapAndOpenFlows(t *testing.T) {
	m := time.Minute
	dst := "198.51.100.7:443"
	before := rec("10.0.0.1:1", dst, "192.0.2.1:1", t0, t0.Add(10*m), "s")                      // ends before From
	touching := rec("10.0.0.1:2", dst, "192.0.2.1:2", t0, t0.Add(20*m), "s")                    // ends exactly at From: kept
	justBefore := rec("10.0.0.1:8", dst, "192.0.2.1:8", t0, t0.Add(20*m-time.Microsecond), "s") // one µs before: excluded
	spanning := rec("10.0.0.1:3", dst, "192.0.2.1:3", t0.Add(5*m), t0.Add(60*m), "s")           // covers the window
	inside := rec("10.0.0.1:4", dst, "192.0.2.1:4", t0.Add(25*m), t0.Add(26*m), "s")
	openF := rec("10.0.0.1:5", dst, "192.0.2.1:5", t0.Add(1*m), time.Time{}, "s")     // still open
	atTo := rec("10.0.0.1:6", dst, "192.0.2.1:6", t0.Add(30*m), t0.Add(31*m), "s")    // starts at To: excluded
	openLate := rec("10.0.0.1:7", dst, "192.0.2.1:7", t0.Add(40*m), time.Time{}, "s") // open, starts after
	lastBefore := rec("10.0.0.1:9", dst, "192.0.2.1:9", t0.Add(30*m-time.Microsecond), t0.Add(40*m), "s")
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			s := open(t, Options{})
			add(t, s, before, touching, justBefore, spanning, inside, openF, atTo, openLate, lastBefore)
			if sealed {
				seal(t, s)
			}
			for _, q := range []flow.Query{
				{Dst: netip.MustParseAddr("198.51.100.7"), From: t0.Add(20 * m), To: t0.Add(30 * m)},
				{Slice: "s", From: t0.Add(20 * m), To: t0.Add(30 * m)},
			} {
				got := query(t, s, q)
				check(t, got, touching, openF, spanning, inside, lastBefore)
				if !got[1].End.IsZero() {
					t.Errorf("open flow came back with End %v", got[1].End)
				}
			}
		})
	}
}

func TestInvalidQuery(t *testing.T) {
	s := open(t, Options{})
	dst := netip.MustParseAddr("198.51.100.7")
	for _, c := range []struct {
		name string
		q    flow.Query
	}{
		{"no dst no slice", flow.Query{From: t0, To: t0.Add(time.Hour), Limit: 10}},
		{"zero limit", flow.Query{Dst: dst, From: t0, To: t0.Add(time.Hour)}},
		{"negative limit", flow.Query{Dst: dst, From: t0, To: t0.Add(time.Hour), Limit: -1}},
		{"limit too big", flow.Query{Slice: "s", From: t0, To: t0.Add(time.Hour), Limit: MaxLimit + 1}},
		{"empty window", flow.Query{Dst: dst, From: t0, To: t0, Limit: 10}},
		{"reversed window", flow.Query{Dst: dst, From: t0, To: t0.Add(-time.Hour), Limit: 10}},
		{"port without dst", flow.Query{Slice: "s", Port: 443, From: t0, To: t0.Add(time.Hour), Limit: 10}},
	} {
		if _, err := s.Query(context.Background(), c.q); err == nil || !strings.HasPrefix(err.Error(), "store: ") {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
	if _, err := s.Query(context.Background(), flow.Query{Dst: dst, From: t0, To: t0.Add(time.Hour), Limit: MaxLimit}); err != nil {
		t.Errorf("MaxLimit: %v", err)
	}
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Error("Open without a directory: no error")
	}
	if _, err := Open(context.Background(), Options{Dir: t.TempDir(), MaxBytes: -1}); err == nil {
		t.Error("Open with negative MaxBytes: no error")
	}
	if _, err := Open(context.Background(), s.opt); err == nil {
		t.Error("a second Open of the same directory: no error")
	}
}

// TestSnapshotDedup: the capture writes snapshots of a long-lived flow, then
// its final record; a query returns one row, the last written.
func TestSnapshotDedup(t *testing.T) {
	m := time.Minute
	dst := "198.51.100.7:443"
	snap := func(n uint64) flow.Record {
		r := rec("10.0.0.1:1", dst, "192.0.2.1:1", t0, time.Time{}, "s")
		r.OrigBytes, r.OrigPackets = n*100, n
		return r
	}
	final := snap(4)
	final.End = t0.Add(40 * m)
	other := rec("10.0.0.1:2", dst, "192.0.2.1:2", t0, t0.Add(50*m), "s") // same start, other tuple
	udp := snap(9)
	udp.Proto = 17 // same tuple, other protocol
	onlySnaps := rec("10.0.0.1:3", dst, "192.0.2.1:3", t0.Add(m), time.Time{}, "s")
	onlySnaps2 := onlySnaps
	onlySnaps2.OrigBytes++

	for _, sealEach := range []bool{false, true} {
		t.Run(fmt.Sprintf("segment per batch=%v", sealEach), func(t *testing.T) {
			s := open(t, Options{})
			for _, batch := range [][]flow.Record{
				{snap(1), other, udp, onlySnaps}, {snap(2), onlySnaps2}, {snap(3)}, {final},
			} {
				add(t, s, batch...)
				if sealEach {
					seal(t, s)
				}
			}
			d := netip.MustParseAddr("198.51.100.7")
			check(t, query(t, s, flow.Query{Dst: d, From: t0, To: t0.Add(time.Hour)}), final, other, udp, onlySnaps2)
			check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: t0.Add(time.Hour)}), final, other, udp, onlySnaps2)
			// After the final record's end: the snapshots do not come back.
			check(t, query(t, s, flow.Query{Dst: d, From: t0.Add(45 * m), To: t0.Add(time.Hour)}), other, udp, onlySnaps2)
			// Limit counts flows, not records.
			check(t, query(t, s, flow.Query{Dst: d, From: t0, To: t0.Add(time.Hour), Limit: 2}), final, other)
		})
	}
}

func TestReopenKeepsRecords(t *testing.T) {
	s := open(t, Options{})
	r := rec("[fd00::5]:40000", "[2001:db8::7]:443", "[2001:db8:1::1]:61000", t0, time.Time{}, "site_a")
	add(t, s, r)
	s = reopen(t, s)
	check(t, query(t, s, flow.Query{Slice: "site_a", From: t0, To: t0.Add(time.Second)}), r)
	// The dictionary still works after reopening (it comes from the file).
	r2 := rec("10.0.0.1:1", "198.51.100.1:1", "192.0.2.1:1", t0.Add(time.Second), t0.Add(2*time.Second), "site_a")
	r3 := rec("[fd00::5]:40001", "[2001:db8::7]:443", "[2001:db8:1::1]:61000", t0.Add(time.Second), t0.Add(2*time.Second), "site_b")
	add(t, s, r2, r3)
	check(t, query(t, s, flow.Query{Slice: "site_a", From: t0, To: t0.Add(time.Hour)}), r, r2)
	s = reopen(t, s)
	check(t, query(t, s, flow.Query{Slice: "site_a", From: t0, To: t0.Add(time.Hour)}), r, r2)
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("2001:db8::7"), From: t0, To: t0.Add(time.Hour)}), r, r3)
	if st := s.Stats(); st.Records != 3 || st.Segments != 1 || st.Bytes <= 0 {
		t.Errorf("stats %+v", st)
	}
}

// logFiles returns the store's data files, oldest first.
func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// batch i is n records whose destination encodes i.
func batch(i, n int) []flow.Record {
	out := make([]flow.Record, n)
	for j := range out {
		out[j] = synth(i*n + j)
		out[j].Orig.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(j))
	}
	return out
}

// batchDst is the destination of batch i's records.
func batchDst(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }

func countBatch(t testing.TB, s *Store, i int) int {
	return len(query(t, s, flow.Query{Dst: batchDst(i), From: t0.Add(-time.Hour), To: t0.Add(1000 * time.Hour), Limit: MaxLimit}))
}

func TestCrashRecovery(t *testing.T) {
	const n, per = 6, 50
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string, size, lastFrame int64)
		lost   bool // whether the last batch is gone
	}{
		{"clean", func(*testing.T, string, int64, int64) {}, false},
		{"torn last frame", func(t *testing.T, path string, size, last int64) {
			if err := os.Truncate(path, last+(size-last)/2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"torn frame header", func(t *testing.T, path string, size, last int64) {
			if err := os.Truncate(path, last+3); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"torn then garbage", func(t *testing.T, path string, size, last int64) {
			if err := os.Truncate(path, last+(size-last)/2); err != nil {
				t.Fatal(err)
			}
			appendFile(t, path, []byte("garbage garbage garbage garbage"))
		}, true},
		{"garbage after the last frame", func(t *testing.T, path string, size, last int64) {
			appendFile(t, path, []byte{0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4, 5})
		}, false},
		{"flipped byte in the last frame", func(t *testing.T, path string, size, last int64) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[size-5] ^= 0x40
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"zeroed tail (preallocated)", func(t *testing.T, path string, size, last int64) {
			appendFile(t, path, make([]byte, 4096))
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, Options{})
			var last int64
			for i := range n {
				last = s.Stats().Bytes
				add(t, s, batch(i, per)...)
			}
			size := s.Stats().Bytes
			dir := s.opt.Dir
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := logFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d data files", len(files))
			}
			c.damage(t, files[0], size, last)
			s = open(t, Options{Dir: dir})
			for i := range n {
				want := per
				if i == n-1 && c.lost {
					want = 0
				}
				if got := countBatch(t, s, i); got != want {
					t.Errorf("batch %d: %d records, want %d", i, got, want)
				}
			}
			// Nothing invented: only the batches' records are there.
			st := s.Stats()
			wantRecs := int64(n * per)
			if c.lost {
				wantRecs -= per
			}
			if st.Records != wantRecs {
				t.Errorf("%d records after recovery, want %d", st.Records, wantRecs)
			}
			// The tail was cut: new batches go after the valid frames and survive.
			add(t, s, batch(n, per)...)
			s = reopen(t, s)
			if got := countBatch(t, s, n); got != per {
				t.Errorf("batch after recovery: %d records, want %d", got, per)
			}
			if got := s.Stats().Records; got != wantRecs+per {
				t.Errorf("%d records after a new batch, want %d", got, wantRecs+per)
			}
		})
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSealedIndexRecovery: a sealed segment whose index is missing (a crash
// while sealing) or corrupt is re-indexed from its data file; an unreadable
// data file without an index is dropped; stray files are cleaned up.
func TestSealedIndexRecovery(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, idx string)
	}{
		{"missing index", func(t *testing.T, idx string) {
			if err := os.Remove(idx); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(idx+".tmp", []byte("half"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt index", func(t *testing.T, idx string) {
			b, err := os.ReadFile(idx)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			if err := os.WriteFile(idx, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated index", func(t *testing.T, idx string) {
			if err := os.Truncate(idx, 10); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, Options{})
			for i := range 3 {
				add(t, s, batch(i, 20)...)
				seal(t, s)
			}
			add(t, s, batch(3, 20)...)
			dir := s.opt.Dir
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			c.damage(t, segName(dir, 1, "idx"))
			// A data file with no readable header (created, crashed).
			if err := os.WriteFile(segName(dir, 100, "log"), []byte("PKFS"), 0o644); err != nil {
				t.Fatal(err)
			}
			// An index left by a deletion that stopped half way.
			if err := os.WriteFile(segName(dir, 50, "idx"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			s = open(t, Options{Dir: dir})
			for i := range 4 {
				if got := countBatch(t, s, i); got != 20 {
					t.Errorf("batch %d: %d records", i, got)
				}
			}
			if st := s.Stats(); st.Segments != 4 || st.Records != 80 {
				t.Errorf("stats %+v", st)
			}
			for _, p := range []string{segName(dir, 100, "log"), segName(dir, 50, "idx"), segName(dir, 1, "idx.tmp")} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s still there (%v)", p, err)
				}
			}
			if _, err := os.Stat(segName(dir, 1, "idx")); err != nil {
				t.Errorf("index not rebuilt: %v", err)
			}
			// The segment after the re-indexed one is still the open one.
			add(t, s, batch(4, 20)...)
			if st := s.Stats(); st.Segments != 4 {
				t.Errorf("after an Add: %+v", st)
			}
		})
	}
}

// TestKill9 runs a child process that adds batches and prints the number
// of each one Add committed, kills it with SIGKILL, and checks that every
// printed batch is in the store.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("FLOWSTORE_KILL9_DIR"); dir != "" {
		kill9Child(dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FLOWSTORE_KILL9_DIR="+dir, "FLOWSTORE_KILL9_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var committed []int
		sc := bufio.NewScanner(out)
		killed := false
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "committed "))
			if err != nil {
				continue
			}
			committed = append(committed, n)
			if len(committed) == 40+round*17 && !killed {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true // keep reading what it printed before dying
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child ended before it was killed: %v", err)
		}
		s, err := Open(context.Background(), Options{Dir: dir, SegmentBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range committed {
			if got := countBatch(t, s, b); got != kill9Batch {
				t.Errorf("round %d: committed batch %d has %d records, want %d", round, b, got, kill9Batch)
			}
		}
		if st := s.Stats(); st.Records%kill9Batch != 0 || st.Records < int64(len(committed)*kill9Batch) {
			t.Errorf("round %d: %d records for %d committed batches", round, st.Records, len(committed))
		}
		t.Logf("round %d: %d batches committed before SIGKILL, %d records after recovery", round, len(committed), s.Stats().Records)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

const kill9Batch = 37

func kill9Child(dir string) {
	round, _ := strconv.Atoi(os.Getenv("FLOWSTORE_KILL9_ROUND"))
	s, err := Open(context.Background(), Options{Dir: dir, SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := round * 10000; ; i++ {
		if err := s.Add(context.Background(), batch(i, kill9Batch)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", i)
	}
}

func TestSealAndReopen(t *testing.T) {
	clk := &clock{t: t0}
	s := open(t, Options{SegmentBytes: 8 << 10, Now: clk.Now})
	const n = 2000
	for i := 0; i < n; i += 100 {
		var b []flow.Record
		for j := i; j < i+100; j++ {
			b = append(b, synth(j))
		}
		add(t, s, b...)
	}
	st := s.Stats()
	if st.Segments < 5 || st.Records != n {
		t.Fatalf("stats %+v: want several segments by size", st)
	}
	// And by age.
	segs := st.Segments
	clk.Set(t0.Add(2 * time.Hour))
	add(t, s, synth(n))
	if got := s.Stats().Segments; got != segs+1 {
		t.Errorf("an Add after SegmentAge: %d segments, want %d", got, segs+1)
	}
	verify := func(s *Store) {
		t.Helper()
		for _, i := range []int{0, 1, 99, 100, 777, 1500, n - 1, n} {
			r := synth(i)
			if !contains(query(t, s, flow.Query{Dst: r.Orig.Dst.Addr(), From: r.Start, To: r.Start.Add(time.Microsecond), Limit: MaxLimit}), r) {
				t.Errorf("flow %d not found by destination", i)
			}
			if !contains(query(t, s, flow.Query{Slice: r.Slice, From: r.Start, To: r.Start.Add(time.Microsecond), Limit: MaxLimit}), r) {
				t.Errorf("flow %d not found by slice", i)
			}
		}
		// A window spanning segments: every flow to one destination, once.
		r := synth(5)
		got := query(t, s, flow.Query{Dst: r.Orig.Dst.Addr(), From: t0, To: t0.Add(time.Hour), Limit: MaxLimit})
		want := 0
		for i := range n + 1 {
			if synth(i).Orig.Dst.Addr() == r.Orig.Dst.Addr() {
				want++
			}
		}
		if len(got) != want {
			t.Errorf("%d flows to %v, want %d", len(got), r.Orig.Dst.Addr(), want)
		}
	}
	verify(s)
	s = reopen(t, s)
	if got := s.Stats(); got.Segments != segs+1 || got.Records != n+1 {
		t.Errorf("after reopening: %+v", got)
	}
	verify(s)
}

func TestPruneByAge(t *testing.T) {
	h := time.Hour
	clk := &clock{t: t0}
	s := open(t, Options{Retention: h, Now: clk.Now})
	old := rec("10.0.0.1:1", "198.51.100.1:1", "192.0.2.1:1", t0, t0.Add(time.Minute), "s")
	oldOpen := rec("10.0.0.1:2", "198.51.100.1:1", "192.0.2.1:2", t0, time.Time{}, "s")
	add(t, s, old, oldOpen) // segment 1: written at t0
	clk.Set(t0.Add(2 * h))
	snapshot := oldOpen
	snapshot.OrigBytes++
	add(t, s, snapshot) // segment 2 (by age): the open flow dumped again at t0+2h
	clk.Set(t0.Add(4 * h))
	recent := rec("10.0.0.1:3", "198.51.100.1:1", "192.0.2.1:3", t0.Add(3*h), t0.Add(4*h), "s")
	add(t, s, recent) // segment 3, open
	if got := s.Stats(); got.Segments != 3 || !got.Oldest.Equal(t0) {
		t.Fatalf("%d segments, oldest record at %v; want 3 and %v", got.Segments, got.Oldest, t0)
	}
	now := t0.Add(3*h + 30*time.Minute)
	n, err := s.Prune(context.Background(), t0.Add(2*h+30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d, want 2 (segment 1)", n)
	}
	check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: now}), snapshot, recent)
	n, err = s.Prune(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d, want 1 (segment 2)", n)
	}
	check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: now}), recent)
	if got := s.Stats().Oldest; !got.Equal(t0.Add(3 * h)) {
		t.Errorf("oldest record at %v after pruning, want %v", got, t0.Add(3*h))
	}
	// The open segment expires too: it is sealed, then deleted.
	n, err = s.Prune(context.Background(), t0.Add(10*h))
	if err != nil || n != 1 {
		t.Errorf("pruned %d, %v; want 1", n, err)
	}
	if st := s.Stats(); st.Records != 0 || st.Segments != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Errorf("stats %+v after pruning all", st)
	}
	files, _ := os.ReadDir(s.opt.Dir)
	if len(files) != 1 { // LOCK
		t.Errorf("files left: %v", files)
	}
	// It still works.
	add(t, s, recent)
	check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: now}), recent)
}

func TestPruneBySize(t *testing.T) {
	const maxBytes = 256 << 10
	s := open(t, Options{MaxBytes: maxBytes})
	const total = 20000
	fill(t, s, total)
	before := s.Stats()
	n, err := s.Prune(context.Background(), synth(total).Start) // nothing is old enough
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	du := dirBytes(t, s.opt.Dir)
	t.Logf("before %+v; pruned %d of %d; after %+v, %d bytes in files", before, n, total, st, du)
	if n == 0 || n >= total || st.Bytes > maxBytes || du > maxBytes || st.Records != total-n || st.Bytes != du {
		t.Fatalf("pruned %d of %d; stats %+v, files %d bytes, cap %d", n, total, st, du, maxBytes)
	}
	if st.Bytes < maxBytes/2 {
		t.Errorf("pruned too much: %d bytes left of %d", st.Bytes, maxBytes)
	}
	last, first := synth(total-1), synth(0)
	if !contains(query(t, s, flow.Query{Dst: last.Orig.Dst.Addr(), From: last.Start, To: last.Start.Add(time.Microsecond)}), last) {
		t.Error("newest flow was pruned")
	}
	if contains(query(t, s, flow.Query{Dst: first.Orig.Dst.Addr(), From: first.Start, To: first.Start.Add(time.Microsecond)}), first) {
		t.Error("oldest flow was kept")
	}
	// The open segment alone over the cap: it is sealed and deleted.
	s2 := open(t, Options{MaxBytes: 64 << 10, SegmentBytes: 64 << 10})
	big := make([]flow.Record, 3000)
	for i := range big {
		big[i] = synth(i)
	}
	add(t, s2, big...)
	if _, err := s2.Prune(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Bytes > 64<<10 {
		t.Errorf("stats %+v over the cap", st)
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestConcurrentAddQuery(t *testing.T) {
	s := open(t, Options{SegmentBytes: 16 << 10, MaxBytes: 1 << 20})
	const writers, batches, per = 2, 40, 50
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	done := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := s.Add(context.Background(), batch(w*batches+b, per)); err != nil {
					errs <- err
					return
				}
				if b%10 == 9 {
					if _, err := s.Prune(context.Background(), t0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	var rg sync.WaitGroup
	for r := range 3 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				b := (i*7 + r) % (writers * batches)
				got, err := s.Query(context.Background(), flow.Query{Dst: batchDst(b), From: t0.Add(-time.Hour), To: t0.Add(1000 * time.Hour), Limit: MaxLimit})
				if err != nil {
					errs <- err
					return
				}
				if len(got) != 0 && len(got) != per { // a batch is all or nothing
					errs <- fmt.Errorf("batch %d: %d records", b, len(got))
					return
				}
				_ = s.Stats()
			}
		}()
	}
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := countBatch(t, s, writers*batches-1); got != per {
		t.Errorf("last batch: %d records", got)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Add(context.Background(), batch(0, 1)); err == nil {
		t.Error("Add after Close: no error")
	}
	if _, err := s.Query(context.Background(), flow.Query{Slice: "s", From: t0, To: t0.Add(1), Limit: 1}); err == nil {
		t.Error("Query after Close: no error")
	}
}

func contains(recs []flow.Record, r flow.Record) bool {
	for _, x := range recs {
		if same(x, r) {
			return true
		}
	}
	return false
}

// synth is a realistic flow number i: 10 slices, 1000 destinations, a few
// per millisecond, lasting a few seconds.
func synth(i int) flow.Record {
	start := t0.Add(time.Duration(i) * 331 * time.Microsecond)
	slice := fmt.Sprintf("site%d_slice%d", i%10, i%10)
	return flow.Record{
		Start: start, End: start.Add(time.Duration(1+i%5000) * time.Millisecond), Proto: 6,
		Orig: flow.Tuple{
			Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 10)}), uint16(30000+i%30000)),
			Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i / 256 % 4), byte(i % 250)}), 443),
		},
		Reply: flow.Tuple{
			Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i / 256 % 4), byte(i % 250)}), 443),
			Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), uint16(30000+i%30000)),
		},
		OrigBytes: uint64(500 + i%10000), OrigPackets: uint64(5 + i%20),
		ReplyBytes: uint64(2000 + i%100000), ReplyPackets: uint64(5 + i%80),
		Slice: slice, Sliver: "ns" + slice + "/pod-0", PodUID: fmt.Sprintf("0e3c4a2b-9f1d-4c8e-b7a6-00000000000%d", i%10),
	}
}

// fill adds n synth records in batches of 1000.
func fill(tb testing.TB, s *Store, n int) {
	tb.Helper()
	b := make([]flow.Record, 0, 1000)
	for i := range n {
		b = append(b, synth(i))
		if len(b) == cap(b) || i == n-1 {
			if err := s.Add(context.Background(), b); err != nil {
				tb.Fatal(err)
			}
			b = b[:0]
		}
	}
}

func TestBytesPerFlow(t *testing.T) {
	const n = 100000
	s := open(t, Options{})
	fill(t, s, n)
	seal(t, s)
	st := s.Stats()
	perFlow := float64(st.Bytes) / n
	t.Logf("%d flows: %d bytes in %d segments, %.1f bytes/flow (data and indexes)", n, st.Bytes, st.Segments, perFlow)
	if perFlow > 64 {
		t.Errorf("%.1f bytes/flow, target 64", perFlow)
	}
}

// FuzzOpenCorruptSegment writes arbitrary bytes as a segment's data and
// index files beside a valid segment: Open, Query and Add must not panic.
func FuzzOpenCorruptSegment(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	add(f, s, batch(1, 10)...)
	add(f, s, batch(2, 10)...)
	seal(f, s)
	add(f, s, batch(3, 10)...)
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	log1, _ := os.ReadFile(segName(dir, 0, "log"))
	idx1, _ := os.ReadFile(segName(dir, 0, "idx"))
	log2, _ := os.ReadFile(segName(dir, 1, "log"))
	f.Add(log1, idx1)
	f.Add(log1, []byte{})
	f.Add(log2, []byte{})
	f.Add(log1[:len(log1)-7], idx1)
	f.Add(log1, idx1[:len(idx1)/2])
	f.Add([]byte(logMagic), []byte(idxMagic))
	f.Add([]byte{}, []byte{})
	// An index with a valid checksum but hostile contents.
	for _, at := range []int{8, 16, 48, 52, 56, 60, idxHeaderSize + 4, len(idx1) - 12} {
		for _, v := range []uint32{0, 1, 0xffffffff, 0x7fffffff} {
			b := append([]byte(nil), idx1...)
			if at+4 <= len(b)-4 {
				b[at], b[at+1], b[at+2], b[at+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			}
			f.Add(log1, resum(b))
		}
	}
	// A log whose frame has a valid CRC but a hostile payload.
	f.Add(frameLog([]byte{0, 1, 200, 0}), []byte{})
	f.Add(frameLog([]byte{0, 0, 1, 0x3f, 0, 0, 1, 0}), []byte{})

	f.Fuzz(func(t *testing.T, logB, idxB []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segName(dir, 0, "log"), logB, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(idxB) > 0 {
			if err := os.WriteFile(segName(dir, 0, "idx"), idxB, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(segName(dir, 1, "log"), log2, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(context.Background(), Options{Dir: dir})
		if err != nil {
			return
		}
		defer s.Close()
		for _, q := range []flow.Query{
			{Dst: batchDst(1), From: time.Unix(0, 0), To: t0.Add(1000 * time.Hour), Limit: MaxLimit},
			{Dst: netip.MustParseAddr("2001:db8::1"), From: time.Unix(0, 0), To: t0.Add(1000 * time.Hour), Limit: MaxLimit},
			{Slice: synth(0).Slice, From: time.Unix(0, 0), To: t0.Add(1000 * time.Hour), Limit: MaxLimit},
			{Slice: "zzz", From: time.Unix(0, 0), To: t0.Add(1000 * time.Hour), Limit: MaxLimit},
		} {
			s.Query(context.Background(), q)
		}
		// The valid segment after it is intact.
		if got := countBatch(t, s, 3); got < 10 {
			t.Errorf("valid segment: %d records", got)
		}
		if err := s.Add(context.Background(), batch(4, 3)); err != nil {
			t.Errorf("Add: %v", err)
		}
	})
}

// resum fixes an index file's checksum.
func resum(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	c := crcOf(b[:len(b)-4])
	b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	return b
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// frameLog is a data file of one frame with this payload.
func frameLog(payload []byte) []byte {
	b := logHeader(micros(t0))
	n, c := uint32(len(payload)), crcOf(payload)
	b = append(b, byte(n), byte(n>>8), byte(n>>16), byte(n>>24), byte(c), byte(c>>8), byte(c>>16), byte(c>>24))
	return append(b, payload...)
}

func BenchmarkAdd(b *testing.B) {
	s := open(b, Options{})
	recs := make([]flow.Record, 1000)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		for j := range recs {
			recs[j] = synth(i*len(recs) + j)
		}
		b.StartTimer()
		if err := s.Add(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(s.Stats().Bytes)/float64(s.Stats().Records), "B/flow")
}

func BenchmarkQuery(b *testing.B) {
	const n = 200000
	s := open(b, Options{SegmentBytes: 1 << 20})
	fill(b, s, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		r := synth(rng.IntN(n))
		got, err := s.Query(context.Background(), flow.Query{
			Dst: r.Orig.Dst.Addr(), From: r.Start.Add(-time.Minute), To: r.Start.Add(time.Minute), Limit: 100,
		})
		if err != nil || len(got) == 0 {
			b.Fatal(len(got), err)
		}
	}
}

// TestQueryDoesNotHoldTheWriters: a query paused between its snapshot and
// its decoding (as a big window's decoding takes long) does not stop Add,
// nor a seal; a prune that drops a segment the query reads waits for it,
// and the query still returns what the store held when it began.
func TestQueryDoesNotHoldTheWriters(t *testing.T) {
	h := time.Hour
	clk := &clock{t: t0}
	s := open(t, Options{Retention: h, Now: clk.Now})
	old := rec("10.0.0.1:1", "198.51.100.1:1", "192.0.2.1:1", t0, t0.Add(time.Minute), "s")
	add(t, s, old)
	if err := func() error { s.wmu.Lock(); defer s.wmu.Unlock(); return s.seal() }(); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(4 * h))
	recent := rec("10.0.0.1:3", "198.51.100.1:1", "192.0.2.1:3", t0.Add(3*h), t0.Add(4*h), "s")
	add(t, s, recent) // the open segment

	paused, resume := make(chan struct{}), make(chan struct{})
	testHookQueryUnlocked = func() { close(paused); <-resume }
	defer func() { testHookQueryUnlocked = nil }()
	type result struct {
		recs []flow.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		recs, err := s.Query(context.Background(), flow.Query{Slice: "s", From: t0, To: t0.Add(5 * h), Limit: 100})
		done <- result{recs, err}
	}()
	<-paused
	testHookQueryUnlocked = nil

	added := make(chan error, 1)
	go func() {
		added <- s.Add(context.Background(), []flow.Record{rec("10.0.0.1:4", "198.51.100.1:1", "192.0.2.1:4", t0.Add(4*h), t0.Add(4*h), "s")})
	}()
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Add waited for a query that was decoding")
	}

	pruned := make(chan error, 1)
	go func() {
		_, err := s.Prune(context.Background(), t0.Add(2*h)) // drops the sealed segment the query reads
		pruned <- err
	}()
	select {
	case err := <-pruned:
		t.Fatalf("the prune unmapped a segment a query was reading (err %v)", err)
	case <-time.After(200 * time.Millisecond):
		// Waiting, as it must: the query holds the segment.
	}
	close(resume)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	check(t, r.recs, old, recent)
	if err := <-pruned; err != nil {
		t.Fatal(err)
	}
	check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: t0.Add(5 * h)}), recent, rec("10.0.0.1:4", "198.51.100.1:1", "192.0.2.1:4", t0.Add(4*h), t0.Add(4*h), "s"))
}
