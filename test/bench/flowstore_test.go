package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/store"
)

var benchFlows = flag.Int("bench-flows", 10_000_000, "number of flows the flow store benchmark ingests (the documented figures use 10,000,000)")

const (
	// flowStoreHeading is the heading of the flow store section.
	flowStoreHeading = "## Flow store (issue 4)"
	// Targets of issue 4.
	ingestTarget   = 100_000 // flows/s per core
	bytesTarget    = 64      // bytes/flow on disk
	queryP99Target = 50 * time.Millisecond
	// sliceP99Target is issue 12's target for a slice query (47 ms before).
	sliceP99Target = 10 * time.Millisecond
	// planetFlow2 is the anchor: PlanetFlow2 answered in 5 to 20 s.
	planetFlow2 = 5 * time.Second
	// Workload shape.
	fsBatch        = 1000
	fsSpan         = 7 * 24 * time.Hour
	fsSlices       = 200 // × fsSlivers attributions
	fsSlivers      = 10
	fsDsts         = 100_000
	fsDstQueries   = 1000
	fsSliceQueries = 200
)

// flowGen makes a realistic stream of flows from one node: slivers of
// fsSlices slices masqueraded behind the node's address, 20% node traffic,
// 5% IPv6, destinations skewed (Zipf) over fsDsts addresses.
type flowGen struct {
	rng          *rand.Rand
	zipf         *rand.Zipf
	node4, node6 netip.Addr
	attrs        []flow.Record // Slice, Sliver, PodUID and the pod's addresses
	dst4, dst6   []netip.Addr
	sliceWeights *rand.Zipf
	sample       []flow.Record // a reservoir of generated flows, for queries
	seen         int
}

func newFlowGen(seed uint64) *flowGen {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &flowGen{
		rng:          rng,
		zipf:         rand.NewZipf(rng, 1.1, 2, fsDsts-1),
		sliceWeights: rand.NewZipf(rng, 1.2, 1, fsSlices*fsSlivers-1),
		node4:        netip.MustParseAddr("192.0.2.10"),
		node6:        netip.MustParseAddr("2001:db8:ffff::10"),
	}
	for i := range fsSlices * fsSlivers {
		slice := fmt.Sprintf("site%03d_slice%02d", i/fsSlivers%37, i/fsSlivers)
		g.attrs = append(g.attrs, flow.Record{
			Slice:  slice,
			Sliver: fmt.Sprintf("%s/%s-%d", slice, slice, i%fsSlivers),
			PodUID: fmt.Sprintf("%08x-9f1d-4c8e-b7a6-%012x", rng.Uint32(), rng.Uint64()>>16),
			Orig: flow.Tuple{
				Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 0),
				Dst: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}), 0),
			},
		})
	}
	for i := range fsDsts {
		g.dst4 = append(g.dst4, netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.Uint32()), byte(rng.Uint32()), byte(i)}))
		if i%20 == 0 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for j := 2; j < 16; j++ {
				b[j] = byte(rng.Uint32())
			}
			g.dst6 = append(g.dst6, netip.AddrFrom16(b))
		}
	}
	return g
}

// logUniform returns a number between lo and hi, log-uniformly.
func (g *flowGen) logUniform(lo, hi float64) uint64 {
	return uint64(lo * math.Pow(hi/lo, g.rng.Float64()))
}

// batch fills b with flows dumped at time now.
func (g *flowGen) batch(b []flow.Record, now time.Time) {
	for i := range b {
		r := &b[i]
		*r = flow.Record{}
		v6 := g.rng.IntN(20) == 0
		k := int(g.zipf.Uint64())
		var dst netip.Addr
		if v6 {
			dst = g.dst6[k%len(g.dst6)]
		} else {
			dst = g.dst4[k]
		}
		switch p := g.rng.IntN(100); {
		case p < 80:
			r.Proto = 6
		case p < 98:
			r.Proto = 17
		case v6:
			r.Proto = 58
		default:
			r.Proto = 1
		}
		dport := [...]uint16{443, 443, 443, 80, 53, 22, 8080, 123}[g.rng.IntN(8)]
		sport := uint16(32768 + g.rng.IntN(28232))
		r.Orig.Dst = netip.AddrPortFrom(dst, dport)
		r.Reply.Src = r.Orig.Dst
		if g.rng.IntN(5) == 0 { // node traffic: no NAT, no slice
			node := g.node4
			if v6 {
				node = g.node6
			}
			r.Orig.Src = netip.AddrPortFrom(node, sport)
			r.Reply.Dst = r.Orig.Src
		} else {
			a := &g.attrs[g.sliceWeights.Uint64()]
			r.Slice, r.Sliver, r.PodUID = a.Slice, a.Sliver, a.PodUID
			src, node := a.Orig.Src.Addr(), g.node4
			if v6 {
				src, node = a.Orig.Dst.Addr(), g.node6
			}
			r.Orig.Src = netip.AddrPortFrom(src, sport)
			nport := sport // masquerade keeps the port when it can
			if g.rng.IntN(10) == 0 {
				nport = uint16(32768 + g.rng.IntN(28232))
			}
			r.Reply.Dst = netip.AddrPortFrom(node, nport)
		}
		// Durations: mostly short, a few long; 3% still open (snapshots).
		dur := time.Duration(g.logUniform(1e3, 3.6e9)) * time.Microsecond
		end := now.Add(-time.Duration(g.rng.IntN(60_000_000)) * time.Microsecond)
		r.Start = end.Add(-dur)
		if g.rng.IntN(33) != 0 {
			r.End = end
		}
		r.OrigPackets = g.logUniform(1, 1e5)
		r.OrigBytes = r.OrigPackets * (40 + g.logUniform(1, 1400))
		r.ReplyPackets = g.logUniform(1, 1e5)
		r.ReplyBytes = r.ReplyPackets * (40 + g.logUniform(1, 1400))
		// Reservoir sample for the queries.
		g.seen++
		if len(g.sample) < fsDstQueries {
			g.sample = append(g.sample, *r)
		} else if j := g.rng.IntN(g.seen); j < fsDstQueries {
			g.sample[j] = *r
		}
	}
}

// cpuTime is this process's user+system CPU time.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type flowStoreResult struct {
	flows              int
	wall, cpu          time.Duration // in Add
	stats              store.Stats
	openTime           time.Duration
	dstLat, sliceLat   []time.Duration
	dstRows, sliceRows int
	machine            machine
}

// TestFlowStoreBench measures the flow store of issue 4: ingest rate, bytes
// per flow and query latency at -bench-flows flows, and writes its section
// of the file named by -bench-out.
func TestFlowStoreBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "flows")
	end := time.Date(2026, 5, 8, 0, 0, 0, 0, time.UTC)
	begin := end.Add(-fsSpan)
	now := begin
	clock := func() time.Time { return now }
	s, err := store.Open(ctx, store.Options{Dir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	res := flowStoreResult{flows: *benchFlows, machine: describeMachine()}
	g := newFlowGen(1)
	batch := make([]flow.Record, fsBatch)
	nb := (res.flows + fsBatch - 1) / fsBatch
	for i := range nb {
		n := min(fsBatch, res.flows-i*fsBatch)
		now = begin.Add(time.Duration(int64(fsSpan) * int64(i+1) / int64(nb)))
		g.batch(batch[:n], now)
		c0, w0 := cpuTime(t), time.Now()
		if err := s.Add(ctx, batch[:n]); err != nil {
			t.Fatal(err)
		}
		res.wall += time.Since(w0)
		res.cpu += cpuTime(t) - c0
		if i%1000 == 999 {
			t.Logf("%d flows, %.0f flows/s, %.0f flows/CPU-s", (i+1)*fsBatch,
				float64((i+1)*fsBatch)/res.wall.Seconds(), float64((i+1)*fsBatch)/res.cpu.Seconds())
		}
	}
	// An hour later the open segment is old enough to seal: Prune seals it
	// (nothing is older than the retention).
	now = end.Add(time.Hour)
	if _, err := s.Prune(ctx, end); err != nil {
		t.Fatal(err)
	}
	res.stats = s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o0 := time.Now()
	if s, err = store.Open(ctx, store.Options{Dir: dir, Now: clock}); err != nil {
		t.Fatal(err)
	}
	res.openTime = time.Since(o0)

	rng := rand.New(rand.NewPCG(7, 7))
	for _, r := range g.sample {
		from := r.Start.Add(-time.Duration(rng.Int64N(int64(15 * time.Minute))))
		q := flow.Query{Dst: r.Orig.Dst.Addr(), From: from, To: from.Add(15 * time.Minute), Limit: 1000}
		q0 := time.Now()
		got, err := s.Query(ctx, q)
		res.dstLat = append(res.dstLat, time.Since(q0))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Fatalf("no flow to %v in [%v, %v): the sampled flow is missing", q.Dst, q.From, q.To)
		}
		res.dstRows += len(got)
	}
	for range fsSliceQueries {
		a := g.attrs[g.sliceWeights.Uint64()]
		from := begin.Add(time.Duration(rng.Int64N(int64(fsSpan - time.Hour))))
		q := flow.Query{Slice: a.Slice, From: from, To: from.Add(time.Hour), Limit: 1000}
		q0 := time.Now()
		got, err := s.Query(ctx, q)
		res.sliceLat = append(res.sliceLat, time.Since(q0))
		if err != nil {
			t.Fatal(err)
		}
		res.sliceRows += len(got)
	}
	if err := writeSection(*benchOut, flowStoreHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		os.RemoveAll(dir)
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func (r *flowStoreResult) markdown() string {
	var b strings.Builder
	m := r.machine
	wallRate := float64(r.flows) / r.wall.Seconds()
	cpuRate := float64(r.flows) / r.cpu.Seconds()
	perFlow := float64(r.stats.Bytes) / float64(r.stats.Records)
	dp50, dp99 := percentile(r.dstLat, 50), percentile(r.dstLat, 99)
	sp50, sp99 := percentile(r.sliceLat, 50), percentile(r.sliceLat, 99)
	fmt.Fprintf(&b, "Command: `make bench`. Date: %s. Machine: %d CPUs (%s), Linux %s, %s.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "Workload: %d flows from one node in batches of %d (one `Add` each, fsync'd), timestamps spread over 7 days "+
		"(the store's clock follows them, so segments are sealed hourly); %d slice/sliver attributions (Zipf), 20%% node traffic (no NAT), "+
		"80%% masqueraded behind the node's address, 5%% IPv6, %d destinations (Zipf), 3%% open snapshots. "+
		"Queries: %d \"destination IP in a 15-minute window\" around flows sampled from the stream, and %d \"slice in 1 hour\" at random times; limit 1000.\n\n",
		r.flows, fsBatch, fsSlices*fsSlivers, fsDsts, fsDstQueries, fsSliceQueries)
	b.WriteString("| Metric | Measured | Target | Verdict |\n|---|---:|---:|---|\n")
	fmt.Fprintf(&b, "| Ingest, one goroutine (wall time in `Add`, fsync included) | %.0f flows/s | ≥ %d flows/s | %s |\n", wallRate, ingestTarget, pass(wallRate >= ingestTarget))
	fmt.Fprintf(&b, "| Ingest per CPU-second (getrusage, user+system, in `Add`) | %.0f flows/CPU-s | ≥ %d flows/s per core | %s |\n", cpuRate, ingestTarget, pass(cpuRate >= ingestTarget))
	fmt.Fprintf(&b, "| On disk, data and indexes, after Prune and seal | %.1f B/flow (%d segments, %.0f MiB) | ≤ %d B/flow | %s |\n",
		perFlow, r.stats.Segments, float64(r.stats.Bytes)/(1<<20), bytesTarget, pass(perFlow <= bytesTarget))
	fmt.Fprintf(&b, "| Destination IP, 15 min: p50 / p99 | %s / %s (avg %.1f rows) | p99 ≤ %s | %s |\n", ms(dp50), ms(dp99),
		float64(r.dstRows)/float64(len(r.dstLat)), ms(queryP99Target), pass(dp99 <= queryP99Target))
	fmt.Fprintf(&b, "| Slice, 1 h: p50 / p99 | %s / %s (avg %.1f rows) | p99 ≤ %s | %s |\n", ms(sp50), ms(sp99),
		float64(r.sliceRows)/float64(len(r.sliceLat)), ms(sliceP99Target), pass(sp99 <= sliceP99Target))
	fmt.Fprintf(&b, "| Destination p99 / PlanetFlow2's 5 s | %.5f× | — | — |\n", dp99.Seconds()/planetFlow2.Seconds())
	fmt.Fprintf(&b, "| Open (reopen of %d segments) | %s | — | — |\n\n", r.stats.Segments, ms(r.openTime))
	fmt.Fprintf(&b, "The store keeps one append-only segment per hour: each `Add` is one checksummed frame made durable with fdatasync, "+
		"so ingest is bound by encoding and one fsync per batch of %d (%.0f µs of wall time and %.0f µs of CPU per batch here); "+
		"records are compact (microsecond times relative to the segment, interned source and node addresses, attributions interned per segment, "+
		"reply tuples omitted when they mirror the original) and the per-segment indexes (sorted destinations and slices with delta-encoded offsets) add a few bytes. "+
		"A destination query binary-searches the index of the few segments whose time range can overlap the window, reads the times of the records it points to "+
		"(the first bytes of each) and decodes only those it returns (since issue 14; before, every record it points to), "+
		"so its cost grows with the number of matching records, not with the %d stored: p99 is %.0f× below the target and about %.0f× faster than PlanetFlow2's 5–20 s. "+
		"A slice query reads its records' start and end from the index (each slice's postings carry them since issue 12; a busy slice has tens of thousands of flows an hour), "+
		"keeps the earliest Limit starts by selection, and decodes only the records it returns and those that share a start with another (a flow's snapshots and final record): "+
		"p99 was 47 ms when every record of the slice in the window was decoded, deduplicated and sorted before the limit applied.\n",
		fsBatch, r.wall.Seconds()*1e6/float64(r.flows/fsBatch), r.cpu.Seconds()*1e6/float64(r.flows/fsBatch),
		r.flows, queryP99Target.Seconds()/max(dp99.Seconds(), 1e-9), planetFlow2.Seconds()/max(dp99.Seconds(), 1e-9))
	return b.String()
}
