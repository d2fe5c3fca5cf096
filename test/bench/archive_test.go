package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/archive"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/store"
)

var (
	benchArchiveNodes = flag.Int("bench-archive-nodes", 100, "nodes in the archive benchmark (the documented figures use 100)")
	benchArchiveFlows = flag.Int("bench-archive-flows", 1_000_000, "flows of the one node store the archive benchmark copies to every node (100 × 1,000,000 = 100 million archived records)")
)

const (
	archiveHeading = "## Flow archive (issue 14)"
	// archiveP99Target is issue 14's: as on a node at 10 million records.
	archiveP99Target = 50 * time.Millisecond
	archivePairs     = 3
	// The ingest workload: one day of a node's flows, every node alike.
	ingestFlowsPerNode = 100_000
)

// benchAuth accepts the bench's token as the archiver's: the segment
// servers here check no API server (the agents' TokenReview, cached a
// minute, costs one review per node per minute, not per segment).
type benchAuth struct{}

func (benchAuth) Authenticate(_ context.Context, token string) (string, error) {
	if token != "bench" {
		return "", segments.ErrUnauthenticated
	}
	return segments.DefaultReader, nil
}

type benchToken struct{}

func (benchToken) Token(context.Context) (string, error) { return "bench", nil }

// buildNodeStore writes n flows of one node over span into dir, sealing a
// segment per hour of the flows' clock, and returns the generator (its
// sample) and the ingest wall time.
func buildNodeStore(t *testing.T, dir string, n int, span time.Duration, end time.Time) (*flowGen, time.Duration) {
	t.Helper()
	ctx := context.Background()
	begin := end.Add(-span)
	now := begin
	s, err := store.Open(ctx, store.Options{Dir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g := newFlowGen(uint64(n))
	batch := make([]flow.Record, fsBatch)
	nb := (n + fsBatch - 1) / fsBatch
	var wall time.Duration
	for i := range nb {
		k := min(fsBatch, n-i*fsBatch)
		now = begin.Add(time.Duration(int64(span) * int64(i+1) / int64(nb)))
		g.batch(batch[:k], now)
		w0 := time.Now()
		if err := s.Add(ctx, batch[:k]); err != nil {
			t.Fatal(err)
		}
		wall += time.Since(w0)
	}
	now = end.Add(time.Hour)
	if _, err := s.Prune(ctx, end); err != nil { // seals the last segment
		t.Fatal(err)
	}
	return g, wall
}

type archiveResult struct {
	machine                      machine
	nodes, flowsPerNode          int
	ingestNodeRate               []float64 // node store Add, flows/s, per pair
	ingestArchive                []float64 // archive fetch, flows/s, per pair
	ingestSegs                   []float64 // archive fetch, segments/s, per pair
	segmentsPerNode, ingestFlows int
	nodeP99, archP99             []time.Duration
	nodeP50, archP50             []time.Duration
	coldP50, coldP99             time.Duration // the archive's first pass, just opened
	archRows, nodeRows, queries  int
	bytesPerFlow                 float64
	querySegments                int
}

// TestArchiveBench measures the archive of issue 14: ingest of 100 nodes'
// segments served from loopback, against the node store's own ingest; and
// destination queries at 100 million archived records, against the same
// queries on one node's store; and writes its section of -bench-out.
func TestArchiveBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	ctx := context.Background()
	res := archiveResult{machine: describeMachine(), nodes: *benchArchiveNodes, flowsPerNode: *benchArchiveFlows}
	end := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

	// Ingest: one day of a small node (100,000 flows, a segment an hour),
	// served by a real segment server under every node's name. Each pair
	// measures the node store writing that day and the archive fetching it
	// for every node, in alternating order.
	dayDir := t.TempDir()
	buildNodeStore(t, filepath.Join(dayDir, "node"), ingestFlowsPerNode, 24*time.Hour, end)
	node, err := store.Open(ctx, store.Options{Dir: filepath.Join(dayDir, "node")})
	if err != nil {
		t.Fatal(err)
	}
	sealed := node.Sealed()
	res.segmentsPerNode = len(sealed)
	for _, sg := range sealed {
		res.ingestFlows += int(sg.Records)
	}
	res.ingestFlows *= res.nodes
	srv := httptest.NewServer(&segments.Handler{Source: node, Auth: benchAuth{}, Readers: []string{segments.DefaultReader}})
	for pair := range archivePairs {
		for _, archiveSide := range []bool{pair%2 == 1, pair%2 == 0} {
			scratch := t.TempDir()
			if !archiveSide {
				_, wall := buildNodeStore(t, filepath.Join(scratch, "node"), ingestFlowsPerNode, 24*time.Hour, end)
				res.ingestNodeRate = append(res.ingestNodeRate, float64(ingestFlowsPerNode)/wall.Seconds())
				os.RemoveAll(scratch)
				continue
			}
			f := &archive.Fetcher{Dir: scratch, Tokens: benchToken{}}
			w0 := time.Now()
			fetched := 0
			for i := range res.nodes {
				r, err := f.Sync(ctx, fmt.Sprintf("node-%03d", i), srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				fetched += r.Fetched
			}
			took := time.Since(w0)
			if fetched != res.segmentsPerNode*res.nodes {
				t.Fatalf("fetched %d segments, want %d", fetched, res.segmentsPerNode*res.nodes)
			}
			res.ingestArchive = append(res.ingestArchive, float64(res.ingestFlows)/took.Seconds())
			res.ingestSegs = append(res.ingestSegs, float64(fetched)/took.Seconds())
			os.RemoveAll(scratch)
		}
		t.Logf("Pair %d: node store %.0f flows/s; archive %.0f flows/s, %.0f segments/s", pair+1,
			res.ingestNodeRate[pair], res.ingestArchive[pair], res.ingestSegs[pair])
	}
	srv.Close()
	node.Close()

	// Queries: one node's store of 7 days, linked into every node's folder
	// of the archive (the same files: what is measured is the archive
	// reading 100 nodes' segments), 100 million records in all.
	root := t.TempDir()
	nodeDir := filepath.Join(root, "node")
	g, _ := buildNodeStore(t, nodeDir, res.flowsPerNode, fsSpan, end)
	node, err = store.Open(ctx, store.Options{Dir: nodeDir})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	st := node.Stats()
	res.bytesPerFlow = float64(st.Bytes) / float64(st.Records)
	res.querySegments = len(node.Sealed())
	archDir := filepath.Join(root, "archive")
	for i := range res.nodes {
		dir := filepath.Join(archDir, fmt.Sprintf("node-%03d", i))
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		for _, sg := range node.Sealed() {
			for _, ext := range []string{"log", "idx"} {
				name := store.SegmentFileName(sg.Seq, ext)
				if err := os.Link(filepath.Join(nodeDir, name), filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	reader := &archive.Reader{Dir: archDir, Retention: archive.DefaultRetention}
	readerCtx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	go func() { _ = reader.Start(readerCtx) }() // as the archiver runs it: refreshed in the background
	rng := rand.New(rand.NewPCG(7, 7))
	var queries []flow.Query
	for _, r := range g.sample {
		from := r.Start.Add(-time.Duration(rng.Int64N(int64(15 * time.Minute))))
		queries = append(queries, flow.Query{Dst: r.Orig.Dst.Addr(), From: from, To: from.Add(15 * time.Minute), Limit: 1001})
	}
	res.queries = len(queries)
	run := func(s interface {
		Query(context.Context, flow.Query) ([]flow.Record, error)
	}, rows *int) []time.Duration {
		var lat []time.Duration
		for _, q := range queries {
			q0 := time.Now()
			got, err := s.Query(ctx, q)
			lat = append(lat, time.Since(q0))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				t.Fatalf("no flow to %v: the sampled flow is missing", q.Dst)
			}
			*rows += len(got)
		}
		return lat
	}
	// A first pass over the archive just opened (by a query for a slice no
	// node has): each query maps pages that no query has read yet.
	if _, err := reader.Query(ctx, flow.Query{Slice: "no-such-slice", From: end.Add(-fsSpan), To: end, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	var coldRows int
	lat := run(reader, &coldRows)
	res.coldP50, res.coldP99 = percentile(lat, 50), percentile(lat, 99)
	t.Logf("First pass (cold): destination p99 archive %s", ms(res.coldP99))
	for pair := range archivePairs {
		sides := []bool{pair%2 == 0, pair%2 != 0} // which side first alternates
		for _, archiveSide := range sides {
			if archiveSide {
				lat := run(reader, &res.archRows)
				res.archP50, res.archP99 = append(res.archP50, percentile(lat, 50)), append(res.archP99, percentile(lat, 99))
			} else {
				lat := run(node, &res.nodeRows)
				res.nodeP50, res.nodeP99 = append(res.nodeP50, percentile(lat, 50)), append(res.nodeP99, percentile(lat, 99))
			}
		}
		t.Logf("Pair %d: destination p99 archive %s, node %s", pair+1, ms(res.archP99[pair]), ms(res.nodeP99[pair]))
	}
	if err := writeSection(*benchOut, archiveHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

// spread is the median of xs with its range, as "m (lo–hi)".
func spread(xs []float64, format func(float64) string) string {
	m, lo, hi := medianRange(xs)
	return fmt.Sprintf("%s (%s–%s)", format(m), format(lo), format(hi))
}

func (r *archiveResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestArchiveBench -v -args -bench-out=$PWD/docs/benchmarks.md`). Date: %s. Machine: %d CPUs (%s), Linux %s, %s.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	rate := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	var ratios []float64
	for i := range r.ingestArchive {
		ratios = append(ratios, r.ingestArchive[i]/r.ingestNodeRate[i])
	}
	fmt.Fprintf(&b, "**Ingest**: one day of a node's flows (%d, the flow store benchmark's generator, %d segments: one an hour), served by the agent's segment server "+
		"(`internal/flow/segments`, on loopback) under %d node names, fetched by the archiver's `Fetcher` (each file downloaded, fsync'd, verified: every frame's and the index's CRC-32C, "+
		"then renamed into place) into %d node folders: %d segments, %d flows a pair. The anchor is the node store writing the same day (`Add`, a fsync'd batch of %d). The two sides' order alternates over %d pairs.\n\n",
		ingestFlowsPerNode, r.segmentsPerNode, r.nodes, r.nodes, r.segmentsPerNode*r.nodes, r.ingestFlows, fsBatch, len(r.ingestArchive))
	b.WriteString("| Pair | Node store ingest (flows/s) | Archive ingest (flows/s) | Archive ingest (segments/s) | Archive / node |\n|---|---:|---:|---:|---:|\n")
	for i := range r.ingestArchive {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.1f | %.2f× |\n", i+1, r.ingestNodeRate[i], r.ingestArchive[i], r.ingestSegs[i], ratios[i])
	}
	fmt.Fprintf(&b, "\nMedian archive ingest **%s flows/s**, **%s segments/s**; archive / node store **%s**.\n\n",
		spread(r.ingestArchive, rate), spread(r.ingestSegs, func(v float64) string { return fmt.Sprintf("%.1f", v) }),
		spread(ratios, func(v float64) string { return fmt.Sprintf("%.2f×", v) }))
	var qr []float64
	var a99, n99 []float64
	for i := range r.archP99 {
		qr = append(qr, r.archP99[i].Seconds()/r.nodeP99[i].Seconds())
		a99 = append(a99, float64(r.archP99[i].Microseconds())/1000)
		n99 = append(n99, float64(r.nodeP99[i].Microseconds())/1000)
	}
	msf := func(v float64) string { return fmt.Sprintf("%.2f ms", v) }
	fmt.Fprintf(&b, "**Destination queries at %.0f million archived records**: one node's store of 7 days (%d flows, %d segments: the flow store benchmark's generator) is linked into each of %d node folders of the archive, "+
		"which the archive's `Reader` opens as %d read-only stores; %d \"destination IP in 15 minutes\" queries around sampled flows (limit 1000; each matches on every node: the archive returns %.0f rows a query on average). "+
		"The anchor is the same queries on the one node's store. The two sides' order alternates over %d pairs.\n\n",
		float64(r.nodes)*float64(r.flowsPerNode)/1e6, r.flowsPerNode, r.querySegments, r.nodes, r.nodes, r.queries, float64(r.archRows)/float64(len(r.archP99)*r.queries), len(r.archP99))
	b.WriteString("| Pair | Archive p50 / p99 | Node p50 / p99 | p99 archive / node |\n|---|---:|---:|---:|\n")
	for i := range r.archP99 {
		fmt.Fprintf(&b, "| %d | %s / %s | %s / %s | %.1f× |\n", i+1, ms(r.archP50[i]), ms(r.archP99[i]), ms(r.nodeP50[i]), ms(r.nodeP99[i]), qr[i])
	}
	fmt.Fprintf(&b, "\nMedian archive p99 **%s** (target ≤ %s: %s); node p99 %s; archive / node **%s**. "+
		"Before the pairs, a first pass of the same queries over the archive just opened (its %d stores opened, every segment's index checked, then each query maps pages that no query has read yet): p50 %s, **p99 %s** (target: %s). "+
		"On disk: %.1f B/flow, the node store's own format, copied as it is.\n",
		spread(a99, msf), ms(archiveP99Target), pass(median(a99) <= float64(archiveP99Target.Microseconds())/1000), spread(n99, msf),
		spread(qr, func(v float64) string { return fmt.Sprintf("%.1f×", v) }),
		r.nodes, ms(r.coldP50), ms(r.coldP99), pass(r.coldP99 <= archiveP99Target), r.bytesPerFlow)
	b.WriteString(archiveInterpretation)
	return b.String()
}

// archiveInterpretation says what the figures mean (written for the runs
// of 2026-12-02).
const archiveInterpretation = "\n" + `A query asks all 100 nodes' stores, in parallel (as many at once as there are CPUs), first for a share of the limit each (40 here), then for the whole limit only the nodes that may hold more of the earliest 1,000; each store reads the times of the records its index points to (the first bytes of each record) and decodes only those it returns; the nodes' answers are merged by walking their heads (a heap), not by sorting them all. It was 66 ms at p99 when a destination query decoded every record it points to and the merge sorted every answer, and 221 ms before the two rounds. The first pass is slower: each query maps pages that no query has touched yet (the page tables of 100 stores' files fill as queries go), as queries about old traffic do in an archive that has run a while; the slowest are the busiest destinations (in one run the same query was the slowest of both passes: 85 ms the first time, 34 ms the second). Over five runs of 2026-12-02 the first pass's p99 was 46–56 ms, around the target. Here the files are in the page cache; an archive read from its disk would take longer. Keeping the destinations' times in the index too (as issue 12 did for slices), so that a query would read the records it does not return from the index only, was tried: 8 bytes a flow more (49 → 57 B/flow on the flow store benchmark) and no gain measurable here (first-pass p99 38, 43 and 57 ms over three runs with it, 46–56 ms over five without), so it was left out. The archiver refreshes its view of the folders in the background (every 10 s), so a query never waits for a listing of 100 folders of segments. Ingest runs above the node store's own rate: downloading, checksumming and renaming a sealed segment costs less than encoding its records and fsyncing each batch.` + "\n"

// median is the median of xs.
func median(xs []float64) float64 {
	m, _, _ := medianRange(xs)
	return m
}
