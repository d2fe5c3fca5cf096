package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/planetkube/planetkube/internal/durable"
	"github.com/planetkube/planetkube/internal/flow"
)

// Add stores a batch of records as one frame of the open segment: when it
// returns nil, all of them are durable; otherwise none is stored.
func (s *Store) Add(ctx context.Context, recs []flow.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: add: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	now := s.opt.Now()
	if sg := s.open; sg != nil && sg.records > 0 &&
		(sg.dataSize >= s.opt.SegmentBytes || now.Sub(sg.created) >= s.opt.SegmentAge) {
		if err := s.seal(); err != nil {
			return err
		}
	}

	s.normed = s.normed[:0]
	minStart := int64(math.MaxInt64)
	for i := range recs {
		r := recs[i]
		r.Orig = flow.Tuple{Src: normAP(r.Orig.Src), Dst: normAP(r.Orig.Dst)}
		r.Reply = flow.Tuple{Src: normAP(r.Reply.Src), Dst: normAP(r.Reply.Dst)}
		s.normed = append(s.normed, r)
		minStart = min(minStart, micros(r.Start))
	}
	if s.open == nil {
		if err := s.create(minStart, now); err != nil {
			return err
		}
	}
	sg := s.open

	// Encode the records, collecting the dictionary entries they add.
	var added [][]byte
	pending := map[string]uint64{}
	enc := encoder{base: sg.base, intern: func(e []byte) uint64 {
		if id, ok := sg.intern[string(e)]; ok {
			return id
		}
		if id, ok := pending[string(e)]; ok {
			return id
		}
		id := uint64(len(sg.dict) + len(added) + 1)
		added = append(added, []byte(string(e)))
		pending[string(e)] = id
		return id
	}}
	s.recBuf = s.recBuf[:0]
	for i := range s.normed {
		s.recBuf = enc.appendRecord(s.recBuf, &s.normed[i])
	}
	p := append(s.payload[:0], make([]byte, frameHeaderSize)...)
	p = binary.AppendUvarint(p, zz(micros(now)-sg.base))
	p = binary.AppendUvarint(p, uint64(len(added)))
	for _, e := range added {
		p = binary.AppendUvarint(p, uint64(len(e)))
		p = append(p, e...)
	}
	p = binary.AppendUvarint(p, uint64(len(s.normed)))
	p = append(p, s.recBuf...)
	s.payload = p
	n := len(p) - frameHeaderSize
	if n > maxFrame {
		return fmt.Errorf("store: add: batch of %d records is %d bytes, more than %d", len(recs), n, maxFrame)
	}
	binary.LittleEndian.PutUint32(p, uint32(n))
	binary.LittleEndian.PutUint32(p[4:], crc32.Checksum(p[frameHeaderSize:], castagnoli))

	off := sg.dataSize
	pf, err := sg.parseFrame(p[frameHeaderSize:], off)
	if err != nil { // an encoder bug: never write what cannot be read back
		return fmt.Errorf("store: add: encoded batch does not decode: %w", err)
	}
	if _, err := sg.f.WriteAt(p, off); err != nil {
		return s.undo(off, fmt.Errorf("store: add: write: %w", err))
	}
	if err := syscall.Fdatasync(int(sg.f.Fd())); err != nil {
		return s.undo(off, fmt.Errorf("store: add: fdatasync: %w", err))
	}
	s.mu.Lock()
	sg.apply(pf, p)
	s.mu.Unlock()
	return nil
}

// undo cuts a failed frame off the open segment.
func (s *Store) undo(off int64, err error) error {
	if terr := s.open.f.Truncate(off); terr != nil {
		s.broken = fmt.Errorf("store: a failed write could not be undone (%v); reopen the store", terr)
	}
	return err
}

// create starts a new open segment whose base is base (µs).
func (s *Store) create(base int64, now time.Time) error {
	seq := s.nextSeq
	path := segName(s.opt.Dir, seq, "log")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("store: new segment: %w", err)
	}
	hdr := logHeader(base)
	_, err = f.Write(hdr)
	if err == nil {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if err == nil {
		err = durable.SyncDir(s.opt.Dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("store: new segment %s: %w", path, err)
	}
	s.nextSeq++
	sg := newOpenSegment(seq, base)
	sg.f, sg.created = f, now
	sg.buf = append(make([]byte, 0, 1<<20), hdr...)
	sg.dataSize = logHeaderSize
	s.mu.Lock()
	s.segs = append(s.segs, sg)
	s.open = sg
	s.mu.Unlock()
	return nil
}

// seal seals the open segment; wmu is held.
func (s *Store) seal() error {
	if s.open == nil {
		return nil
	}
	return s.sealSegment(s.open)
}

// sealSegment writes an unsealed segment's index and maps its files in its
// place; wmu is held. One without records is deleted instead.
func (s *Store) sealSegment(sg *segment) error {
	if sg.records == 0 {
		s.drop(sg)
		return nil
	}
	idxPath := segName(s.opt.Dir, sg.seq, "idx")
	if err := durable.WriteFile(idxPath, sg.buildIndex(), 0o644); err != nil {
		return fmt.Errorf("store: seal segment %d: %w", sg.seq, err)
	}
	sealed, err := loadSealed(s.opt.Dir, sg.seq)
	if err != nil {
		os.Remove(idxPath)
		return fmt.Errorf("store: seal segment %d: %w", sg.seq, err)
	}
	s.mu.Lock()
	for i, x := range s.segs {
		if x == sg {
			s.segs[i] = sealed
		}
	}
	if s.open == sg {
		s.open = nil
	}
	s.mu.Unlock()
	sg.f.Close()
	return nil
}
