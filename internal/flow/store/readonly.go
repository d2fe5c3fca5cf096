package store

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// errReadOnly is the error of writes to an archive.
var errReadOnly = errors.New("store: an archive is read-only")

// OpenArchive opens a directory of sealed segments that another process
// writes (the archiver's copy of a node's segments) for queries only: no
// lock, no recovery, no writes. Refresh picks up the segments added or
// removed since.
func OpenArchive(dir string) (*Store, error) {
	s := &Store{opt: Options{Dir: dir, Retention: DefaultRetention, Now: time.Now}, broken: errReadOnly, readOnly: true}
	if err := s.Refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Refresh makes an archive's segments those whose two files are in its
// directory now: new ones are mapped, removed ones released once the
// queries reading them are done. A segment that does not load (a part of
// it missing, or damaged) is left out.
func (s *Store) Refresh() error {
	if !s.readOnly {
		return errors.New("store: Refresh is for archives")
	}
	seqs, err := SegmentsIn(s.opt.Dir)
	if err != nil {
		return err
	}
	present := map[uint64]bool{}
	for _, seq := range seqs {
		present[seq] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("store: archive is closed")
	}
	var keep, gone []*segment
	for _, sg := range s.segs {
		if present[sg.seq] {
			keep = append(keep, sg)
			delete(present, sg.seq)
		} else {
			gone = append(gone, sg)
		}
	}
	for seq := range present {
		sg, err := loadSealed(s.opt.Dir, seq)
		if err != nil {
			continue
		}
		keep = append(keep, sg)
	}
	slices.SortFunc(keep, func(a, b *segment) int { return cmp.Compare(a.seq, b.seq) })
	s.segs = keep
	for _, sg := range gone {
		go func() { // after the queries reading it
			sg.use.Lock()
			unmap(sg.data)
			unmap(sg.idx)
		}()
	}
	return nil
}

// SegmentsIn lists the complete sealed segments in dir (both files there),
// in order; a missing dir has none.
func SegmentsIn(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("store: %w", err)
	}
	logs, idxs := map[uint64]bool{}, map[uint64]bool{}
	for _, e := range ents {
		seq, ext, ok := ParseSegmentFileName(e.Name())
		switch {
		case !ok:
		case ext == "log":
			logs[seq] = true
		default:
			idxs[seq] = true
		}
	}
	var out []uint64
	for seq := range idxs {
		if logs[seq] {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out, nil
}
