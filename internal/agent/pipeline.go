package agent

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/planetkube/planetkube/internal/agent/attr"
	"github.com/planetkube/planetkube/internal/agent/capture"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/store"
)

// storeTimeout bounds one batch write.
const storeTimeout = 30 * time.Second

// pipeline attributes captured records and stores them.
type pipeline struct {
	store   *store.Store
	history *attr.History
	metrics *agentMetrics
	log     logr.Logger
	// export, if set, is handed every committed batch (the IPFIX
	// exporter's queue: it never blocks).
	export func([]flow.Record)
	// recorded, if set, is handed every committed batch too, to count
	// (the usage report's flows per slice; it never blocks).
	recorded func([]flow.Record)
}

// emit is the capture's sink: it attributes a batch and commits it.
func (p *pipeline) emit(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	attributed := Attribute(recs, p.history.At)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := p.store.Add(ctx, recs); err != nil {
		p.metrics.storeErrors.Inc()
		p.metrics.droppedFlows.Add(float64(len(recs)))
		p.log.Error(err, "Storing flows", "flows", len(recs))
		return
	}
	p.metrics.stored.WithLabelValues("slice").Add(float64(attributed))
	p.metrics.stored.WithLabelValues("node").Add(float64(len(recs) - attributed))
	if p.recorded != nil {
		p.recorded(recs)
	}
	if p.export != nil {
		p.export(recs)
	}
}

// captureRunnable runs the conntrack capture once the Pod informer has
// delivered its first list, so that flows still open at start are attributed.
type captureRunnable struct {
	o          Options
	podsSynced func() bool
	pipe       *pipeline
	metrics    *capture.Metrics
	started    atomic.Bool
}

func (c *captureRunnable) Start(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), c.podsSynced) {
		return nil // stopping before the pods were listed
	}
	c.started.Store(true)
	err := capture.Run(ctx, capture.Options{
		NetNS:        c.o.NetNS,
		ReadBuffer:   c.o.ReadBuffer,
		DumpInterval: c.o.DumpInterval,
		Logger:       c.pipe.log.WithName("capture"),
		Metrics:      c.metrics,
	}, c.pipe.emit)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// NeedLeaderElection is false: every agent captures its own node.
func (c *captureRunnable) NeedLeaderElection() bool { return false }

// ready is the readiness check: the capture is running.
func (c *captureRunnable) ready(_ *http.Request) error {
	if !c.started.Load() {
		return errors.New("conntrack capture not started yet")
	}
	return nil
}

// pruner applies the store's retention, and forgets IP history older than
// it, every interval.
type pruner struct {
	store     *store.Store
	history   *attr.History
	every     time.Duration
	retention time.Duration
	metrics   *agentMetrics
	log       logr.Logger
}

func (p *pruner) Start(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			n, err := p.store.Prune(ctx, now)
			if err != nil {
				p.log.Error(err, "Applying the flow store's retention")
			}
			p.metrics.pruned.Add(float64(n))
			// Keep an extra retention of history: a flow that ended just
			// inside the retention may have started long before.
			p.history.Prune(now.Add(-2 * p.retention))
		}
	}
}

// NeedLeaderElection is false: every agent prunes its own store.
func (p *pruner) NeedLeaderElection() bool { return false }

// agentMetrics are the agent's own metrics (the capture has its own).
type agentMetrics struct {
	stored       *prometheus.CounterVec
	storeErrors  prometheus.Counter
	droppedFlows prometheus.Counter
	pruned       prometheus.Counter
}

var (
	metricsOnce   sync.Once
	theMetrics    *agentMetrics
	theCapMetrics *capture.Metrics
	currentStore  atomic.Pointer[store.Store]
)

// processMetrics returns the agent's metrics, registered once per process
// in controller-runtime's registry (served on --metrics-bind-address), and
// points the store gauges at flows.
func processMetrics(flows *store.Store) (*agentMetrics, *capture.Metrics) {
	currentStore.Store(flows)
	metricsOnce.Do(func() {
		m := &agentMetrics{
			stored: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "planetkube_agent_flows_stored_total",
				Help: "Flows committed to the store, by attribution: slice (a sliver or other pod) or node (no pod).",
			}, []string{"attribution"}),
			storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "planetkube_agent_store_errors_total",
				Help: "Batches the store failed to commit.",
			}),
			droppedFlows: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "planetkube_agent_flows_dropped_total",
				Help: "Flows lost because their batch failed to commit.",
			}),
			pruned: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "planetkube_agent_flows_pruned_total",
				Help: "Flows deleted by the store's retention.",
			}),
		}
		stat := func(f func(store.Stats) float64) func() float64 {
			return func() float64 {
				if s := currentStore.Load(); s != nil {
					return f(s.Stats())
				}
				return 0
			}
		}
		metrics.Registry.MustRegister(m.stored, m.storeErrors, m.droppedFlows, m.pruned,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "planetkube_agent_store_records",
				Help: "Flow records in the store.",
			}, stat(func(s store.Stats) float64 { return float64(s.Records) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "planetkube_agent_store_bytes",
				Help: "Bytes the flow store uses on disk.",
			}, stat(func(s store.Stats) float64 { return float64(s.Bytes) })),
		)
		theMetrics = m
		theCapMetrics = capture.NewMetrics(metrics.Registry)
	})
	return theMetrics, theCapMetrics
}
