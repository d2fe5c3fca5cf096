package bandwidth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
)

// DefaultInterval is how often the loop reads the counters and sets the
// ceils. bwmon ran every 10 to 15 minutes; the budget's formula does not
// depend on it, but a slice is held sooner after it passes the threshold.
const DefaultInterval = time.Minute

// ReasonBandwidthCapped is the reason of the event on a Slice whose rate on a
// node was lowered because it passed its daily budget's threshold.
const ReasonBandwidthCapped = "BandwidthCapped"

// Sliver is what the loop needs of a sliver on the node.
type Sliver struct {
	// Slice is the slice's full name.
	Slice string
	// Share is the slice's share (its cpuShare).
	Share int
	// Addrs are the sliver's addresses.
	Addrs []netip.Addr
	// Ref is the Slice the cap event is about (nil: no event).
	Ref *planetv1.Slice
}

// Metrics are the loop's per-slice gauges (the caller registers them).
type Metrics struct {
	// Bytes is each slice's bytes sent in the current period, by class
	// (budget or exempt).
	Bytes *prometheus.GaugeVec
	// Ceil is each slice's ceil in bit/s, by class.
	Ceil *prometheus.GaugeVec
	// Capped is 1 for a slice whose ceil was lowered by its budget.
	Capped *prometheus.GaugeVec
}

// NewMetrics makes the metrics.
func NewMetrics() Metrics {
	return Metrics{
		Bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planetkube_agent_slice_bytes_today",
			Help: "Bytes a slice sent from this node in its current budget period (a day), by class: budget, or exempt destinations."}, []string{"slice", "class"}),
		Ceil: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planetkube_agent_slice_ceil_bits_per_second",
			Help: "A slice's bandwidth ceil on this node's uplink, by class."}, []string{"slice", "class"}),
		Capped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planetkube_agent_slice_bandwidth_capped",
			Help: "1 when a slice passed its daily budget's threshold on this node and its ceil was lowered."}, []string{"slice"}),
	}
}

// Collectors lists the metrics, for registering.
func (m Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Bytes, m.Ceil, m.Capped}
}

// Loop keeps the uplink's classes and ceils following the node's slivers and
// their budgets: each pass reads the classes' counters, folds them into the
// ledger (package budget), applies the ceils it decides and saves the ledger, so
// that the day's usage survives a restart.
type Loop struct {
	Shaper *Shaper
	Ledger *budget.Ledger
	// LedgerPath is the ledger's file ("" keeps it in memory only).
	LedgerPath string
	// Policy is the budget; its MaxRate is the node cap.
	Policy budget.Config
	// Slivers lists the node's running slivers.
	Slivers func() []Sliver
	// Node names the node in events.
	Node     string
	Recorder events.EventRecorder
	Metrics  Metrics
	// Interval between passes (default DefaultInterval).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu   sync.Mutex
	last map[string]budget.Decision
}

// NeedLeaderElection: every node's agent shapes its own uplink.
func (l *Loop) NeedLeaderElection() bool { return false }

// Start detaches the ledger's slices (the shaper's classes are new and count
// from zero), runs a pass at once and then every interval until ctx ends.
func (l *Loop) Start(ctx context.Context) error {
	every := l.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	log := ctrl.LoggerFrom(ctx).WithName("bwshape")
	l.detachAll()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := l.Once(ctx); err != nil {
			log.Error(err, "Shaping slice bandwidth")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// detachAll marks every slice of the ledger as having new classes.
func (l *Loop) detachAll() {
	for _, s := range l.Ledger.Slices() {
		l.Ledger.Detach(s)
	}
}

// Decision returns the last decision for a slice.
func (l *Loop) Decision(slice string) (budget.Decision, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.last[slice]
	return d, ok
}

// Today returns what a slice sent from the node in its current budget
// period (its budgeted class; exempt destinations apart) and the period's
// budget, read from the ledger without changing it. A slice the ledger does
// not have, or whose period ended at now (the next pass starts a new one),
// has sent 0.
func (l *Loop) Today(slice string, now time.Time) (sent, budget uint64) {
	u, ok := l.Ledger.Usage(slice)
	if !ok || u.PeriodStart.IsZero() || !now.Before(u.PeriodStart.Add(l.Policy.Period)) {
		return 0, l.Policy.Budget
	}
	return u.Bytes, l.Policy.Budget
}

// Once is one pass.
func (l *Loop) Once(ctx context.Context) error {
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	if !l.Shaper.Healthy() {
		// The qdisc was replaced or the link recreated: build it again.
		ctrl.LoggerFrom(ctx).WithName("bwshape").Info("Rebuilding the uplink's shaping, which someone removed", "link", l.Shaper.cfg.Link)
		if err := l.Shaper.Reset(); err != nil {
			return err
		}
		l.detachAll()
	}
	counters, err := l.Shaper.Counters()
	if err != nil {
		return err
	}
	bySlice := map[string]*Sliver{}
	var order []string
	for _, s := range l.Slivers() {
		if cur, ok := bySlice[s.Slice]; ok {
			cur.Addrs = append(cur.Addrs, s.Addrs...)
			cur.Share = max(cur.Share, s.Share)
			continue
		}
		s.Addrs = slices.Clone(s.Addrs)
		bySlice[s.Slice] = &s
		order = append(order, s.Slice)
	}
	decisions := map[string]budget.Decision{}
	var classes []Class
	// Slices that are gone are observed once more, so their last bytes
	// count, before Apply removes their classes.
	for slice, c := range counters {
		if _, ok := bySlice[slice]; !ok {
			l.observe(slice, c, now)
		}
	}
	for _, slice := range order {
		s := bySlice[slice]
		d := l.observe(slice, counters[slice], now)
		decisions[slice] = d
		classes = append(classes, Class{Slice: slice, Share: s.Share, Addrs: s.Addrs, Ceil: d.Ceil, ExemptCeil: d.ExemptCeil})
		if d.Notify {
			l.notify(s, d)
		}
	}
	removed, applyErr := l.Shaper.Apply(classes)
	for _, slice := range removed {
		l.Ledger.Detach(slice)
		l.forgetMetrics(slice)
	}
	l.mu.Lock()
	l.last = decisions
	l.mu.Unlock()
	for _, slice := range l.Ledger.Forget(now, l.Policy.Period) {
		l.forgetMetrics(slice)
	}
	var saveErr error
	if l.LedgerPath != "" {
		if err := l.Ledger.Save(l.LedgerPath); err != nil {
			saveErr = fmt.Errorf("saving the bandwidth ledger: %w", err)
		}
	}
	return errors.Join(applyErr, saveErr)
}

// observe folds a slice's counters into the ledger and sets its metrics.
func (l *Loop) observe(slice string, c Counters, now time.Time) budget.Decision {
	d := l.Ledger.Observe(slice, l.Policy, c.Bytes, c.ExemptBytes, now)
	if l.Metrics.Bytes != nil {
		u, _ := l.Ledger.Usage(slice)
		l.Metrics.Bytes.WithLabelValues(slice, "budget").Set(float64(u.Bytes))
		l.Metrics.Bytes.WithLabelValues(slice, "exempt").Set(float64(u.ExemptBytes))
		l.Metrics.Ceil.WithLabelValues(slice, "budget").Set(float64(d.Ceil))
		l.Metrics.Ceil.WithLabelValues(slice, "exempt").Set(float64(d.ExemptCeil))
		capped := 0.0
		if d.Capped || d.ExemptCapped {
			capped = 1
		}
		l.Metrics.Capped.WithLabelValues(slice).Set(capped)
	}
	return d
}

func (l *Loop) forgetMetrics(slice string) {
	if l.Metrics.Bytes == nil {
		return
	}
	for _, class := range []string{"budget", "exempt"} {
		l.Metrics.Bytes.DeleteLabelValues(slice, class)
		l.Metrics.Ceil.DeleteLabelValues(slice, class)
	}
	l.Metrics.Capped.DeleteLabelValues(slice)
}

// notify tells the slice, once a period, that it is held (bwmon mailed it).
func (l *Loop) notify(s *Sliver, d budget.Decision) {
	if l.Recorder == nil || s.Ref == nil {
		return
	}
	u, _ := l.Ledger.Usage(s.Slice)
	end := u.PeriodStart.Add(l.Policy.Period).UTC().Format(time.RFC3339)
	if d.Capped {
		l.Recorder.Eventf(s.Ref, nil, corev1.EventTypeWarning, ReasonBandwidthCapped, "Cap",
			"slice %s sent %d MiB from node %s in this period, past %s%% of its %d MiB budget; its rate there is held to %d kbit/s until the period ends at %s",
			s.Slice, u.Bytes>>20, l.Node, percent(l.Policy.Threshold), l.Policy.Budget>>20, d.Ceil/1000, end)
	}
	if d.ExemptCapped {
		l.Recorder.Eventf(s.Ref, nil, corev1.EventTypeWarning, ReasonBandwidthCapped, "Cap",
			"slice %s sent %d MiB to exempt destinations from node %s in this period, past %s%% of their %d MiB budget; that rate is held to %d kbit/s until the period ends at %s",
			s.Slice, u.ExemptBytes>>20, l.Node, percent(l.Policy.Threshold), l.Policy.ExemptBudget>>20, d.ExemptCeil/1000, end)
	}
}

// percent writes a fraction as a percentage with up to three significant
// digits: 0.8 is "80", 0.0005 is "0.05" (never a misleading "0").
func percent(f float64) string {
	return strconv.FormatFloat(100*f, 'g', 3, 64)
}
