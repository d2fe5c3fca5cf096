package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSealedSegmentsVerify: the sealed segments are listed and opened as
// files, and Verify accepts them whole and refuses them damaged.
func TestSealedSegmentsVerify(t *testing.T) {
	s := open(t, Options{})
	add(t, s, rec("10.0.0.1:1", "198.51.100.1:443", "192.0.2.1:1", t0, t0.Add(time.Minute), "plc.a.b"))
	add(t, s, rec("10.0.0.2:2", "198.51.100.2:443", "192.0.2.1:2", t0.Add(time.Second), time.Time{}, "plc.a.c"))
	seal(t, s)
	add(t, s, rec("10.0.0.3:3", "198.51.100.3:443", "192.0.2.1:3", t0.Add(time.Hour), t0.Add(2*time.Hour), ""))
	got := s.Sealed()
	if len(got) != 1 || got[0].Records != 2 || !got[0].MinStart.Equal(t0) || got[0].DataBytes <= 0 || got[0].IndexBytes <= 0 {
		t.Fatalf("sealed %+v, want one segment of 2 records (the open one is not listed)", got)
	}
	if _, _, err := s.OpenSealed(got[0].Seq + 1); !errors.Is(err, ErrNoSegment) {
		t.Errorf("the open segment: %v, want ErrNoSegment", err)
	}
	df, xf, err := s.OpenSealed(got[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(df)
	idx, _ := io.ReadAll(xf)
	df.Close()
	xf.Close()
	info, err := Verify(got[0].Seq, data, idx)
	if err != nil || info != got[0] {
		t.Fatalf("Verify = %+v, %v; want %+v", info, err, got[0])
	}
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 0x40; return c }
	for _, c := range []struct {
		name        string
		data, index []byte
		want        string
	}{
		{"a data byte flipped", flip(data, len(data)-3), idx, "fails its CRC"},
		{"a data header byte flipped", flip(data, 2), idx, "bad data file header"},
		{"data cut short", data[:len(data)-1], idx, "its index says"},
		{"an index byte flipped", data, flip(idx, 20), "bad index checksum"},
		{"no index", data, nil, "bad index header"},
		{"another segment's index", data, otherIndex(t), "its index says"},
		{"an index that counts another record", data, reseal(idx, func(b []byte) { binary.LittleEndian.PutUint64(b[16:], 3) }), "disagree"},
	} {
		if _, err := Verify(got[0].Seq, c.data, c.index); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	// The files stay readable after retention deletes the segment.
	df, xf, err = s.OpenSealed(got[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	defer xf.Close()
	if _, err := s.Prune(t.Context(), time.Now().Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(df.Name()); !os.IsNotExist(err) {
		t.Fatalf("the segment was not pruned: %v", err)
	}
	if b, err := io.ReadAll(df); err != nil || len(b) != len(data) {
		t.Errorf("reading a pruned segment's open file: %d bytes, %v", len(b), err)
	}
}

// reseal edits an index's body and writes its CRC again.
func reseal(idx []byte, edit func([]byte)) []byte {
	c := append([]byte(nil), idx...)
	edit(c)
	body := c[:len(c)-4]
	binary.LittleEndian.PutUint32(c[len(c)-4:], crc32.Checksum(body, castagnoli))
	return c
}

// otherIndex is the index of a segment with other records of the same size.
func otherIndex(t *testing.T) []byte {
	s := open(t, Options{})
	add(t, s, rec("10.0.0.9:1", "198.51.100.1:443", "192.0.2.1:1", t0.Add(time.Minute), t0.Add(2*time.Minute), "plc.a.b"))
	seal(t, s)
	_, xf, err := s.OpenSealed(s.Sealed()[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	defer xf.Close()
	b, _ := io.ReadAll(xf)
	return b
}
