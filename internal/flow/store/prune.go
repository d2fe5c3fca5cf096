package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// drop deletes a segment (from the list, then its files); wmu is held.
func (s *Store) drop(sg *segment) {
	s.mu.Lock()
	s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == sg })
	if s.open == sg {
		s.open = nil
	}
	s.mu.Unlock()
	// Wait for the queries still reading it (new ones no longer see it).
	sg.use.Lock()
	unmap(sg.data)
	unmap(sg.idx)
	if sg.f != nil {
		sg.f.Close()
	}
	os.Remove(segName(s.opt.Dir, sg.seq, "log"))
	os.Remove(segName(s.opt.Dir, sg.seq, "idx"))
}

// Prune deletes the sealed segments whose newest start, end and insert
// time are all before now-Retention, then, if MaxBytes > 0 and the store is
// bigger, the oldest segments until it fits (see the package comment). It
// returns how many records the deleted segments held: retention works by
// whole segments, so a flow may outlive its retention by up to a segment's
// span (SegmentAge).
func (s *Store) Prune(ctx context.Context, now time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return 0, err
	}
	cutoff := micros(now.Add(-s.opt.Retention))
	if sg := s.open; sg != nil && sg.records > 0 &&
		(sg.maxTime < cutoff || s.opt.Now().Sub(sg.created) >= s.opt.SegmentAge) {
		if err := s.seal(); err != nil {
			return 0, err
		}
	}
	var n int64
	for _, sg := range s.sealedSegments() {
		if sg.maxTime < cutoff {
			n += sg.records
			s.drop(sg)
		}
	}
	if s.opt.MaxBytes <= 0 {
		return n, nil
	}
	if sg := s.open; sg != nil && sg.diskBytes() > s.opt.MaxBytes {
		if err := s.seal(); err != nil {
			return n, err
		}
	}
	for _, sg := range s.sealedSegments() {
		if s.Stats().Bytes <= s.opt.MaxBytes {
			break
		}
		n += sg.records
		s.drop(sg)
	}
	return n, nil
}

func (s *Store) sealedSegments() []*segment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*segment
	for _, sg := range s.segs {
		if sg != s.open {
			out = append(out, sg)
		}
	}
	return out
}
