package store

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// copySegment copies a sealed segment's files into dir, as the archiver
// leaves them.
func copySegment(t *testing.T, s *Store, seq uint64, dir string) {
	t.Helper()
	df, xf, err := s.OpenSealed(seq)
	if err != nil {
		t.Fatal(err)
	}
	for ext, f := range map[string]*os.File{"log": df, "idx": xf} {
		b, _ := io.ReadAll(f)
		f.Close()
		if err := os.WriteFile(filepath.Join(dir, SegmentFileName(seq, ext)), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestArchiveStore: an archive answers queries from the sealed segments in
// its directory, follows the files as they come and go, and refuses writes.
func TestArchiveStore(t *testing.T) {
	s := open(t, Options{})
	a1 := rec("10.0.0.1:1", "198.51.100.7:443", "192.0.2.1:1", t0, t0.Add(time.Minute), "plc.a.b")
	a2 := rec("10.0.0.2:2", "198.51.100.7:443", "192.0.2.1:2", t0.Add(time.Hour), t0.Add(2*time.Hour), "plc.a.c")
	add(t, s, a1)
	seal(t, s)
	add(t, s, a2)
	seal(t, s)
	sealed := s.Sealed()
	dir := t.TempDir()
	copySegment(t, s, sealed[0].Seq, dir)
	// A download in progress and a data file without its index are not
	// segments yet.
	if err := os.WriteFile(filepath.Join(dir, SegmentFileName(sealed[1].Seq, "log")), []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	ar, err := OpenArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ar.Close()
	all := flow.Query{Dst: a1.Orig.Dst.Addr(), From: t0.Add(-time.Hour), To: t0.Add(3 * time.Hour), Limit: 10}
	check(t, query(t, ar, all), a1)
	if err := ar.Add(context.Background(), []flow.Record{a2}); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Add to an archive: %v", err)
	}
	if _, err := ar.Prune(context.Background(), time.Now()); err == nil {
		t.Error("Prune of an archive: no error")
	}
	// The second segment arrives; the first is pruned by the archiver.
	copySegment(t, s, sealed[1].Seq, dir)
	for _, ext := range []string{"idx", "log"} {
		if err := os.Remove(filepath.Join(dir, SegmentFileName(sealed[0].Seq, ext))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ar.Refresh(); err != nil {
		t.Fatal(err)
	}
	check(t, query(t, ar, all), a2)
	if st := ar.Stats(); st.Segments != 1 || !st.Oldest.Equal(a2.Start) {
		t.Errorf("stats %+v", st)
	}
	if err := s.Refresh(); err == nil {
		t.Error("Refresh of a writable store: no error")
	}
}
