package flowstore

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)

func open(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "flows.db")
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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

func query(t *testing.T, s *Store, q flow.Query) []flow.Record {
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

func TestAddQueryByDst(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{})
	h := time.Hour
	v4a := rec("10.0.0.5:40000", "198.51.100.7:443", "192.0.2.1:61000", t0, t0.Add(h), "site_a")
	v4b := rec("10.0.0.6:40001", "198.51.100.7:80", "192.0.2.1:61001", t0.Add(2*h), t0.Add(3*h), "site_b")
	v4other := rec("10.0.0.5:40002", "198.51.100.8:443", "192.0.2.1:61002", t0, t0.Add(h), "site_a")
	v6 := rec("[fd00::5]:40000", "[2001:db8::7]:443", "[2001:db8:1::1]:61000", t0.Add(h/2), t0.Add(h), "site_a")
	mapped := rec("10.0.0.9:1", "[::ffff:198.51.100.7]:53", "192.0.2.1:2", t0, t0.Add(h), "")
	if err := s.Add(ctx, []flow.Record{v4b, v4a, v4other, v6, mapped}); err != nil {
		t.Fatal(err)
	}
	all := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0.Add(-h), To: t0.Add(10 * h)}
	check(t, query(t, s, all), v4a, v4b) // ordered by start; mapped is a different key
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("2001:db8::7"), From: t0, To: t0.Add(h)}), v6)
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("::ffff:198.51.100.7"), From: t0, To: t0.Add(h)}), mapped)
	// Window only covering the second flow.
	check(t, query(t, s, flow.Query{Dst: all.Dst, From: t0.Add(90 * time.Minute), To: t0.Add(10 * h)}), v4b)
	// Dst and slice together.
	check(t, query(t, s, flow.Query{Dst: all.Dst, Slice: "site_b", From: all.From, To: all.To}), v4b)
	// Unknown slice, unknown IP.
	check(t, query(t, s, flow.Query{Slice: "nope", From: all.From, To: all.To}))
	check(t, query(t, s, flow.Query{Dst: netip.MustParseAddr("203.0.113.1"), From: all.From, To: all.To}))
}

func TestQueryBySliceAndLimit(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{})
	var want []flow.Record
	for i := range 50 {
		slice := "site_a"
		if i%2 == 1 {
			slice = "site_b"
		}
		r := rec(fmt.Sprintf("10.0.0.%d:1000", i), "198.51.100.1:443", "192.0.2.1:2000",
			t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i+1)*time.Second), slice)
		// Several batches, to exercise interning across transactions.
		if err := s.Add(ctx, []flow.Record{r}); err != nil {
			t.Fatal(err)
		}
		if slice == "site_b" {
			want = append(want, r)
		}
	}
	q := flow.Query{Slice: "site_b", From: t0, To: t0.Add(time.Hour)}
	check(t, query(t, s, q), want...)
	q.Limit = 3
	check(t, query(t, s, q), want[:3]...)
}

func TestOverlapAndOpenFlows(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{})
	m := time.Minute
	dst := "198.51.100.7:443"
	before := rec("10.0.0.1:1", dst, "192.0.2.1:1", t0, t0.Add(10*m), "s")            // ends before From
	touching := rec("10.0.0.1:2", dst, "192.0.2.1:2", t0, t0.Add(20*m), "s")          // ends exactly at From: kept
	spanning := rec("10.0.0.1:3", dst, "192.0.2.1:3", t0.Add(5*m), t0.Add(60*m), "s") // covers the window
	inside := rec("10.0.0.1:4", dst, "192.0.2.1:4", t0.Add(25*m), t0.Add(26*m), "s")
	open := rec("10.0.0.1:5", dst, "192.0.2.1:5", t0.Add(1*m), time.Time{}, "s")      // still open
	atTo := rec("10.0.0.1:6", dst, "192.0.2.1:6", t0.Add(30*m), t0.Add(31*m), "s")    // starts at To: excluded
	openLate := rec("10.0.0.1:7", dst, "192.0.2.1:7", t0.Add(40*m), time.Time{}, "s") // open, starts after
	if err := s.Add(ctx, []flow.Record{before, touching, spanning, inside, open, atTo, openLate}); err != nil {
		t.Fatal(err)
	}
	got := query(t, s, flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0.Add(20 * m), To: t0.Add(30 * m)})
	check(t, got, touching, open, spanning, inside)
	if !got[1].End.IsZero() {
		t.Errorf("open flow came back with End %v", got[1].End)
	}
}

func TestInvalidQuery(t *testing.T) {
	s := open(t, Options{})
	dst := netip.MustParseAddr("198.51.100.7")
	for name, q := range map[string]flow.Query{
		"no dst no slice": {From: t0, To: t0.Add(time.Hour), Limit: 10},
		"zero limit":      {Dst: dst, From: t0, To: t0.Add(time.Hour)},
		"negative limit":  {Dst: dst, From: t0, To: t0.Add(time.Hour), Limit: -1},
		"limit too big":   {Slice: "s", From: t0, To: t0.Add(time.Hour), Limit: MaxLimit + 1},
		"empty window":    {Dst: dst, From: t0, To: t0, Limit: 10},
		"reversed window": {Dst: dst, From: t0, To: t0.Add(-time.Hour), Limit: 10},
	} {
		if _, err := s.Query(context.Background(), q); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReopenKeepsRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flows.db")
	s, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	r := rec("[fd00::5]:40000", "[2001:db8::7]:443", "[2001:db8:1::1]:61000", t0, time.Time{}, "site_a")
	if err := s.Add(ctx, []flow.Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Path: path})
	check(t, query(t, s, flow.Query{Slice: "site_a", From: t0, To: t0.Add(time.Second)}), r)
	// Interning still works after reopening (names come from the file).
	r2 := rec("10.0.0.1:1", "198.51.100.1:1", "192.0.2.1:1", t0.Add(time.Second), t0.Add(2*time.Second), "site_a")
	if err := s.Add(ctx, []flow.Record{r2}); err != nil {
		t.Fatal(err)
	}
	check(t, query(t, s, flow.Query{Slice: "site_a", From: t0, To: t0.Add(time.Hour)}), r, r2)
}

func TestPruneByAge(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{Retention: time.Hour})
	now := t0.Add(24 * time.Hour)
	old := rec("10.0.0.1:1", "198.51.100.1:1", "192.0.2.1:1", t0, t0.Add(time.Minute), "s")
	oldOpen := rec("10.0.0.1:2", "198.51.100.1:1", "192.0.2.1:2", t0, time.Time{}, "s")
	recent := rec("10.0.0.1:3", "198.51.100.1:1", "192.0.2.1:3", t0, now.Add(-30*time.Minute), "s")
	if err := s.Add(ctx, []flow.Record{old, oldOpen, recent}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d, want 1", n)
	}
	check(t, query(t, s, flow.Query{Slice: "s", From: t0, To: now}), oldOpen, recent)
}

func TestPruneBySize(t *testing.T) {
	ctx := context.Background()
	const maxBytes = 256 << 10
	path := filepath.Join(t.TempDir(), "flows.db")
	s := open(t, Options{Path: path, MaxBytes: maxBytes})
	const total = 20000
	batch := make([]flow.Record, 0, 1000)
	for i := range total {
		batch = append(batch, synth(i))
		if len(batch) == cap(batch) {
			if err := s.Add(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	n, err := s.Prune(ctx, synth(total).Start) // nothing is old enough
	if err != nil {
		t.Fatal(err)
	}
	used, err := s.usedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pruned %d of %d, %d bytes used, file %d bytes", n, total, used, fi.Size())
	if n == 0 || n == total || used > maxBytes || fi.Size() > maxBytes {
		t.Fatalf("pruned %d of %d; used %d, file %d, cap %d", n, total, used, fi.Size(), maxBytes)
	}
	// The newest flow is kept, the oldest is gone.
	last, first := synth(total-1), synth(0)
	if !contains(query(t, s, flow.Query{Dst: last.Orig.Dst.Addr(), From: last.Start, To: last.Start.Add(time.Nanosecond)}), last) {
		t.Error("newest flow was pruned")
	}
	if contains(query(t, s, flow.Query{Dst: first.Orig.Dst.Addr(), From: first.Start, To: first.Start.Add(time.Nanosecond)}), first) {
		t.Error("oldest flow was kept")
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
	batch := make([]flow.Record, 0, 1000)
	for i := range n {
		batch = append(batch, synth(i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.Add(context.Background(), batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func TestBytesPerFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100k records")
	}
	const n = 100000
	s := open(t, Options{})
	fill(t, s, n)
	if err := s.compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	used, err := s.usedBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flows: %d bytes used, %.1f bytes/flow (table and both indexes)", n, used, float64(used)/n)
	rows, err := s.db.Query(`SELECT name, sum(pgsize) FROM dbstat GROUP BY name`)
	if err != nil {
		t.Logf("no per-table breakdown: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			t.Fatal(err)
		}
		t.Logf("  %-12s %6.1f bytes/flow", name, float64(size)/n)
	}
}

func BenchmarkAdd(b *testing.B) {
	s := open(b, Options{})
	batch := make([]flow.Record, 1000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			batch[j] = synth(i*len(batch) + j)
		}
		if err := s.Add(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "flows/s")
}

func BenchmarkQuery(b *testing.B) {
	const n = 100000
	s := open(b, Options{})
	fill(b, s, n)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := synth((i * 7919) % n)
		got, err := s.Query(context.Background(), flow.Query{
			Dst: r.Orig.Dst.Addr(), From: r.Start.Add(-time.Minute), To: r.Start.Add(time.Minute), Limit: 100,
		})
		if err != nil || len(got) == 0 {
			b.Fatal(len(got), err)
		}
	}
}
