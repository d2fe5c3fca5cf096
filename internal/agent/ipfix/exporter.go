package ipfix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/planetkube/planetkube/internal/flow"
)

// Options configure an Exporter; zero values take the defaults.
type Options struct {
	// Collector is where to send: udp://host:port or tcp://host:port.
	Collector string
	// ObservationDomain is the messages' observation domain ID.
	ObservationDomain uint32
	// EnterpriseNumber is the PEN of the slice-name element (default
	// DefaultEnterpriseNumber).
	EnterpriseNumber uint32
	// TemplateInterval is how often, over UDP, the templates and the slice
	// names are sent again (a collector that restarted learns them); default
	// 1 minute.
	TemplateInterval time.Duration
	// QueueLength bounds the batches waiting to be sent (default 256); a
	// batch that finds the queue full is dropped and counted, so that a slow
	// or absent collector never holds up the capture.
	QueueLength int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log, if set, is where connection errors go.
	Log logr.Logger
}

// Limits.
const (
	udpMessage   = 1400 // fits an Ethernet MTU with IP and UDP headers
	tcpMessage   = 16 << 10
	maxTracked   = 1 << 20 // open flows whose last counters are kept
	maxNames     = 1 << 14 // slice names announced and kept for re-sending
	maxSliceName = 253
	dialTimeout  = 5 * time.Second
	writeTimeout = 5 * time.Second
)

// ParseCollector checks a collector address: udp:// or tcp://, a host and
// a port, nothing else.
func ParseCollector(s string) (network, addr string, err error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp") || u.Host == "" || u.Port() == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("%q is not a collector address such as udp://collector.example:4739 or tcp://192.0.2.9:4739", s)
	}
	return u.Scheme, u.Host, nil
}

// Exporter sends flow records to one collector. Export queues a batch;
// Start (a controller-runtime Runnable) sends until its context ends.
type Exporter struct {
	o       Options
	network string
	addr    string
	queue   chan []flow.Record
	m       *Metrics

	// Owned by the sending goroutine.
	last map[flowKey]counters
	// names are the slices announced to the collector (options records
	// mapping their numbers to names), sent again with the templates.
	names map[string]bool
}

type flowKey struct {
	start int64
	proto uint8
	orig  flow.Tuple
}

type counters struct{ ob, op, rb, rp uint64 }

// Metrics count what the exporter did.
type Metrics struct {
	Records, Dropped, Messages, Errors prometheus.Counter
}

// NewMetrics makes the exporter's counters, named planetkube_agent_ipfix_*.
func NewMetrics() *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "planetkube_agent_ipfix_" + name, Help: help})
	}
	return &Metrics{
		Records:  c("records_total", "Flow records exported as IPFIX."),
		Dropped:  c("dropped_records_total", "Flow records not exported: the queue was full or the collector unreachable."),
		Messages: c("messages_total", "IPFIX messages sent."),
		Errors:   c("errors_total", "Failures to connect to or write to the IPFIX collector."),
	}
}

// Collectors lists the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Records, m.Dropped, m.Messages, m.Errors}
}

// New checks the options and makes an exporter; m may be nil.
func New(o Options, m *Metrics) (*Exporter, error) {
	network, addr, err := ParseCollector(o.Collector)
	if err != nil {
		return nil, err
	}
	if o.EnterpriseNumber == 0 {
		o.EnterpriseNumber = DefaultEnterpriseNumber
	}
	if o.TemplateInterval <= 0 {
		o.TemplateInterval = time.Minute
	}
	if o.QueueLength <= 0 {
		o.QueueLength = 256
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if m == nil {
		m = NewMetrics()
	}
	return &Exporter{o: o, network: network, addr: addr, queue: make(chan []flow.Record, o.QueueLength), m: m,
		last: map[flowKey]counters{}, names: map[string]bool{}}, nil
}

// Export queues a batch of records (which it does not keep past the call's
// end: it copies them). It never blocks: a full queue drops the batch.
func (e *Exporter) Export(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	select {
	case e.queue <- append([]flow.Record(nil), recs...):
	default:
		e.m.Dropped.Add(float64(len(recs)))
	}
}

// NeedLeaderElection is false: every node's agent exports its own flows.
func (e *Exporter) NeedLeaderElection() bool { return false }

// Start sends queued records until ctx ends, connecting (again) when needed;
// records that come while the collector cannot be reached are dropped and
// counted, not kept.
func (e *Exporter) Start(ctx context.Context) error {
	var s *session
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	tick := time.NewTicker(e.o.TemplateInterval)
	defer tick.Stop()
	backoff := time.Duration(0)
	var retryAt time.Time
	for {
		var batch []flow.Record
		select {
		case <-ctx.Done():
			return nil
		case batch = <-e.queue:
		case <-tick.C:
			if s != nil && e.network == "udp" {
				if err := e.refresh(s); err != nil {
					e.failed(s, err)
					s = nil
				}
			}
			continue
		}
		flows := e.deltas(batch)
		if s == nil && !e.o.Now().Before(retryAt) {
			var err error
			if s, err = e.connect(ctx); err != nil {
				e.m.Errors.Inc()
				backoff = min(max(2*backoff, time.Second), time.Minute)
				retryAt = e.o.Now().Add(backoff)
				e.o.Log.V(1).Info("Cannot reach the IPFIX collector", "collector", e.o.Collector, "error", err.Error(), "retryIn", backoff)
			} else {
				backoff = 0
			}
		}
		if s == nil {
			e.m.Dropped.Add(float64(len(flows)))
			continue
		}
		if err := e.send(s, flows); err != nil {
			e.failed(s, err)
			s = nil
			e.m.Dropped.Add(float64(len(flows)))
		}
	}
}

// failed counts and logs a broken session and closes it.
func (e *Exporter) failed(s *session, err error) {
	e.m.Errors.Inc()
	e.o.Log.Info("Lost the IPFIX collector; reconnecting", "collector", e.o.Collector, "error", err.Error())
	s.close()
}

// connect opens a session and sends the templates.
func (e *Exporter) connect(ctx context.Context) (*session, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, e.network, e.addr)
	if err != nil {
		return nil, err
	}
	size := udpMessage
	if e.network == "tcp" {
		size = tcpMessage
	}
	s := &session{conn: c, enc: &Encoder{ObservationDomain: e.o.ObservationDomain, EnterpriseNumber: e.o.EnterpriseNumber, MaxMessage: size}}
	if err := e.refresh(s); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// refresh sends the templates and every slice name known: at the start of
// a session, and over UDP every template interval, so that a collector that
// restarted (or, like nfcapd, starts a new file) learns them again.
func (e *Exporter) refresh(s *session) error {
	now := e.o.Now()
	if err := s.send(s.enc.Templates(now)); err != nil {
		return err
	}
	names := make([]string, 0, len(e.names))
	for n := range e.names {
		names = append(names, n)
	}
	for _, msg := range s.enc.Messages(now, names, nil) {
		if err := s.send(msg); err != nil {
			return err
		}
		e.m.Messages.Inc()
	}
	return nil
}

// send encodes flows, with the names the collector has not been told yet.
func (e *Exporter) send(s *session, flows []Flow) error {
	if len(flows) == 0 {
		return nil
	}
	var names []string
	for _, f := range flows {
		if f.Slice != "" && !e.names[f.Slice] {
			if len(e.names) >= maxNames {
				e.names = map[string]bool{}
			}
			e.names[f.Slice] = true
			names = append(names, f.Slice)
		}
	}
	for _, msg := range s.enc.Messages(e.o.Now(), names, flows) {
		if err := s.send(msg); err != nil {
			return err
		}
		e.m.Messages.Inc()
	}
	e.m.Records.Add(float64(len(flows)))
	return nil
}

// deltas turns snapshots into what each flow did since its last export:
// an open flow's counters are remembered, an ended flow's forgotten.
func (e *Exporter) deltas(recs []flow.Record) []Flow {
	now := e.o.Now()
	out := make([]Flow, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		k := flowKey{r.Start.UnixMicro(), r.Proto, r.Orig}
		cur := counters{r.OrigBytes, r.OrigPackets, r.ReplyBytes, r.ReplyPackets}
		prev, seen := e.last[k]
		if cur.ob < prev.ob || cur.op < prev.op || cur.rb < prev.rb || cur.rp < prev.rp {
			prev = counters{} // counters went back: a new flow with the same key
		}
		d := counters{cur.ob - prev.ob, cur.op - prev.op, cur.rb - prev.rb, cur.rp - prev.rp}
		if r.End.IsZero() {
			if !seen && len(e.last) >= maxTracked {
				clear(e.last)
			}
			e.last[k] = cur
		} else {
			delete(e.last, k)
		}
		if d == (counters{}) && seen {
			continue // nothing new since the last export
		}
		end := r.End
		if end.IsZero() {
			end = now
		}
		f := Flow{Src: r.Orig.Src, Dst: r.Orig.Dst, Proto: r.Proto, Octets: d.ob, Packets: d.op, ReverseOctets: d.rb, ReversePackets: d.rp,
			Start: r.Start, End: end, Slice: r.Slice}
		if len(f.Slice) > maxSliceName {
			f.Slice = f.Slice[:maxSliceName]
		}
		if r.Reply.Dst != r.Orig.Src {
			f.PostNATSrc = r.Reply.Dst
		}
		out = append(out, f)
	}
	return out
}

// session is one connection to the collector with its encoder (whose
// sequence numbers are the session's).
type session struct {
	conn net.Conn
	enc  *Encoder
	once sync.Once
}

func (s *session) send(msg []byte) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := s.conn.Write(msg)
	if err != nil && errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("collector connection closed: %w", err)
	}
	return err
}

func (s *session) close() { s.once.Do(func() { _ = s.conn.Close() }) }
