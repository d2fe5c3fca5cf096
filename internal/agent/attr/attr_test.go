package attr

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

var (
	podA = Holder{Slice: "princeton.alice", Sliver: "princeton-alice/a", PodUID: "uid-a"}
	podB = Holder{Slice: "mit.bob", Sliver: "mit-bob/b", PodUID: "uid-b"}
	podN = Holder{Sliver: "kube-system/coredns", PodUID: "uid-n"}
)

// op is one recorded event: Assign when release is false, else Release.
type op struct {
	ip      string
	holder  Holder
	release bool
	t       int
}

// query is one At lookup and its expected answer (ok false: nobody).
type query struct {
	ip   string
	t    int
	want Holder
	ok   bool
}

func apply(h *History, ops []op) {
	for _, o := range ops {
		ip := netip.MustParseAddr(o.ip)
		if o.release {
			h.Release(ip, o.holder.PodUID, at(o.t))
		} else {
			h.Assign(ip, o.holder, at(o.t))
		}
	}
}

func TestHistory(t *testing.T) {
	const ip4 = "10.244.1.5"
	tests := []struct {
		name    string
		ops     []op
		queries []query
	}{
		{
			name: "single holder",
			ops:  []op{{ip: ip4, holder: podA, t: 10}},
			queries: []query{
				{ip: ip4, t: 9},
				{ip: ip4, t: 10, want: podA, ok: true},
				{ip: ip4, t: 1_000_000, want: podA, ok: true},
				{ip: "10.244.1.6", t: 20},
			},
		},
		{
			name: "non-sliver pod",
			ops:  []op{{ip: ip4, holder: podN, t: 10}},
			queries: []query{
				{ip: ip4, t: 11, want: podN, ok: true},
			},
		},
		{
			name: "reuse by a second pod later",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podB, t: 100},
			},
			queries: []query{
				{ip: ip4, t: 50, want: podA, ok: true},
				{ip: ip4, t: 99, want: podA, ok: true},
				{ip: ip4, t: 100, want: podB, ok: true},
				{ip: ip4, t: 500, want: podB, ok: true},
			},
		},
		{
			name: "release then reuse",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podA, release: true, t: 50},
				{ip: ip4, holder: podB, t: 100},
			},
			queries: []query{
				{ip: ip4, t: 49, want: podA, ok: true},
				{ip: ip4, t: 50},
				{ip: ip4, t: 99},
				{ip: ip4, t: 100, want: podB, ok: true},
			},
		},
		{
			name: "release then nobody",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podA, release: true, t: 20},
			},
			queries: []query{
				{ip: ip4, t: 15, want: podA, ok: true},
				{ip: ip4, t: 20},
				{ip: ip4, t: 30},
			},
		},
		{
			name: "release by another pod is a no-op",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podB, release: true, t: 20},
				{ip: ip4, holder: podA, release: true, t: 5},
			},
			queries: []query{
				{ip: ip4, t: 30, want: podA, ok: true},
			},
		},
		{
			name: "release at start removes the interval",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podA, release: true, t: 10},
			},
			queries: []query{{ip: ip4, t: 10}, {ip: ip4, t: 11}},
		},
		{
			name: "assign is idempotent for the same holder",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podA, t: 20},
				{ip: ip4, holder: podA, release: true, t: 30},
			},
			queries: []query{
				{ip: ip4, t: 10, want: podA, ok: true},
				{ip: ip4, t: 25, want: podA, ok: true},
				{ip: ip4, t: 30},
			},
		},
		{
			name: "ipv4-mapped and plain ipv4 are one address",
			ops:  []op{{ip: "::ffff:10.244.1.5", holder: podA, t: 10}},
			queries: []query{
				{ip: ip4, t: 11, want: podA, ok: true},
				{ip: "::ffff:10.244.1.5", t: 11, want: podA, ok: true},
			},
		},
		{
			name: "plain ipv4 assign, mapped release",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: "::ffff:10.244.1.5", holder: podA, release: true, t: 20},
			},
			queries: []query{
				{ip: "::ffff:10.244.1.5", t: 15, want: podA, ok: true},
				{ip: ip4, t: 21},
			},
		},
		{
			name: "ipv6",
			ops: []op{
				{ip: "fd00:10:244::5", holder: podA, t: 10},
				{ip: "fd00:10:244::5", holder: podB, t: 20},
				{ip: ip4, holder: podN, t: 1},
			},
			queries: []query{
				{ip: "fd00:10:244::5", t: 15, want: podA, ok: true},
				{ip: "fd00:10:244:0:0:0:0:5", t: 25, want: podB, ok: true},
				{ip: "fd00:10:244::6", t: 15},
				{ip: ip4, t: 15, want: podN, ok: true},
			},
		},
		{
			name: "out-of-order assign before an existing interval",
			ops: []op{
				{ip: ip4, holder: podB, t: 100},
				{ip: ip4, holder: podA, t: 10}, // recorded late
			},
			queries: []query{
				{ip: ip4, t: 9},
				{ip: ip4, t: 10, want: podA, ok: true},
				{ip: ip4, t: 99, want: podA, ok: true},
				{ip: ip4, t: 100, want: podB, ok: true},
			},
		},
		{
			name: "out-of-order assign inside a closed interval wins the overlap",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podA, release: true, t: 50},
				{ip: ip4, holder: podN, t: 100},
				{ip: ip4, holder: podB, t: 30}, // recorded late, overlaps A
			},
			queries: []query{
				{ip: ip4, t: 29, want: podA, ok: true},
				{ip: ip4, t: 30, want: podB, ok: true},
				{ip: ip4, t: 60, want: podB, ok: true},
				{ip: ip4, t: 100, want: podN, ok: true},
			},
		},
		{
			name: "out-of-order assign at the same start replaces",
			ops: []op{
				{ip: ip4, holder: podA, t: 10},
				{ip: ip4, holder: podB, t: 10},
			},
			queries: []query{
				{ip: ip4, t: 10, want: podB, ok: true},
				{ip: ip4, t: 50, want: podB, ok: true},
			},
		},
		{
			name: "late assign of the same holder extends it back",
			ops: []op{
				{ip: ip4, holder: podA, t: 50},
				{ip: ip4, holder: podA, t: 10},
			},
			queries: []query{
				{ip: ip4, t: 9},
				{ip: ip4, t: 10, want: podA, ok: true},
				{ip: ip4, t: 60, want: podA, ok: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			apply(h, tc.ops)
			checkSorted(t, h)
			for _, q := range tc.queries {
				got, ok := h.At(netip.MustParseAddr(q.ip), at(q.t))
				if ok != q.ok || got != q.want {
					t.Errorf("At(%s, +%ds) = %+v, %v; want %+v, %v", q.ip, q.t, got, ok, q.want, q.ok)
				}
			}
		})
	}
}

// checkSorted fails if any IP's intervals are unsorted, overlapping or empty.
func checkSorted(t *testing.T, h *History) {
	t.Helper()
	h.mu.RLock()
	defer h.mu.RUnlock()
	for ip, ivs := range h.byIP {
		for i, iv := range ivs {
			if !iv.To.IsZero() && !iv.From.Before(iv.To) {
				t.Errorf("%s: interval %d empty: %v..%v", ip, i, iv.From, iv.To)
			}
			if i > 0 {
				p := ivs[i-1]
				if p.To.IsZero() || p.To.After(iv.From) {
					t.Errorf("%s: interval %d (%v..%v) overlaps %d (from %v)", ip, i-1, p.From, p.To, i, iv.From)
				}
			}
		}
	}
}

func TestPrune(t *testing.T) {
	const ip = "10.244.1.5"
	tests := []struct {
		name    string
		ops     []op
		before  int
		pruned  int
		queries []query
	}{
		{
			name: "ended intervals go, open ones stay",
			ops: []op{
				{ip: ip, holder: podA, t: 10},
				{ip: ip, holder: podB, t: 20},
				{ip: ip, holder: podB, release: true, t: 30},
				{ip: ip, holder: podN, t: 40},
			},
			before: 30,
			pruned: 2,
			queries: []query{
				{ip: ip, t: 15},
				{ip: ip, t: 25},
				{ip: ip, t: 45, want: podN, ok: true},
			},
		},
		{
			name: "interval ending after the cutoff stays",
			ops: []op{
				{ip: ip, holder: podA, t: 10},
				{ip: ip, holder: podA, release: true, t: 31},
			},
			before:  30,
			pruned:  0,
			queries: []query{{ip: ip, t: 30, want: podA, ok: true}},
		},
		{
			name: "fully released IP is forgotten",
			ops: []op{
				{ip: ip, holder: podA, t: 10},
				{ip: ip, holder: podA, release: true, t: 20},
				{ip: "fd00::1", holder: podB, t: 10},
				{ip: "fd00::1", holder: podB, release: true, t: 20},
			},
			before: 100,
			pruned: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			apply(h, tc.ops)
			if n := h.Prune(at(tc.before)); n != tc.pruned {
				t.Errorf("Prune = %d, want %d", n, tc.pruned)
			}
			checkSorted(t, h)
			for _, q := range tc.queries {
				got, ok := h.At(netip.MustParseAddr(q.ip), at(q.t))
				if ok != q.ok || got != q.want {
					t.Errorf("At(%s, +%ds) = %+v, %v; want %+v, %v", q.ip, q.t, got, ok, q.want, q.ok)
				}
			}
			if tc.name == "fully released IP is forgotten" && len(h.byIP) != 0 {
				t.Errorf("%d IPs left, want 0", len(h.byIP))
			}
		})
	}
}

func TestInvalidInputs(t *testing.T) {
	h := NewHistory()
	h.Assign(netip.Addr{}, podA, at(1))
	h.Assign(netip.MustParseAddr("10.0.0.1"), podA, time.Time{})
	h.Release(netip.Addr{}, podA.PodUID, at(1))
	if _, ok := h.At(netip.Addr{}, at(1)); ok {
		t.Error("At(invalid) = true")
	}
	if _, ok := h.At(netip.MustParseAddr("10.0.0.1"), at(1)); ok {
		t.Error("zero-time Assign was recorded")
	}
}

// TestConcurrent runs Assign, Release, Prune and At together; run with -race.
func TestConcurrent(t *testing.T) {
	h := NewHistory()
	const writers, readers, n = 4, 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range n {
				ip := netip.AddrFrom4([4]byte{10, 0, byte(w), byte(i % 50)})
				uid := fmt.Sprintf("uid-%d-%d", w, i)
				h.Assign(ip, Holder{Sliver: "ns/p", PodUID: uid}, at(i))
				if i%3 == 0 {
					h.Release(ip, uid, at(i).Add(time.Millisecond))
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range n {
				ip := netip.AddrFrom4([4]byte{10, 0, byte(r % writers), byte(i % 50)})
				h.At(ip, at(i))
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			h.Prune(at(i * 10))
		}
	})
	wg.Wait()
	checkSorted(t, h)
	// The last Assign to each IP is open unless released; check one.
	ip := netip.AddrFrom4([4]byte{10, 0, 0, byte((n - 1) % 50)})
	if got, ok := h.At(ip, at(n+10)); !ok || got.PodUID != fmt.Sprintf("uid-0-%d", n-1) {
		t.Errorf("At after concurrent run = %+v, %v", got, ok)
	}
}

// BenchmarkAt looks up flows among 10,000 IPs with 10 intervals each.
func BenchmarkAt(b *testing.B) {
	const ips, per = 10_000, 10
	h := NewHistory()
	addrs := make([]netip.Addr, ips)
	for i := range ips {
		addrs[i] = netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})
		for j := range per {
			h.Assign(addrs[i], Holder{Slice: "s", Sliver: "ns/p", PodUID: fmt.Sprintf("%d-%d", i, j)}, at(j*100))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := h.At(addrs[i%ips], at((i*37)%(per*100))); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

// AssignSince backdates into a gap only: back to earliest, never before the
// previous holder's release, not at all while another holds the IP, and a
// later interval is never overwritten.
func TestAssignSince(t *testing.T) {
	const ip = "10.244.0.5"
	for _, tc := range []struct {
		name          string
		before        []op
		earliest, now int
		queries       []query
	}{
		{"empty history: from earliest", nil, 10, 20,
			[]query{{ip, 9, Holder{}, false}, {ip, 10, podB, true}, {ip, 25, podB, true}}},
		{"released before earliest: from earliest", []op{{ip, podA, false, 0}, {ip, podA, true, 5}}, 10, 20,
			[]query{{ip, 7, Holder{}, false}, {ip, 12, podB, true}}},
		{"released after earliest: from the release", []op{{ip, podA, false, 0}, {ip, podA, true, 15}}, 10, 20,
			[]query{{ip, 12, podA, true}, {ip, 15, podB, true}}},
		{"still held: from now", []op{{ip, podA, false, 0}}, 10, 20,
			[]query{{ip, 15, podA, true}, {ip, 20, podB, true}}},
		{"zero earliest: from now", nil, -1, 20,
			[]query{{ip, 15, Holder{}, false}, {ip, 20, podB, true}}},
		{"earliest after now: from now", nil, 30, 20,
			[]query{{ip, 19, Holder{}, false}, {ip, 20, podB, true}}},
		{"a later interval is kept", []op{{ip, podA, false, 25}}, 10, 20,
			[]query{{ip, 12, podB, true}, {ip, 25, podA, true}}},
		{"the same holder again: no change", []op{{ip, podB, false, 18}}, 10, 20,
			[]query{{ip, 12, Holder{}, false}, {ip, 19, podB, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			apply(h, tc.before)
			earliest := time.Time{}
			if tc.earliest >= 0 {
				earliest = at(tc.earliest)
			}
			h.AssignSince(netip.MustParseAddr(ip), podB, earliest, at(tc.now))
			for _, q := range tc.queries {
				got, ok := h.At(netip.MustParseAddr(q.ip), at(q.t))
				if ok != q.ok || got != q.want {
					t.Errorf("At(%d) = %+v, %v; want %+v, %v", q.t, got, ok, q.want, q.ok)
				}
			}
		})
	}
}
