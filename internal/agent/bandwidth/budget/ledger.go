package budget

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/planetkube/planetkube/internal/durable"
)

// ledgerVersion is the version of the ledger file's format.
const ledgerVersion = 1

// Ledger keeps every slice's Usage by the slice's full name, including
// slices whose class is gone, until Forget drops them after their period
// ended. A slice deleted and created again within its period therefore finds
// its day's usage. Save and Load keep the ledger in a file so that the usage
// survives an agent restart. A Ledger is safe for concurrent use; the zero
// value is an empty ledger.
type Ledger struct {
	mu     sync.Mutex
	slices map[string]Usage
}

// ledgerFile is the JSON form of a Ledger.
type ledgerFile struct {
	Version int              `json:"version"`
	Slices  map[string]Usage `json:"slices"`
}

// Observe folds the slice's counters into its usage, as the package-level
// Observe does, keeps the result and returns the decision.
func (l *Ledger) Observe(slice string, cfg Config, counter, exemptCounter uint64, now time.Time) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, d := Observe(cfg, l.slices[slice], counter, exemptCounter, now)
	if l.slices == nil {
		l.slices = make(map[string]Usage)
	}
	l.slices[slice] = u
	return d
}

// Detach records that the slice's classes were deleted: the counters of the
// classes that replace them start from zero, so they are counted in full at
// the next observation. The slice's usage and period are kept.
func (l *Ledger) Detach(slice string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u, ok := l.slices[slice]; ok {
		u.LastCounter, u.LastExemptCounter = 0, 0
		l.slices[slice] = u
	}
}

// Usage returns the slice's usage and whether the ledger has it.
func (l *Ledger) Usage(slice string) (Usage, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.slices[slice]
	return u, ok
}

// Slices returns the names of the slices in the ledger, sorted.
func (l *Ledger) Slices() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.slices))
}

// Forget drops the slices whose period of the given length has ended at now
// and returns their names, sorted. A slice that is still observed starts a
// new period at its next observation either way.
func (l *Ledger) Forget(now time.Time, period time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gone []string
	for name, u := range l.slices {
		if !now.Before(u.PeriodStart.Add(period)) {
			gone = append(gone, name)
			delete(l.slices, name)
		}
	}
	slices.Sort(gone)
	return gone
}

// Load reads a ledger that Save wrote. A missing file is an empty ledger; a
// file that cannot be read or parsed is an error that names it.
func Load(path string) (*Ledger, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Ledger{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bwbudget: load ledger: %w", err) // Names the file.
	}
	l, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("bwbudget: load ledger %s: %w", path, err)
	}
	return l, nil
}

// parse decodes a ledger file's contents.
func parse(b []byte) (*Ledger, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f ledgerFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the ledger")
	}
	if f.Version != ledgerVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, ledgerVersion)
	}
	for name, u := range f.Slices {
		if name == "" {
			return nil, errors.New("slice with an empty name")
		}
		if u.PeriodStart.IsZero() {
			return nil, fmt.Errorf("slice %q has no period start", name)
		}
	}
	return &Ledger{slices: f.Slices}, nil
}

// Save writes the ledger to path atomically and durably: to a temporary file
// in the same directory, synced, renamed over path, then the directory
// synced. A crash leaves either the old or the new ledger.
func (l *Ledger) Save(path string) error {
	l.mu.Lock()
	f := ledgerFile{Version: ledgerVersion, Slices: maps.Clone(l.slices)}
	l.mu.Unlock()
	if f.Slices == nil {
		f.Slices = map[string]Usage{}
	}
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return fmt.Errorf("bwbudget: save ledger %s: %w", path, err)
	}
	if err := durable.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bwbudget: save ledger %s: %w", path, err)
	}
	return nil
}
