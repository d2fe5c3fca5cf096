package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/planetkube/planetkube/internal/durable"
	"github.com/planetkube/planetkube/internal/flow"
)

// DefaultRetention is how long flows are kept when Options.Retention is 0.
const DefaultRetention = 7 * 24 * time.Hour

// MaxLimit is the largest Query.Limit accepted.
const MaxLimit = 10000

// Defaults of Options.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultSegmentAge   = time.Hour
	minSegmentBytes     = 4 << 10
)

// Options configure a Store.
type Options struct {
	// Dir is the store's directory; it is created if missing.
	Dir string
	// Retention is how long a flow is kept (default 7 days).
	Retention time.Duration
	// MaxBytes caps the bytes the store uses on disk; 0 means no cap. It is
	// enforced by Prune.
	MaxBytes int64
	// SegmentBytes and SegmentAge bound the open segment: past either, the
	// next Add (or Prune) seals it. Defaults 64 MiB (or MaxBytes/8 if
	// smaller) and 1 h.
	SegmentBytes int64
	SegmentAge   time.Duration
	// Now is the clock that stamps batches and ages segments (default
	// time.Now).
	Now func() time.Time
}

// Stats describe what a store holds.
type Stats struct {
	// Records is the number of records stored (snapshots of one flow count
	// once each).
	Records int64
	// Bytes is the on-disk size of the segments, data and indexes.
	Bytes int64
	// Segments is the number of segments, the open one included.
	Segments int
	// Oldest is the start of the oldest record stored; zero when there is
	// none. Records before it were never seen here or were pruned.
	Oldest time.Time
}

// Store is a flow store in one directory. It is safe for concurrent use.
type Store struct {
	opt  Options
	lock *os.File // flock'd LOCK file

	wmu     sync.Mutex // serializes Add, Prune and Close
	open    *segment   // guarded by wmu (and mu to change)
	nextSeq uint64     // guarded by wmu
	broken  error      // guarded by wmu: a failed write could not be undone
	recBuf  []byte     // guarded by wmu
	payload []byte     // guarded by wmu
	normed  []flow.Record

	mu     sync.RWMutex
	segs   []*segment // by seq; the open one last; guarded by mu
	closed bool       // guarded by mu

	// readOnly marks an archive (OpenArchive): sealed segments only, no
	// lock, no writes.
	readOnly bool
}

// Open opens (creating if needed) the store in o.Dir, recovering it after a
// crash (see the package comment).
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("store: empty directory")
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("store: negative MaxBytes %d", o.MaxBytes)
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxBytes > 0 {
		o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes/8)
	}
	o.SegmentBytes = min(max(o.SegmentBytes, minSegmentBytes), maxSegmentBytes)
	if o.SegmentAge <= 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(o.Dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: %s is in use by another process: %w", o.Dir, err)
	}
	s := &Store{opt: o, lock: lock}
	if err := s.load(ctx); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// load reads the directory: sealed segments are mapped, the others
// recovered.
func (s *Store) load(ctx context.Context) error {
	ents, err := os.ReadDir(s.opt.Dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	logs, idxs := map[uint64]bool{}, map[uint64]bool{}
	var seqs []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") || durable.IsTemp(name) { // an index write a crash cut short
			os.Remove(filepath.Join(s.opt.Dir, name))
			continue
		}
		seq, ext, ok := ParseSegmentFileName(name)
		if !ok {
			continue
		}
		if ext == "log" {
			logs[seq] = true
			seqs = append(seqs, seq)
		} else {
			idxs[seq] = true
		}
	}
	for seq := range idxs {
		if !logs[seq] { // a deletion that stopped half way
			os.Remove(segName(s.opt.Dir, seq, "idx"))
		}
	}
	slices.Sort(seqs)
	var recovered []*segment
	for _, seq := range seqs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: open: %w", err)
		}
		s.nextSeq = seq + 1
		if idxs[seq] {
			sg, err := loadSealed(s.opt.Dir, seq)
			if err == nil {
				s.segs = append(s.segs, sg)
				continue
			}
			// Rebuild it from the data file.
			os.Remove(segName(s.opt.Dir, seq, "idx"))
		}
		sg, err := s.recover(seq)
		if err != nil {
			return err
		}
		if sg != nil {
			s.segs = append(s.segs, sg)
			recovered = append(recovered, sg)
		}
	}
	// The newest segment, if recovered, stays open; the others are sealed.
	for _, sg := range recovered {
		if sg == s.segs[len(s.segs)-1] {
			s.open = sg
		} else if err := s.sealSegment(sg); err != nil {
			return err
		}
	}
	return nil
}

// recover rebuilds segment seq from its data file, truncating a torn tail;
// it returns nil for a data file without a readable header, which it
// deletes.
func (s *Store) recover(seq uint64) (*segment, error) {
	path := segName(s.opt.Dir, seq, "log")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("store: recover %s: %w", path, err)
	}
	sg, good, err := recoverData(seq, b)
	if err != nil { // no readable header: no batch was ever committed in it
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("store: recover %s: %w", path, err)
		}
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("store: recover %s: %w", path, err)
	}
	if good < int64(len(b)) {
		if err := f.Truncate(good); err == nil {
			err = syscall.Fdatasync(int(f.Fd()))
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("store: recover %s: truncate: %w", path, err)
		}
	}
	sg.f = f
	if sg.created.IsZero() {
		sg.created = s.opt.Now()
	}
	return sg, nil
}

// release unmaps and closes everything.
func (s *Store) release() {
	for _, sg := range s.segs {
		sg.use.Lock() // after the queries reading it
		unmap(sg.data)
		unmap(sg.idx)
		if sg.f != nil {
			sg.f.Close()
		}
	}
	s.segs, s.open = nil, nil
	s.lock.Close() // releases the flock
}

// Close closes the store. The open segment stays open on disk (the next
// Open recovers it from its frames).
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.open != nil {
		err = s.open.f.Close()
		s.open.f = nil
	}
	s.release()
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Stats returns what the store holds now.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var st Stats
	oldest := int64(math.MaxInt64)
	for _, sg := range s.segs {
		st.Records += sg.records
		st.Bytes += sg.diskBytes()
		if sg.records > 0 {
			oldest = min(oldest, sg.minStart)
		}
	}
	if oldest != math.MaxInt64 {
		st.Oldest = fromMicros(oldest)
	}
	st.Segments = len(s.segs)
	return st
}

// usable says why the store cannot be written, if it cannot; wmu is held.
func (s *Store) usable() error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return errors.New("store: store is closed")
	}
	return s.broken
}
