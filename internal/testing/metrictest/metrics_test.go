package metrictest

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }

func TestValueFailsOnMissingMetric(t *testing.T) {
	for name, c := range map[string]prometheus.Collector{
		"a vector without children": prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"kind"}),
		"a histogram":               prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "x"}),
	} {
		rec := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Value(rec, c)
		}()
		<-done
		if !rec.failed {
			t.Errorf("Value of %s returned instead of failing the test", name)
		}
	}
}

func TestValueSums(t *testing.T) {
	if v := Value(t, prometheus.NewCounter(prometheus.CounterOpts{Name: "y_total", Help: "y"})); v != 0 {
		t.Errorf("Value of a new counter = %v, want 0", v)
	}
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "z", Help: "z"}, []string{"kind"})
	vec.WithLabelValues("a").Set(2)
	vec.WithLabelValues("b").Set(3)
	if v := Value(t, vec); v != 5 {
		t.Errorf("Value of two gauges 2 and 3 = %v, want 5", v)
	}
}
