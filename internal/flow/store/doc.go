// Package store is the node agent's local, embedded flow store: audited
// flows (flow.Record) kept in a directory of append-only segments, written in
// batches and indexed for the two lookups the agent answers: "flows to this
// destination IP within a time window" and "flows of this slice within a time
// window". It replaces an SQLite store that ingested about 55k flows/s at
// 122 bytes/flow; this one is built to do ≥100k flows/s per core at ≤64
// bytes/flow (data and indexes) with query p99 ≤50 ms at 10M flows (see
// test/bench, TestFlowStoreBench).
//
// # Segments
//
// The directory holds segments, numbered in write order: a data file
// NNNNNNNNNNNNNNNN.log (16 hex digits) and, once the segment is sealed, its
// index file NNNNNNNNNNNNNNNN.idx, plus a LOCK file (flock) that keeps a
// second process out. Only the newest segment is open for appending. It is
// sealed when it is older than Options.SegmentAge (1 h) by the store's clock
// or bigger than Options.SegmentBytes (64 MiB; MaxBytes/8 when that is
// smaller, so that pruning by size has several segments to choose from):
// its index is then written atomically (tmp file, fsync, rename, fsync of the
// directory) and both files are mapped read-only. Each segment is
// self-contained (its own dictionary and time base), so retention deletes
// whole segments.
//
// # Data file
//
// A 16-byte header ("PKFSLOG1", base time as int64 little-endian unix
// microseconds: the first batch's earliest start), then one frame per Add:
//
//	uint32 payload length | uint32 CRC-32C of the payload | payload
//	payload: zigzag(insert time - base) | uvarint n | n × (uvarint len, bytes)
//	         | uvarint m | m × record
//
// The n byte strings are the dictionary entries this batch added (ids
// continue the segment's, from 1): encoded addresses (0, 4 or 16 bytes) and
// attributions (Slice, Sliver, PodUID as three uvarint-length-prefixed
// strings). A frame is written with one write and made durable with
// fdatasync before Add returns; a frame is all or nothing, so is a batch.
//
// A record is, in order: a flags byte (original destination kind 0 invalid,
// 1 IPv4, 2 IPv6; open flow; reply source == original destination; reply
// destination == original source, i.e. no NAT; NAT that kept the source
// port; protocol TCP/UDP/ICMP or "other", then a protocol byte follows);
// zigzag(start - base) and, for a closed flow, zigzag(end - start), in
// microseconds; the original source as a dictionary id (pod and node
// addresses repeat) and a 2-byte port; the original destination's 4 or 16
// bytes and 2-byte port; the reply source (kind byte, address, port) only
// when it is not the original destination; the reply destination as a
// dictionary id (the node's address under masquerade) and its port unless
// it kept the source port, only under NAT; the four counters as uvarints;
// the attribution's dictionary id (0: none). Ports are little-endian.
//
// The flags byte, bit by bit:
//
//	bits 0-1  original destination kind: 0 invalid, 1 IPv4, 2 IPv6
//	bit 2     open flow (End is zero: no end time follows)
//	bit 3     Reply.Src == Orig.Dst (no reply source follows)
//	bit 4     Reply.Dst == Orig.Src, no NAT (no reply destination follows)
//	bit 5     under NAT, Reply.Dst kept Orig.Src's port (no port follows)
//	bits 6-7  protocol: 0 other (a protocol byte follows), 1 TCP, 2 UDP, 3 ICMP
//
// Times are kept to the microsecond (sub-microsecond parts are dropped) and
// returned in UTC. Addresses are normalized on write and in queries:
// IPv4-mapped IPv6 is stored and looked up as IPv4, zones are dropped.
// Fields of flow.Record other than those above (for example a node name)
// are not stored.
//
// # Index file
//
// A 64-byte header ("PKFSIDX2", data length, record count, base, smallest
// start, largest time seen (start, end or insert time), counts of the four
// tables), the tables, a blob, and a CRC-32C of all that:
//
//	header, little-endian: 0 magic "PKFSIDX2" | 8 data length (uint64)
//	        | 16 record count | 24 base | 32 smallest start | 40 largest time
//	        (int64 unix µs) | 48, 52, 56, 60 uint32 counts of the four tables
//	IPv4 destinations: sorted, 4-byte address + uint32 blob offset of its postings
//	IPv6 destinations: sorted, 16-byte address + uint32 blob offset
//	slices: sorted by name, uint32 blob offset of the name + of the postings
//	dictionary: uint32 blob offset of entry id 1, 2, ...
//
// Strings in the blob (slice names, dictionary entries) are a uvarint length
// then the bytes. Postings are a uvarint count then the records' data file
// offsets, increasing, delta-encoded as uvarints. A slice's postings are
// followed by the records' times, in the same order, two uvarints each: the
// start's difference from the previous record's (from the base for the
// first), zigzag-encoded, then 0 for an open record or 1 + the zigzag
// duration (end − start), so that a slice query picks its records without
// reading them. Unattributed flows have no slice entry. The open segment
// keeps the same index in memory (without the times). An index
// "PKFSIDX1" (before the times) is read as is: its slice queries read the
// times from the records.
//
// # Recovery
//
// Open maps every sealed segment whose index checks out. A data file without
// a valid index (a crash while sealing, a corrupt index) is scanned frame by
// frame; the first torn or corrupt frame (short, bad length, bad CRC, bad
// record) and everything after it are truncated away, and the index is
// rebuilt: in memory for the newest segment, which stays open, written as
// a sealed index for the others. A data file whose header is unreadable
// holds no committed batch and is deleted. So a batch whose Add returned
// survives a crash of the process (kill -9) and of the machine (fdatasync);
// a batch whose Add did not return may or may not be there, whole.
//
// # Queries
//
// A query visits the segments whose smallest start is before the window's
// end and whose largest time seen is not before its start; in each, it looks
// the destination (or the slice) up in the index, reads the times of the
// records it points to (a slice's from the index, a destination's from the
// first bytes of each record, and its port when one is asked) and decodes
// only the records it returns, and those that share a start with another,
// having picked them by the times. A query by destination and slice decodes
// every record to the destination, to read its attribution. Records with the same start, protocol and original tuple are
// one flow: the capture writes a snapshot of a long-lived flow (End zero,
// counters so far) at every periodic dump and a final record when it ends,
// so the last written record of a flow wins and the query returns one row
// per flow. An open snapshot whose segment is older than the window (its
// flow was neither dumped again nor ended since) is not returned.
//
// # Retention
//
// Prune deletes whole sealed segments: by age, those whose largest time
// seen (newest start, end or insert time) is before now-Retention; then, when
// MaxBytes > 0, the oldest ones until the directory holds at most MaxBytes
// (the open segment is sealed first when it alone is over or entirely
// expired). The count it returns is the deleted segments' records, snapshots
// included.
//
// # Concurrency
//
// Add, Prune and Close are serialized; queries hold a read lock for their
// duration, and Add takes the write lock only to publish a batch after it is
// durable, so queries run concurrently with writes.
package store
