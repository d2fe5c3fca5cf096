// Package slicemetrics exposes the manager's metrics about slices, read at
// scrape time from the manager's cache:
//
//	planetkube_slice_expiry_seconds{namespace,slice}  seconds until the slice's expiry in force
//
// The value is negative once the slice has expired (how long ago), so that an
// alert on "less than a week left" is written `0 < x < 604800` and the time
// since expiry stays readable. Every replica of the manager serves it (each
// has the cache): aggregate with max by (namespace, slice).
package slicemetrics

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// ExpiryName is the name of the expiry metric.
const ExpiryName = "planetkube_slice_expiry_seconds"

var expiryDesc = prometheus.NewDesc(ExpiryName,
	"Seconds until the slice's expiry in force (status.expiresAt); negative once it has expired. "+
		"A slice whose status has no expiry yet, or that is being deleted, has no series.",
	[]string{"namespace", "slice"}, nil)

// defaultTimeout bounds the list of one scrape.
const defaultTimeout = 5 * time.Second

// Collector is a prometheus.Collector that lists the Slices at each scrape.
// A list that fails yields no series (and is logged), never a failed
// scrape: the manager's other metrics are served still.
type Collector struct {
	// Reader lists the Slices: the manager's cache.
	Reader client.Reader
	// Now returns the current time (default time.Now); tests may set it.
	Now func() time.Time
	// Timeout bounds a scrape's list (default 5 s).
	Timeout time.Duration
	// Log is where a failed list is told (default: ctrl.Log's
	// "slice-metrics").
	Log logr.Logger
}

var _ prometheus.Collector = &Collector{}

// Register registers c on reg in place of a Collector registered there
// before (a restarted manager, in tests, sets up a new one on the same
// registry: controller-runtime's metrics.Registry).
func Register(reg prometheus.Registerer, c *Collector) error {
	reg.Unregister(c)
	return reg.Register(c)
}

// Describe sends the metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect lists the Slices and sends one series per slice whose status has
// an expiry.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	list := &planetv1.SliceList{}
	if err := c.Reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil { // read-only
		log := c.Log
		if log.GetSink() == nil {
			log = ctrl.Log.WithName("slice-metrics")
		}
		log.Error(err, "Listing slices for the metrics", "metric", ExpiryName)
		return
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	at := now()
	for i := range list.Items {
		s := &list.Items[i]
		if s.Status.ExpiresAt == nil || !s.DeletionTimestamp.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
			s.Status.ExpiresAt.Sub(at).Seconds(), s.Namespace, s.Name)
	}
}
