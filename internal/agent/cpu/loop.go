package cpu

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
)

// DefaultInterval is how often weights are re-applied (Koordinator does the
// same every 10 s: the kubelet rewrites QoS-level cgroups about every
// minute, systemd on daemon-reload).
const DefaultInterval = 10 * time.Second

// Metrics count the loop's work.
type Metrics struct {
	// Fixed counts weights found changed by someone else and written back.
	Fixed prometheus.Counter
	// Errors counts pods whose weight could not be read or written.
	Errors prometheus.Counter
}

// NewMetrics makes the metrics (the caller registers them).
func NewMetrics() Metrics {
	return Metrics{
		Fixed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "planetkube_agent_cpu_weight_fixes_total",
			Help: "Sliver cgroup CPU weights found changed (by the kubelet, systemd or a user) and written back.",
		}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "planetkube_agent_cpu_weight_errors_total",
			Help: "Sliver cgroups whose CPU weight could not be read or written.",
		}),
	}
}

// Loop keeps the weights of the node's sliver pods.
type Loop struct {
	Enforcer *Enforcer
	// Pods returns the node's sliver pods.
	Pods func() []*corev1.Pod
	// Interval between passes (default DefaultInterval).
	Interval time.Duration
	Metrics  Metrics
}

// NeedLeaderElection: every node's agent keeps its own node.
func (l *Loop) NeedLeaderElection() bool { return false }

// Start runs a pass at once and then every Interval until ctx ends.
func (l *Loop) Start(ctx context.Context) error {
	every := l.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	log := ctrl.LoggerFrom(ctx).WithName("cpushare")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		fixed, err := l.Once()
		if err != nil {
			log.Error(err, "Keeping sliver CPU weights")
		}
		if fixed > 0 {
			log.Info("Wrote back sliver CPU weights changed by someone else", "pods", fixed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once applies every running sliver's target and returns how many it had to
// fix. A pod whose cgroup is not there yet (just started, or gone) is
// skipped.
func (l *Loop) Once() (int, error) {
	var errs []error
	fixed := 0
	for _, pod := range l.Pods() {
		if pod.Status.Phase != corev1.PodRunning || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		changed, err := l.Enforcer.Apply(TargetOf(pod))
		switch {
		case errors.Is(err, ErrNoCgroup):
		case err != nil:
			errs = append(errs, err)
			if l.Metrics.Errors != nil {
				l.Metrics.Errors.Inc()
			}
		case changed:
			fixed++
			if l.Metrics.Fixed != nil {
				l.Metrics.Fixed.Inc()
			}
		}
	}
	return fixed, errors.Join(errs...)
}
