// Package flowstore is the node agent's local, embedded flow store: audited
// flows (flow.Record) kept in one SQLite file (cgo-free modernc.org/sqlite),
// written in batches and indexed for the two lookups the agent answers:
// "flows to this destination IP within a time window" and "flows of this
// slice within a time window".
//
// Layout, chosen to keep a flow small on disk:
//   - times are unix nanoseconds; the end is stored as a duration since the
//     start (smaller varint) and is NULL while the flow is open;
//   - addresses are BLOBs of 4 bytes (IPv4) or 16 bytes (IPv6, including
//     IPv4-mapped IPv6, which therefore round-trips as written); zones are
//     dropped (conntrack has none);
//   - slice, sliver and pod UID strings are interned in a small "names" table
//     and referenced by integer id; "" is stored as NULL;
//   - counters are uint64 stored bit for bit in INTEGER columns.
//
// Durability: WAL journal with synchronous=NORMAL, so a committed batch
// survives a crash of the process (a power loss may lose the last commits,
// never corrupt the file).
package flowstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/planetkube/planetkube/internal/flow"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DefaultRetention is how long flows are kept when Options.Retention is 0.
const DefaultRetention = 7 * 24 * time.Hour

// MaxLimit is the largest Query.Limit accepted.
const MaxLimit = 10000

// Options configure a Store.
type Options struct {
	// Path is the database file; it is created if missing.
	Path string
	// Retention is how long a flow is kept after it ended (default 7 days).
	Retention time.Duration
	// MaxBytes caps the bytes the database uses; 0 means no cap. It is
	// enforced by Prune.
	MaxBytes int64
}

// Store is a flow store on one SQLite file. It is safe for concurrent use:
// writes (Add, Prune) are serialized, queries run concurrently with them.
type Store struct {
	db  *sql.DB
	opt Options

	wmu   sync.Mutex       // serializes Add and Prune
	names map[string]int64 // committed name -> id; guarded by wmu
}

const schema = `
CREATE TABLE IF NOT EXISTS names (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS flows (
	id     INTEGER PRIMARY KEY,
	start  INTEGER NOT NULL,
	dur    INTEGER,
	proto  INTEGER NOT NULL,
	osrc   BLOB NOT NULL, osport INTEGER NOT NULL,
	odst   BLOB NOT NULL, odport INTEGER NOT NULL,
	rsrc   BLOB NOT NULL, rsport INTEGER NOT NULL,
	rdst   BLOB NOT NULL, rdport INTEGER NOT NULL,
	obytes INTEGER NOT NULL, opkts INTEGER NOT NULL,
	rbytes INTEGER NOT NULL, rpkts INTEGER NOT NULL,
	slice  INTEGER, sliver INTEGER, uid INTEGER
);
CREATE INDEX IF NOT EXISTS flows_dst ON flows (odst, start);
CREATE INDEX IF NOT EXISTS flows_slice ON flows (slice, start);
`

const insertFlow = `INSERT INTO flows
	(start, dur, proto, osrc, osport, odst, odport, rsrc, rsport, rdst, rdport,
	 obytes, opkts, rbytes, rpkts, slice, sliver, uid)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// Open opens (creating if needed) the store at o.Path.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("flowstore: empty path")
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("flowstore: negative MaxBytes %d", o.MaxBytes)
	}
	// auto_vacuum must precede table creation; it lets Prune give pages back.
	dsn := o.Path + "?_pragma=auto_vacuum(INCREMENTAL)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(5000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("flowstore: open %s: %w", o.Path, err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("flowstore: create schema in %s: %w", o.Path, err)
	}
	return &Store{db: db, opt: o, names: map[string]int64{}}, nil
}

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("flowstore: close: %w", err)
	}
	return nil
}

// Add stores a batch of records in one transaction: either all are
// committed or none.
func (s *Store) Add(ctx context.Context, recs []flow.Record) (err error) {
	if len(recs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flowstore: add: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	ins, err := tx.PrepareContext(ctx, insertFlow)
	if err != nil {
		return fmt.Errorf("flowstore: add: prepare: %w", err)
	}
	defer ins.Close()

	newNames := map[string]int64{} // interned in this transaction
	id := func(name string) (any, error) {
		if name == "" {
			return nil, nil
		}
		if v, ok := s.names[name]; ok {
			return v, nil
		}
		if v, ok := newNames[name]; ok {
			return v, nil
		}
		var v int64
		err := tx.QueryRowContext(ctx,
			`INSERT INTO names (name) VALUES (?)
			 ON CONFLICT (name) DO UPDATE SET name = excluded.name
			 RETURNING id`, name).Scan(&v)
		if err != nil {
			return nil, fmt.Errorf("intern %q: %w", name, err)
		}
		newNames[name] = v
		return v, nil
	}

	for i := range recs {
		r := &recs[i]
		slice, err := id(r.Slice)
		if err != nil {
			return fmt.Errorf("flowstore: add: %w", err)
		}
		sliver, err := id(r.Sliver)
		if err != nil {
			return fmt.Errorf("flowstore: add: %w", err)
		}
		uid, err := id(r.PodUID)
		if err != nil {
			return fmt.Errorf("flowstore: add: %w", err)
		}
		start := nanos(r.Start)
		var dur any
		if !r.End.IsZero() {
			dur = nanos(r.End) - start
		}
		_, err = ins.ExecContext(ctx, start, dur, int64(r.Proto),
			addrBytes(r.Orig.Src.Addr()), int64(r.Orig.Src.Port()),
			addrBytes(r.Orig.Dst.Addr()), int64(r.Orig.Dst.Port()),
			addrBytes(r.Reply.Src.Addr()), int64(r.Reply.Src.Port()),
			addrBytes(r.Reply.Dst.Addr()), int64(r.Reply.Dst.Port()),
			int64(r.OrigBytes), int64(r.OrigPackets),
			int64(r.ReplyBytes), int64(r.ReplyPackets),
			slice, sliver, uid)
		if err != nil {
			return fmt.Errorf("flowstore: add: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flowstore: add: commit: %w", err)
	}
	for k, v := range newNames {
		s.names[k] = v
	}
	return nil
}

// Query returns the flows to q.Dst and/or of q.Slice that overlap the window
// [q.From, q.To): started before To and still open or ended at or after From.
// They are ordered by start. At least one of Dst and Slice is required, To
// must be after From and Limit must be in 1..MaxLimit.
func (s *Store) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	if !q.Dst.IsValid() && q.Slice == "" {
		return nil, errors.New("flowstore: query: need a destination IP or a slice")
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return nil, fmt.Errorf("flowstore: query: limit %d not in 1..%d", q.Limit, MaxLimit)
	}
	if !q.To.After(q.From) {
		return nil, fmt.Errorf("flowstore: query: window end %v not after start %v", q.To, q.From)
	}
	from, to := nanos(q.From), nanos(q.To)

	stmt := `SELECT f.start, f.dur, f.proto, f.osrc, f.osport, f.odst, f.odport,
		f.rsrc, f.rsport, f.rdst, f.rdport, f.obytes, f.opkts, f.rbytes, f.rpkts,
		ns.name, nv.name, nu.name
		FROM flows f
		LEFT JOIN names ns ON ns.id = f.slice
		LEFT JOIN names nv ON nv.id = f.sliver
		LEFT JOIN names nu ON nu.id = f.uid
		WHERE f.start < ? AND (f.dur IS NULL OR f.start + f.dur >= ?)`
	args := []any{to, from}
	if q.Dst.IsValid() {
		stmt += ` AND f.odst = ?`
		args = append(args, addrBytes(q.Dst))
	}
	if q.Slice != "" {
		stmt += ` AND f.slice = (SELECT id FROM names WHERE name = ?)`
		args = append(args, q.Slice)
	}
	stmt += ` ORDER BY f.start, f.id LIMIT ?`
	args = append(args, q.Limit)

	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("flowstore: query: %w", err)
	}
	defer rows.Close()
	var out []flow.Record
	for rows.Next() {
		var (
			r                              flow.Record
			start                          int64
			dur                            sql.NullInt64
			proto                          int64
			osrc, odst, rsrc, rdst         []byte
			osport, odport, rsport, rdport int64
			ob, op, rb, rp                 int64
			slice, sliver, uid             sql.NullString
		)
		if err := rows.Scan(&start, &dur, &proto, &osrc, &osport, &odst, &odport,
			&rsrc, &rsport, &rdst, &rdport, &ob, &op, &rb, &rp,
			&slice, &sliver, &uid); err != nil {
			return nil, fmt.Errorf("flowstore: query: scan: %w", err)
		}
		r.Start = fromNanos(start)
		if dur.Valid {
			r.End = fromNanos(start + dur.Int64)
		}
		r.Proto = uint8(proto)
		if r.Orig.Src, err = addrPort(osrc, osport); err == nil {
			if r.Orig.Dst, err = addrPort(odst, odport); err == nil {
				if r.Reply.Src, err = addrPort(rsrc, rsport); err == nil {
					r.Reply.Dst, err = addrPort(rdst, rdport)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("flowstore: query: %w", err)
		}
		r.OrigBytes, r.OrigPackets = uint64(ob), uint64(op)
		r.ReplyBytes, r.ReplyPackets = uint64(rb), uint64(rp)
		r.Slice, r.Sliver, r.PodUID = slice.String, sliver.String, uid.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flowstore: query: %w", err)
	}
	return out, nil
}

// Prune deletes the flows that ended before now-Retention (open flows are
// kept), then, if MaxBytes > 0 and the database uses more, deletes the
// oldest flows (in insertion order) until it fits. It returns how many flows
// it deleted. Freed pages are returned to the file system (incremental
// vacuum) and the WAL is checkpointed.
//
// The age pass scans the table (no index on the end time, to keep flows
// small); it is meant to run periodically, not per batch.
func (s *Store) Prune(ctx context.Context, now time.Time) (int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()

	cutoff := nanos(now.Add(-s.opt.Retention))
	res, err := s.db.ExecContext(ctx,
		`DELETE FROM flows WHERE dur IS NOT NULL AND start + dur < ?`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("flowstore: prune by age: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("flowstore: prune by age: %w", err)
	}
	if s.opt.MaxBytes > 0 {
		for {
			used, err := s.usedBytes(ctx)
			if err != nil {
				return n, err
			}
			if used <= s.opt.MaxBytes {
				break
			}
			var count int64
			if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM flows`).Scan(&count); err != nil {
				return n, fmt.Errorf("flowstore: prune by size: count: %w", err)
			}
			if count == 0 {
				break // only schema and names left: nothing more to delete
			}
			// Delete the excess share of rows, plus 1% of headroom (pages
			// are not filled exactly), at least 100.
			k := count*(used-s.opt.MaxBytes)/used + count/100
			k = max(k, 100)
			res, err := s.db.ExecContext(ctx,
				`DELETE FROM flows WHERE id IN (SELECT id FROM flows ORDER BY id LIMIT ?)`, k)
			if err != nil {
				return n, fmt.Errorf("flowstore: prune by size: %w", err)
			}
			d, err := res.RowsAffected()
			if err != nil {
				return n, fmt.Errorf("flowstore: prune by size: %w", err)
			}
			n += d
			if err := s.compact(ctx); err != nil {
				return n, err
			}
		}
	}
	if n > 0 {
		if err := s.compact(ctx); err != nil {
			return n, err
		}
	}
	return n, nil
}

// usedBytes is the size of the database's pages in use (free pages excluded).
func (s *Store) usedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	err := s.db.QueryRowContext(ctx,
		`SELECT p.page_count, f.freelist_count, s.page_size
		 FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s`).
		Scan(&pages, &free, &size)
	if err != nil {
		return 0, fmt.Errorf("flowstore: database size: %w", err)
	}
	return (pages - free) * size, nil
}

// compact gives free pages back to the file system and checkpoints the WAL.
func (s *Store) compact(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
		return fmt.Errorf("flowstore: incremental vacuum: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("flowstore: checkpoint: %w", err)
	}
	return nil
}

// nanos is t in unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos inverts nanos.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// addrBytes encodes an address: 4 bytes for IPv4, 16 for IPv6 (IPv4-mapped
// included), empty for the invalid address. Zones are dropped.
func addrBytes(a netip.Addr) []byte {
	switch {
	case a.Is4():
		b := a.As4()
		return b[:]
	case a.Is6():
		b := a.As16()
		return b[:]
	}
	return []byte{}
}

// addrPort decodes addrBytes and a port.
func addrPort(b []byte, port int64) (netip.AddrPort, error) {
	var a netip.Addr
	switch len(b) {
	case 0:
	case 4:
		a = netip.AddrFrom4([4]byte(b))
	case 16:
		a = netip.AddrFrom16([16]byte(b))
	default:
		return netip.AddrPort{}, fmt.Errorf("bad stored address of %d bytes", len(b))
	}
	if port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("bad stored port %d", port)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
