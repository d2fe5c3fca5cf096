package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// SegmentInfo describes a sealed segment, as an archiver sees it: its two
// files never change once sealed, and are deleted whole by retention.
type SegmentInfo struct {
	// Seq is its number, in write order.
	Seq uint64 `json:"seq"`
	// Records is how many records it holds.
	Records int64 `json:"records"`
	// MinStart is the earliest record start; MaxTime the latest start,
	// end or insert time.
	MinStart time.Time `json:"min_start"`
	MaxTime  time.Time `json:"max_time"`
	// DataBytes and IndexBytes are the sizes of its data and index files.
	DataBytes  int64 `json:"data_bytes"`
	IndexBytes int64 `json:"index_bytes"`
}

func (sg *segment) info() SegmentInfo {
	return SegmentInfo{Seq: sg.seq, Records: sg.records, MinStart: fromMicros(sg.minStart), MaxTime: fromMicros(sg.maxTime),
		DataBytes: sg.dataSize, IndexBytes: sg.idxSize}
}

// Sealed lists the sealed segments, oldest first.
func (s *Store) Sealed() []SegmentInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []SegmentInfo
	for _, sg := range s.segs {
		if sg.sealed() {
			out = append(out, sg.info())
		}
	}
	return out
}

// Unsealed describes the segment being written, with its records so far,
// if it holds any: it is served once sealed.
func (s *Store) Unsealed() (SegmentInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.open == nil || s.open.records == 0 {
		return SegmentInfo{}, false
	}
	return s.open.info(), true
}

// ErrNoSegment is OpenSealed's error for a segment that is not (or no
// longer) sealed here.
var ErrNoSegment = errors.New("store: no such sealed segment")

// OpenSealed opens the data and index files of sealed segment seq. The
// files stay readable after retention deletes the segment, until closed.
func (s *Store) OpenSealed(seq uint64) (data, index *os.File, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sg := range s.segs {
		if sg.seq != seq || !sg.sealed() {
			continue
		}
		if data, err = os.Open(segName(s.opt.Dir, seq, "log")); err != nil {
			return nil, nil, fmt.Errorf("store: open segment %d: %w", seq, err)
		}
		if index, err = os.Open(segName(s.opt.Dir, seq, "idx")); err != nil {
			data.Close()
			return nil, nil, fmt.Errorf("store: open segment %d: %w", seq, err)
		}
		return data, index, nil
	}
	return nil, nil, ErrNoSegment
}

// ParseSegmentFileName reads a segment file's name: 16 hex digits, then
// .log or .idx, exactly as SegmentFileName writes it.
func ParseSegmentFileName(name string) (seq uint64, ext string, ok bool) {
	base, ext, found := strings.Cut(name, ".")
	if !found || len(base) != 16 || ext != "log" && ext != "idx" {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(base, 16, 64)
	return seq, ext, err == nil && SegmentFileName(seq, ext) == name
}

// SegmentFileName is the name of segment seq's data ("log") or index
// ("idx") file, as the store writes it.
func SegmentFileName(seq uint64, ext string) string { return fmt.Sprintf("%016x.%s", seq, ext) }

// Verify checks a sealed segment's files as another machine received them:
// the index's header and CRC-32C, every data frame's CRC-32C and contents,
// and that the two agree (size, base time, record count). It returns what
// the index says of the segment.
func Verify(seq uint64, data, index []byte) (SegmentInfo, error) {
	v, err := parseIndex(index)
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("store: verify segment %d: index: %w", seq, err)
	}
	if int64(len(data)) != v.dataSize {
		return SegmentInfo{}, fmt.Errorf("store: verify segment %d: data is %d bytes, its index says %d", seq, len(data), v.dataSize)
	}
	sg, good, err := recoverData(seq, data)
	switch {
	case err != nil:
		return SegmentInfo{}, fmt.Errorf("store: verify segment %d: data: %w", seq, err)
	case good != int64(len(data)):
		return SegmentInfo{}, fmt.Errorf("store: verify segment %d: data: frame at %d is torn or fails its CRC", seq, good)
	case sg.base != v.base || sg.records != v.records || sg.minStart != v.minStart:
		return SegmentInfo{}, fmt.Errorf("store: verify segment %d: data and index disagree (%d records, index %d)", seq, sg.records, v.records)
	}
	return SegmentInfo{Seq: seq, Records: v.records, MinStart: fromMicros(v.minStart), MaxTime: fromMicros(v.maxTime),
		DataBytes: int64(len(data)), IndexBytes: int64(len(index))}, nil
}

// ReadIndexInfo reads what a sealed segment's index file says of the
// segment, checking its CRC, and the size of both files on disk (the data
// file's as the index records it).
func ReadIndexInfo(path string) (SegmentInfo, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SegmentInfo{}, 0, fmt.Errorf("store: %w", err)
	}
	v, err := parseIndex(b)
	if err != nil {
		return SegmentInfo{}, 0, fmt.Errorf("store: %s: %w", path, err)
	}
	info := SegmentInfo{Records: v.records, MinStart: fromMicros(v.minStart), MaxTime: fromMicros(v.maxTime), DataBytes: v.dataSize, IndexBytes: int64(len(b))}
	return info, info.DataBytes + info.IndexBytes, nil
}
