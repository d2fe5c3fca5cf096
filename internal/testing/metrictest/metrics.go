// Package metrictest reads Prometheus metrics in tests. Value fails the test
// when the collector yields no metric: a metric that is missing (never
// registered, a vector without children) must not read as 0 and let an
// assertion such as "no overflow" pass.
package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the sum of the counters and gauges c yields. It fails t when
// c yields no metric, a metric that cannot be read, or one that is neither a
// counter nor a gauge.
func Value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		t.Fatalf("No metric collected from %T: a missing metric is not 0", c)
	}
	sum := 0.0
	for _, m := range ms {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatalf("Reading metric %s: %v", m.Desc(), err)
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Gauge != nil:
			sum += d.Gauge.GetValue()
		default:
			t.Fatalf("Metric %s is neither a counter nor a gauge", m.Desc())
		}
	}
	return sum
}
