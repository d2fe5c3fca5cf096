package budget

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLedgerRecreatedSlice checks that a slice deleted and created again
// within its period keeps its usage and is not notified twice.
func TestLedgerRecreatedSlice(t *testing.T) {
	cfg := compressed()
	for _, tc := range []struct {
		name   string
		detach bool
		// counter is the new class's counter at its first observation.
		counter uint64
		bytes   uint64
	}{
		{"counter below the old one", false, 50, 900_050},
		{"detached, counter below the old one", true, 50, 900_050},
		{"detached, counter past the old one", true, 1_000_000, 1_900_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Ledger
			if d := l.Observe("site_a", cfg, 0, 0, t0); !d.Reset || d.Capped {
				t.Fatalf("first observation: %+v", d)
			}
			if d := l.Observe("site_a", cfg, 900_000, 0, at(10*time.Second)); !d.Capped || !d.Notify {
				t.Fatalf("over the threshold: %+v", d)
			}
			// Another slice is independent.
			if d := l.Observe("site_b", cfg, 10, 0, at(10*time.Second)); d.Capped || !d.Reset {
				t.Fatalf("other slice: %+v", d)
			}
			// site_a is deleted: its class is gone and it is not observed.
			if tc.detach {
				l.Detach("site_a")
			}
			if got := l.Forget(at(50*time.Second), cfg.Period); len(got) != 0 {
				t.Fatalf("Forget within the period dropped %v", got)
			}
			// site_a is created again with a new class.
			d := l.Observe("site_a", cfg, tc.counter, 0, at(60*time.Second))
			if !d.Capped || d.Notify || d.Reset {
				t.Errorf("recreated slice: %+v, want capped without notice or reset", d)
			}
			u, ok := l.Usage("site_a")
			if !ok || u.Bytes != tc.bytes || !u.PeriodStart.Equal(t0) || !u.Notified {
				t.Errorf("recreated slice's usage %+v, want %d bytes from %v, notified", u, tc.bytes, t0)
			}
		})
	}
}

func TestLedgerForget(t *testing.T) {
	cfg := compressed()
	var l Ledger
	l.Observe("site_old", cfg, 0, 0, t0)
	l.Observe("site_new", cfg, 0, 0, at(30*time.Second))
	l.Observe("site_gone", cfg, 0, 0, at(10*time.Second))
	l.Detach("site_missing") // No effect.
	if got, want := l.Slices(), []string{"site_gone", "site_new", "site_old"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Slices() = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		now       time.Duration
		forgotten []string
		left      []string
	}{
		{99 * time.Second, nil, []string{"site_gone", "site_new", "site_old"}},
		{100 * time.Second, []string{"site_old"}, []string{"site_gone", "site_new"}},
		{200 * time.Second, []string{"site_gone", "site_new"}, nil},
	} {
		got := l.Forget(at(tc.now), cfg.Period)
		if !reflect.DeepEqual(got, tc.forgotten) {
			t.Errorf("Forget at %v = %v, want %v", tc.now, got, tc.forgotten)
		}
		if got := l.Slices(); !reflect.DeepEqual(got, tc.left) {
			t.Errorf("after Forget at %v: %v, want %v", tc.now, got, tc.left)
		}
	}
	// A forgotten slice starts a new period.
	if d := l.Observe("site_old", cfg, 5, 0, at(200*time.Second)); !d.Reset {
		t.Errorf("forgotten slice: %+v, want Reset", d)
	}
}

// ledgerFixture is a ledger with two slices' usage.
func ledgerFixture() *Ledger {
	cfg := compressed()
	var l Ledger
	l.Observe("site_a", cfg, 1000, 20, t0)
	l.Observe("site_a", cfg, 901_000, 1020, at(10*time.Second+time.Millisecond))
	l.Observe("site_b", cfg, 7, 0, at(20*time.Second))
	return &l
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bwbudget.json")
	l := ledgerFixture()
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Slices(), l.Slices()) {
		t.Fatalf("loaded slices %v, want %v", got.Slices(), l.Slices())
	}
	for _, name := range l.Slices() {
		want, _ := l.Usage(name)
		u, _ := got.Usage(name)
		if !u.PeriodStart.Equal(want.PeriodStart) {
			t.Errorf("%s: period start %v, want %v", name, u.PeriodStart, want.PeriodStart)
		}
		u.PeriodStart = want.PeriodStart
		if u != want {
			t.Errorf("%s: loaded %+v, want %+v", name, u, want)
		}
	}

	// After a restart the day goes on: the same counters add nothing, the
	// notice is not repeated.
	d := got.Observe("site_a", compressed(), 901_000, 1020, at(20*time.Second))
	if !d.Capped || d.Notify || d.Reset {
		t.Errorf("after Load: %+v, want capped without notice or reset", d)
	}
	if u, _ := got.Usage("site_a"); u.Bytes != 900_000 || u.ExemptBytes != 1000 {
		t.Errorf("after Load: usage %+v", u)
	}

	// Saving over the file replaces it and leaves nothing else behind.
	if err := got.Save(path); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "bwbudget.json" {
		t.Errorf("directory holds %v, want only the ledger", entries)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestSaveEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bwbudget.json")
	var l Ledger
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Slices(); len(s) != 0 {
		t.Fatalf("loaded %v from an empty ledger", s)
	}
}

// TestSaveFails checks that a failed save names the file, keeps what was
// there and leaves no temporary file.
func TestSaveFails(t *testing.T) {
	dir := t.TempDir()
	// The path is a directory that is not empty: the rename fails.
	path := filepath.Join(dir, "bwbudget.json")
	if err := os.MkdirAll(filepath.Join(path, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := ledgerFixture().Save(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Save over a directory: %v, want an error naming %s", err, path)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !entries[0].IsDir() {
		t.Errorf("directory holds %v, want only the old entry", entries)
	}

	missing := filepath.Join(dir, "missing", "bwbudget.json")
	if err := ledgerFixture().Save(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Save in a missing directory: %v, want an error naming %s", err, missing)
	}
}

func TestLoadMissing(t *testing.T) {
	l, err := Load(filepath.Join(t.TempDir(), "none.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s := l.Slices(); len(s) != 0 {
		t.Fatalf("missing file loaded %v", s)
	}
	// The loaded ledger is usable.
	if d := l.Observe("site_a", compressed(), 0, 0, t0); !d.Reset {
		t.Fatalf("first observation: %+v", d)
	}
}

func TestLoadCorrupt(t *testing.T) {
	const start = `"periodStart":"2025-03-01T00:00:00Z"`
	for _, tc := range []struct{ name, data string }{
		{"empty", ""},
		{"garbage", "\x00\x01 not a ledger"},
		{"truncated", `{"version":1,"slices":{"site_a":{` + start},
		{"not an object", `[1,2,3]`},
		{"no version", `{"slices":{}}`},
		{"future version", `{"version":2,"slices":{}}`},
		{"unknown field", `{"version":1,"slices":{},"extra":1}`},
		{"unknown usage field", `{"version":1,"slices":{"site_a":{` + start + `,"x":1}}}`},
		{"negative bytes", `{"version":1,"slices":{"site_a":{` + start + `,"bytes":-1}}}`},
		{"bytes overflow", `{"version":1,"slices":{"site_a":{` + start + `,"bytes":18446744073709551616}}}`},
		{"bad time", `{"version":1,"slices":{"site_a":{"periodStart":"yesterday"}}}`},
		{"no period start", `{"version":1,"slices":{"site_a":{"bytes":1}}}`},
		{"empty slice name", `{"version":1,"slices":{"":{` + start + `}}}`},
		{"data after", `{"version":1,"slices":{}} {}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bwbudget.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %v, want an error", tc.data, l.Slices())
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
		})
	}

	// A valid file with whitespace and a null map loads.
	path := filepath.Join(t.TempDir(), "bwbudget.json")
	if err := os.WriteFile(path, []byte(" {\"version\":1,\"slices\":null}\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	// A directory cannot be read as a file.
	path := t.TempDir()
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of a directory: %v, want an error naming %s", err, path)
	}
}

// FuzzLoad checks that Load never panics and that whatever it accepts
// saves and loads back to the same file.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	if err := ledgerFixture().Save(filepath.Join(dir, "seed.json")); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "seed.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"slices":{}}`))
	f.Add([]byte(`{"version":1,"slices":{"a":{"periodStart":"2025-03-01T00:00:00+02:00","bytes":1}}}`))
	f.Add([]byte(`{"version":1,"slices":null}`))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in.json")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Load(in)
		if err != nil {
			if !strings.Contains(err.Error(), in) {
				t.Fatalf("error %q does not name %s", err, in)
			}
			return
		}
		// Whatever loads is usable and round-trips.
		for _, name := range l.Slices() {
			l.Usage(name)
		}
		first := filepath.Join(dir, "first.json")
		if err := l.Save(first); err != nil {
			t.Fatal(err)
		}
		l2, err := Load(first)
		if err != nil {
			t.Fatalf("saved ledger does not load: %v", err)
		}
		second := filepath.Join(dir, "second.json")
		if err := l2.Save(second); err != nil {
			t.Fatal(err)
		}
		b1, _ := os.ReadFile(first)
		b2, _ := os.ReadFile(second)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed the ledger:\n%s\n%s", b1, b2)
		}
		l2.Observe("x", compressed(), 1, 1, t0)
		l2.Forget(t0, time.Hour)
	})
}
