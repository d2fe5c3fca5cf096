package capture

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the capture sees and does. Its fields are exported for
// tests and for the agent's own reports; they are updated by Run only.
type Metrics struct {
	// Events counts the conntrack events received, by type ("new",
	// "destroy"), plus "late_destroy" for a DESTROY that came after its flow
	// was already counted as lost (it is not emitted again) and
	// "decode_error" for messages that could not be decoded.
	Events *prometheus.CounterVec
	// Overflows counts the event socket errors (ENOBUFS: the kernel dropped
	// events) after which the socket was re-dialled and the table re-synced.
	Overflows prometheus.Counter
	// LostFlows counts the flows whose DESTROY was never seen: they vanished
	// from a dump, and are emitted once with End set to the time of that dump
	// and their last known counters (so not exact).
	LostFlows prometheus.Counter
	// Resyncs counts the dumps made to re-sync after an overflow.
	Resyncs prometheus.Counter
	// Dumps counts every dump of the conntrack table (initial, periodic and
	// re-sync).
	Dumps prometheus.Counter
	// OpenFlows is the number of flows in the capture's table.
	OpenFlows prometheus.Gauge
	// Records counts the records emitted, by kind: "final" (from a DESTROY
	// event), "snapshot" (an open flow's counters so far) and "lost".
	Records *prometheus.CounterVec
}

// NewMetrics returns the capture's metrics, registered with reg unless reg
// is nil. It panics if they are already registered there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "planetkube", "agent_conntrack"
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Conntrack events received by the flow capture, by type.",
		}, []string{"type"}),
		Overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "overflows_total",
			Help: "Conntrack event socket overflows (ENOBUFS) and other listen errors. With reliable events (the default) the kernel re-delivers DESTROY events, so an overflow loses nothing by itself: planetkube_agent_conntrack_lost_flows_total counts loss.",
		}),
		LostFlows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "lost_flows_total",
			Help: "Flows that ended without their DESTROY event being seen; emitted with inexact end and counters.",
		}),
		Resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "resyncs_total",
			Help: "Conntrack table dumps made to re-sync after an overflow.",
		}),
		Dumps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dumps_total",
			Help: "Conntrack table dumps (initial, periodic and re-sync).",
		}),
		OpenFlows: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "open_flows",
			Help: "Flows open in the flow capture's table.",
		}),
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "records_emitted_total",
			Help: "Flow records emitted by the flow capture, by kind (final, snapshot, lost).",
		}, []string{"kind"}),
	}
	for _, t := range []string{"new", "destroy", "late_destroy", "decode_error"} {
		m.Events.WithLabelValues(t)
	}
	for _, k := range []string{kindFinal, kindSnapshot, kindLost} {
		m.Records.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Overflows, m.LostFlows, m.Resyncs, m.Dumps, m.OpenFlows, m.Records)
	}
	return m
}

// Kinds of emitted records, the label of Metrics.Records.
const (
	kindFinal    = "final"
	kindSnapshot = "snapshot"
	kindLost     = "lost"
)
