// Package capture captures the network flows of a node from conntrack,
// for the node agent's audit of flows per slice (PlanetFlow).
//
// Run subscribes to conntrack NEW and DESTROY events (the DESTROY carries the
// final counters), keeps a table of open flows, and emits a final record for
// each flow that ends. DESTROY events are reliable (NETLINK_BROADCAST_ERROR):
// when the event socket's buffer is full, as when the kernel reaps a large
// backlog of expired flows at once, the kernel keeps the ended flows and
// sends their DESTROY again until it is delivered, instead of dropping it. It dumps the conntrack table at start (the flows
// already open are tracked and emitted as snapshots) and every DumpInterval
// (snapshots of long flows whose counters changed). When the event socket
// overflows (ENOBUFS), it counts it and reads on: only NEW events were
// dropped, and the next dump brings the flows they missed. Without reliable
// events (Options.UnreliableEvents), or on another socket error, it re-dials
// the socket and re-syncs with a dump. Either way, flows that vanish from a
// dump without their DESTROY are emitted once as lost, with inexact
// counters, and counted in Metrics.LostFlows.
//
// Counters and timestamps need net.netfilter.nf_conntrack_acct=1 and
// nf_conntrack_timestamp=1 in the captured namespace: see EnableAccounting.
package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/planetkube/planetkube/internal/agent/netns"
	"github.com/planetkube/planetkube/internal/flow"
)

// Defaults of Options.
const (
	DefaultReadBuffer   = 32 << 20
	DefaultDumpInterval = time.Minute
)

// Batching of emits, and how long a flow missing from a dump may still get
// its DESTROY event (queued before the dump) before it is counted as lost.
var (
	maxBatch   = 1000
	flushEvery = 100 * time.Millisecond
	lostGrace  = 2 * time.Second
	// maxLostWait bounds how long suspects may wait past lostGrace for
	// their DESTROY while the kernel is still re-delivering DESTROYs of
	// other suspects (reliable events only).
	maxLostWait = time.Minute
	// tombstoneTTL is how long the key of a flow counted as lost is kept, to
	// drop its DESTROY if it comes after all.
	tombstoneTTL = 5 * time.Minute
)

// Options configure Run.
type Options struct {
	// NetNS is the path of the network namespace to capture
	// (/run/netns/<name>, /proc/<pid>/ns/net); "" is the current one, the
	// host network in the agent's DaemonSet.
	NetNS string
	// ReadBuffer is the event socket's receive buffer in bytes (default 32
	// MiB), set with SO_RCVBUFFORCE, falling back to SO_RCVBUF (bounded by
	// net.core.rmem_max) when that is not permitted.
	ReadBuffer int
	// PlainReadBuffer sets ReadBuffer with SO_RCVBUF only (tests of small
	// buffers).
	PlainReadBuffer bool
	// UnreliableEvents leaves NETLINK_BROADCAST_ERROR off the event socket:
	// the kernel then drops the events that do not fit in its buffer, and an
	// overflow means a re-dial and a re-sync (tests of that path).
	UnreliableEvents bool
	// DumpInterval is the period of the dumps that emit snapshots of long
	// flows (default 1 minute).
	DumpInterval time.Duration
	// Metrics receives the counts; nil makes unregistered ones.
	Metrics *Metrics
	// Logger logs the capture's life (overflows, re-syncs, errors).
	Logger logr.Logger
}

// entry is an open flow of the table.
type entry struct {
	// rec holds the tuples, Start and the counters last known.
	rec flow.Record
	// emitted are the counters of the last snapshot emitted.
	emitted counters
	// missing is when a dump did not have the flow (zero if it did).
	missing time.Time
}

// capturer is the state of one Run, owned by its goroutine.
type capturer struct {
	opts       Options
	m          *Metrics
	log        logr.Logger
	emit       func([]flow.Record)
	dumper     *conntrack.Conn
	table      map[key]*entry
	suspects   map[key]struct{}
	tombstones map[key]time.Time
	batch      []flow.Record
	// reliable is set while the event socket has reliable DESTROYs.
	reliable bool
	// resolved is when a DESTROY last came for a suspect: with reliable
	// events, the kernel is still re-delivering the DESTROYs of flows
	// missing from the last dump, and suspects are not yet counted as lost.
	resolved time.Time
	// overflowLogged is when an overflow was last logged at level 0.
	overflowLogged time.Time
	overflows      int

	// Cached children of the metric vectors.
	evNewC, evDestroyC, evLateC, evDecodeC prometheus.Counter
	recC                                   map[string]prometheus.Counter
}

// Run captures the flows of a network namespace until ctx is done, then
// returns nil after emitting the records it has queued (open flows are not
// emitted again). emit receives batches of records
// (up to 1,000, at least every 100 ms while there are any) from Run's own
// goroutine, and may keep them; while it blocks, events queue in the socket.
// Final records have End set; snapshots of open flows have End zero. Run
// returns an error only when it cannot start (namespace, permissions).
func Run(ctx context.Context, opts Options, emit func([]flow.Record)) error {
	if opts.ReadBuffer <= 0 {
		opts.ReadBuffer = DefaultReadBuffer
	}
	if opts.DumpInterval <= 0 {
		opts.DumpInterval = DefaultDumpInterval
	}
	c := &capturer{
		opts:       opts,
		m:          opts.Metrics,
		log:        opts.Logger,
		emit:       emit,
		table:      make(map[key]*entry),
		suspects:   make(map[key]struct{}),
		tombstones: make(map[key]time.Time),
	}
	if c.m == nil {
		c.m = NewMetrics(nil)
	}
	c.evNewC = c.m.Events.WithLabelValues("new")
	c.evDestroyC = c.m.Events.WithLabelValues("destroy")
	c.evLateC = c.m.Events.WithLabelValues("late_destroy")
	c.evDecodeC = c.m.Events.WithLabelValues("decode_error")
	c.recC = map[string]prometheus.Counter{}
	for _, k := range []string{kindFinal, kindSnapshot, kindLost} {
		c.recC[k] = c.m.Records.WithLabelValues(k)
	}
	fd, closeNS, err := netns.Open(opts.NetNS)
	if err != nil {
		return err
	}
	defer closeNS()
	c.dumper, err = conntrack.Dial(&netlink.Config{NetNS: fd})
	if err != nil {
		return fmt.Errorf("dialling the conntrack dump socket: %w", err)
	}
	defer c.dumper.Close()

	l, err := c.listen()
	if err != nil {
		return err
	}
	if err := c.sync(time.Now(), syncInitial); err != nil {
		l.close()
		return err
	}
	for {
		err := c.loop(ctx, l)
		l.close()
		if err == nil {
			c.flush()
			c.log.Info("Stopped conntrack capture", "openFlows", len(c.table))
			return nil
		}
		c.m.Overflows.Inc()
		c.log.Info("Conntrack event socket failed, re-syncing", "error", err.Error(),
			"enobufs", errors.Is(err, unix.ENOBUFS))
		if l, err = c.relisten(ctx); err != nil {
			c.flush()
			return nil // ctx is done
		}
	}
}

// listen opens the event socket.
func (c *capturer) listen() (*listener, error) {
	l, err := listen(c.opts.NetNS, c.opts.ReadBuffer, c.opts.PlainReadBuffer, c.opts.UnreliableEvents)
	if err != nil {
		return nil, err
	}
	c.reliable = l.reliable
	c.log.V(1).Info("Listening to conntrack events", "netns", c.opts.NetNS, "readBuffer", l.rcvbuf, "forced", l.forced, "reliable", l.reliable)
	return l, nil
}

// relisten re-opens the event socket and re-syncs, retrying with a backoff
// until ctx is done (then it returns ctx's error).
func (c *capturer) relisten(ctx context.Context) (*listener, error) {
	backoff := 100 * time.Millisecond
	for {
		l, err := c.listen()
		if err == nil {
			if err = c.sync(time.Now(), syncResync); err == nil {
				return l, nil
			}
			l.close()
		}
		c.log.Error(err, "Re-listening to conntrack events failed, retrying", "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// loop handles events until ctx is done (nil) or the socket fails (its error).
func (c *capturer) loop(ctx context.Context, l *listener) error {
	flushT := time.NewTicker(flushEvery)
	defer flushT.Stop()
	dumpT := time.NewTicker(c.opts.DumpInterval)
	defer dumpT.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs := <-l.events:
			for i := range evs {
				ev := &evs[i]
				switch ev.typ {
				case evError:
					return ev.err
				case evOverflow:
					c.m.Overflows.Inc()
					c.overflows++
					log := c.log.V(1)
					if ev.at.Sub(c.overflowLogged) >= time.Minute {
						log, c.overflowLogged = c.log, ev.at
					}
					log.Info("Conntrack event socket overflowed; its DESTROY events are reliable, reading on",
						"error", ev.err.Error(), "overflows", c.overflows)
					continue
				}
				c.handle(ev)
			}
			l.release(evs)
		case now := <-flushT.C:
			c.expireSuspects(now)
			c.flush()
		case now := <-dumpT.C:
			if err := c.sync(now, syncPeriodic); err != nil {
				c.log.Error(err, "Periodic conntrack dump failed")
			}
		}
	}
}

// handle applies one event to the table.
func (c *capturer) handle(ev *event) {
	switch ev.typ {
	case evNew:
		c.evNewC.Inc()
		if e, ok := c.table[ev.key]; ok {
			e.rec.Reply = ev.rec.Reply
			return
		}
		rec := ev.rec
		if rec.Start.IsZero() {
			rec.Start = ev.at
		}
		c.table[ev.key] = &entry{rec: rec}
		c.m.OpenFlows.Set(float64(len(c.table)))
	case evDestroy:
		c.evDestroyC.Inc()
		rec := ev.rec
		if rec.End.IsZero() {
			rec.End = ev.at
		}
		if e, ok := c.table[ev.key]; ok {
			if rec.Start.IsZero() {
				rec.Start = e.rec.Start
			}
			if !e.missing.IsZero() {
				c.resolved = ev.at
			}
			c.remove(ev.key)
		} else if _, lost := c.tombstones[ev.key]; lost {
			c.evLateC.Inc()
			delete(c.tombstones, ev.key)
			return
		}
		if rec.Start.IsZero() {
			rec.Start = rec.End // unknown: timestamps off and NEW missed
		}
		c.add(rec, kindFinal)
	case evDecodeError:
		c.evDecodeC.Inc()
		c.log.V(1).Info("Skipping a conntrack message", "error", ev.err.Error())
	}
}

// remove deletes a flow from the table.
func (c *capturer) remove(k key) {
	delete(c.table, k)
	delete(c.suspects, k)
	c.m.OpenFlows.Set(float64(len(c.table)))
}

// Reasons of a sync.
const (
	syncInitial = iota
	syncPeriodic
	syncResync
)

// sync dumps the table and reconciles: flows not yet known are added (and
// emitted as snapshots at the initial dump), counters are refreshed
// (snapshots of long flows whose counters changed at periodic dumps), and
// flows missing from the dump become suspects, counted as lost if their
// DESTROY does not come within lostGrace.
func (c *capturer) sync(now time.Time, reason int) error {
	flows, err := c.dumper.Dump(nil)
	if err != nil {
		return fmt.Errorf("dumping the conntrack table: %w", err)
	}
	c.m.Dumps.Inc()
	if reason == syncResync {
		c.m.Resyncs.Inc()
	}
	seen := make(map[key]struct{}, len(flows))
	added := 0
	for i := range flows {
		k, rec, ok := convert(&flows[i])
		if !ok {
			continue
		}
		seen[k] = struct{}{}
		e, known := c.table[k]
		if !known {
			if rec.Start.IsZero() {
				rec.Start = now
			}
			e = &entry{rec: rec}
			c.table[k] = e
			added++
		} else {
			start := e.rec.Start
			e.rec = rec
			if rec.Start.IsZero() {
				e.rec.Start = start
			}
			e.missing = time.Time{}
			delete(c.suspects, k)
		}
		switch reason {
		case syncInitial:
			c.snapshot(e)
		case syncPeriodic:
			if now.Sub(e.rec.Start) >= c.opts.DumpInterval && countersOf(&e.rec) != e.emitted {
				c.snapshot(e)
			}
		}
	}
	missing := 0
	for k, e := range c.table {
		if _, ok := seen[k]; !ok && e.missing.IsZero() {
			e.missing = now
			c.suspects[k] = struct{}{}
			missing++
		}
	}
	for k, at := range c.tombstones {
		if now.Sub(at) > tombstoneTTL {
			delete(c.tombstones, k)
		}
	}
	c.m.OpenFlows.Set(float64(len(c.table)))
	c.log.V(1).Info("Dumped the conntrack table", "reason", reason, "flows", len(flows), "added", added, "missing", missing)
	return nil
}

// snapshot emits an open flow's counters so far.
func (c *capturer) snapshot(e *entry) {
	e.emitted = countersOf(&e.rec)
	rec := e.rec
	rec.End = time.Time{}
	c.add(rec, kindSnapshot)
}

// expireSuspects emits as lost the flows missing from a dump for longer
// than lostGrace without a DESTROY.
//
// With reliable events, the DESTROY of a flow missing from a dump may still
// be on the kernel's dying list, waiting for room in the socket's buffer: as
// long as DESTROYs of suspects keep coming (one in the last lostGrace), the
// kernel is still re-delivering, and suspects wait, up to maxLostWait.
func (c *capturer) expireSuspects(now time.Time) {
	if len(c.suspects) == 0 {
		return
	}
	draining := c.reliable && now.Sub(c.resolved) < lostGrace
	for k := range c.suspects {
		e := c.table[k]
		if wait := now.Sub(e.missing); wait < lostGrace || draining && wait < lostGrace+maxLostWait {
			continue
		}
		rec := e.rec
		rec.End = e.missing
		c.remove(k)
		c.tombstones[k] = now
		c.m.LostFlows.Inc()
		c.add(rec, kindLost)
	}
}

// add queues a record, emitting the batch when full.
func (c *capturer) add(rec flow.Record, kind string) {
	c.recC[kind].Inc()
	c.batch = append(c.batch, rec)
	if len(c.batch) >= maxBatch {
		c.flush()
	}
}

// flush emits the queued records.
func (c *capturer) flush() {
	if len(c.batch) == 0 {
		return
	}
	batch := c.batch
	c.batch = make([]flow.Record, 0, maxBatch)
	c.emit(batch)
}
