package archive

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/store"
)

// copySealed copies a store's sealed segments into an archive directory, as
// the fetcher leaves them.
func copySealed(t *testing.T, s *store.Store, dir string) []store.SegmentInfo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	sealed := s.Sealed()
	for _, sg := range sealed {
		df, xf, err := s.OpenSealed(sg.Seq)
		if err != nil {
			t.Fatal(err)
		}
		for ext, f := range map[string]*os.File{"log": df, "idx": xf} {
			b, _ := io.ReadAll(f)
			f.Close()
			if err := os.WriteFile(filepath.Join(dir, store.SegmentFileName(sg.Seq, ext)), b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	return sealed
}

// TestPrune: the archive keeps segments for its retention after their last
// record, then caps its size by deleting the oldest, across nodes; it
// leaves what is not a node's folder alone.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	n := newNode(t, nil, nil)
	for i := range 4 {
		n.hour(t, i)
	}
	sealed := copySealed(t, n.store, filepath.Join(root, "node-a"))
	other := newNode(t, nil, nil)
	other.clk.Add(30 * time.Minute)
	for i := range 3 {
		other.hour(t, i)
	}
	copySealed(t, other.store, filepath.Join(root, "node-b"))
	if len(sealed) != 3 {
		t.Fatalf("%d sealed", len(sealed))
	}
	// A volume's lost+found is no node's folder, whatever it holds.
	lost := filepath.Join(root, "lost+found")
	if err := os.Mkdir(lost, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"log", "idx"} {
		if err := os.WriteFile(filepath.Join(lost, store.SegmentFileName(1, ext)), []byte("debris"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	_ = filepath.Walk(root, func(path string, fi os.FileInfo, _ error) error {
		if !fi.IsDir() && filepath.Dir(path) != lost {
			total += fi.Size()
		}
		return nil
	})
	// Nothing is old enough: nothing goes.
	pruned, size, err := Prune(root, sealed[0].MaxTime.Add(time.Hour), 90*24*time.Hour, 0)
	if err != nil || pruned != 0 || size != total {
		t.Fatalf("Prune = %d, %d, %v; want 0 and the archive's %d bytes", pruned, size, err, total)
	}
	// A retention of 90 minutes at the time of node-a's third segment's end
	// drops node-a's first segment only (node-b's first ends 30 min later).
	now := sealed[2].MaxTime
	pruned, _, err = Prune(root, now, sealed[2].MaxTime.Sub(sealed[0].MaxTime)-time.Minute, 0)
	if err != nil || pruned != 1 {
		t.Fatalf("Prune by age = %d, %v; want 1", pruned, err)
	}
	if got, _ := Archived(filepath.Join(root, "node-a")); !slices.Equal(got, []uint64{sealed[1].Seq, sealed[2].Seq}) {
		t.Errorf("node-a keeps %v", got)
	}
	// Left: node-a's 2nd and 3rd, node-b's 1st and 2nd. A cap of the two
	// newest segments' size drops the two oldest across nodes (node-b's
	// first, then node-a's second).
	bSealed := other.store.Sealed()
	keep := sealed[2].DataBytes + sealed[2].IndexBytes + bSealed[1].DataBytes + bSealed[1].IndexBytes
	pruned, size, err = Prune(root, now, 90*24*time.Hour, keep)
	if err != nil || pruned != 2 || size != keep {
		t.Fatalf("Prune by size = %d, %d, %v; want 2 pruned, %d bytes left", pruned, size, err, keep)
	}
	a, _ := Archived(filepath.Join(root, "node-a"))
	b, _ := Archived(filepath.Join(root, "node-b"))
	if !slices.Equal(a, []uint64{sealed[2].Seq}) || !slices.Equal(b, []uint64{bSealed[1].Seq}) {
		t.Errorf("after the size cap: node-a %v, node-b %v; want each node's newest", a, b)
	}
}

// TestReader: the archive answers a query from every node's archived
// segments, each record with its node, says how far back each node goes,
// and sees segments archived after it opened.
func TestReader(t *testing.T) {
	root := t.TempDir()
	a, b := newNode(t, nil, nil), newNode(t, nil, nil)
	for i := range 3 {
		a.hour(t, i)
		b.hour(t, 10+i)
	}
	copySealed(t, a.store, filepath.Join(root, "node-a"))
	sealedB := copySealed(t, b.store, filepath.Join(root, "node-b"))
	r := &Reader{Dir: root, Retention: 90 * 24 * time.Hour, Every: time.Nanosecond}
	q := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0, To: t0.Add(5 * time.Hour), Limit: 1000}
	res, err := r.QueryPartial(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]int{}
	for i, rec := range res.Records {
		nodes[rec.Node]++
		if i > 0 && rec.Start.Before(res.Records[i-1].Start) {
			t.Fatalf("records out of order at %d", i)
		}
	}
	if nodes["node-a"] != 200 || nodes["node-b"] != 200 || res.Truncated || res.Asked != 2 {
		t.Errorf("records per node %v, truncated %v, asked %d; want 200 each (two sealed hours)", nodes, res.Truncated, res.Asked)
	}
	if len(res.Holdings) != 2 || !res.Holdings[0].RecordsSince.Equal(t0) || res.Holdings[0].RetentionSeconds != 90*86400 {
		t.Errorf("holdings %+v", res.Holdings)
	}
	// A limit bounds the merge, and says so.
	q.Limit = 50
	if res, _ := r.QueryPartial(context.Background(), q); len(res.Records) != 50 || !res.Truncated {
		t.Errorf("limited: %d records, truncated %v", len(res.Records), res.Truncated)
	}
	// Node b's third hour is archived later, and found.
	b.hour(t, 13)
	copySealed(t, b.store, filepath.Join(root, "node-b"))
	q.Limit = 1000
	res, _ = r.QueryPartial(context.Background(), q)
	if n := len(res.Records); n != 500 || len(b.store.Sealed()) != len(sealedB)+1 {
		t.Errorf("after another archived hour: %d records, want 500", n)
	}
}

// TestReaderMatchesAFullMerge: the two-round read (a share of the limit
// from each node, then the whole limit from those that may hold more of
// the earliest) answers as reading every node for the whole limit would.
func TestReaderMatchesAFullMerge(t *testing.T) {
	root := t.TempDir()
	var stores []*store.Store
	for i := range 9 {
		n := newNode(t, nil, nil)
		n.clk.Add(time.Duration(i*7) * time.Minute) // the nodes' flows interleave
		for h := range 3 + i%4 {
			n.hour(t, h)
		}
		dir := filepath.Join(root, fmt.Sprintf("node-%d", i))
		copySealed(t, n.store, dir)
		// The reference reads the same archived segments, each node for
		// the whole limit.
		s, err := store.OpenArchive(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores = append(stores, s)
	}
	r := &Reader{Dir: root, Every: time.Nanosecond}
	dst := netip.MustParseAddr("198.51.100.7")
	for _, limit := range []int{1, 5, 17, 40, 100, 333, 1000, 5000} {
		for _, w := range []struct{ from, to time.Duration }{{0, 5 * time.Hour}, {90 * time.Minute, 100 * time.Minute}, {30 * time.Second, 31 * time.Second}} {
			q := flow.Query{Dst: dst, From: t0.Add(w.from), To: t0.Add(w.to), Limit: limit}
			got, err := r.QueryPartial(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			var parts []fanout.Part
			for i, s := range stores {
				recs, err := s.Query(context.Background(), q)
				if err != nil {
					t.Fatal(err)
				}
				for j := range recs {
					recs[j].Node = fmt.Sprintf("node-%d", i)
				}
				parts = append(parts, fanout.Part{Records: recs, Truncated: len(recs) >= limit})
			}
			want, truncated := fanout.Merge(parts, limit)
			if len(got.Records) != len(want) || got.Truncated != truncated {
				t.Fatalf("limit %d window %v: %d records (truncated %v), a full merge has %d (%v)", limit, w, len(got.Records), got.Truncated, len(want), truncated)
			}
			for i := range want {
				if g, w := got.Records[i], want[i]; g.Node != w.Node || !g.Start.Equal(w.Start) || g.Orig != w.Orig || g.OrigBytes != w.OrigBytes {
					t.Fatalf("limit %d: record %d is %s %v %v, a full merge has %s %v %v", limit, i, g.Node, g.Start, g.Orig, w.Node, w.Start, w.Orig)
				}
			}
		}
	}
}

// TestReaderConcurrentQueries: queries may run while others refresh the
// nodes (run with -race).
func TestReaderConcurrentQueries(t *testing.T) {
	root := t.TempDir()
	n := newNode(t, nil, nil)
	for h := range 3 {
		n.hour(t, h)
	}
	r := &Reader{Dir: root, Every: time.Nanosecond}
	q := flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0, To: t0.Add(5 * time.Hour), Limit: 100}
	var wg sync.WaitGroup
	for i := range 8 {
		copySealed(t, n.store, filepath.Join(root, fmt.Sprintf("node-%d", i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.QueryPartial(context.Background(), q); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if res, err := r.QueryPartial(context.Background(), q); err != nil || res.Asked != 8 {
		t.Errorf("after: %d nodes, %v", res.Asked, err)
	}
}

// TestReaderRefreshesInTheBackground: started (as the archiver runs it),
// the Reader opens the archive at once and finds a node archived later by
// itself; a query reads what the last refresh found.
func TestReaderRefreshesInTheBackground(t *testing.T) {
	g := gomega.NewWithT(t)
	root := t.TempDir()
	a, b := newNode(t, nil, nil), newNode(t, nil, nil)
	for i := range 3 {
		a.hour(t, i)
		b.hour(t, i)
	}
	copySealed(t, a.store, filepath.Join(root, "node-a"))
	r := &Reader{Dir: root, Every: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Start(ctx) }()
	asked := func() int {
		res, err := r.QueryPartial(context.Background(), flow.Query{Dst: netip.MustParseAddr("198.51.100.7"), From: t0, To: t0.Add(5 * time.Hour), Limit: 10})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return res.Asked
	}
	g.Eventually(func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.background && r.nodes != nil }).Should(gomega.BeTrue())
	g.Expect(asked()).To(gomega.Equal(1))
	copySealed(t, b.store, filepath.Join(root, "node-b"))
	g.Eventually(asked).Should(gomega.Equal(2))
	cancel()
	g.Eventually(done).Should(gomega.Receive(gomega.BeNil()))
}
