// Package slicemetrics exposes the manager's metrics about slices, read at
// scrape time from the manager's cache:
//
//	planetkube_slice_expiry_seconds{namespace,slice}  seconds until the slice's expiry in force
//	planetkube_slice_slivers{namespace,slice,state}  its slivers: desired, ready
//	planetkube_slice_ready{namespace,slice,reason}  1 when its Ready condition is True, else 0, with the reason
//	planetkube_slice_nodes_not_running{namespace,slice,reason}  its selected nodes without a ready sliver, by reason (status.placement)
//
// and, for federation, about Tickets and Authorities:
//
//	planetkube_tickets{reason}  the Tickets here, by their Ready reason (Redeemed, Superseded, NotTrusted, Expired ...)
//	planetkube_authority_feed_synced{authority,reason}  1 when a peer's feed was read and applied at the last poll, else 0
//	planetkube_authority_push_ready{authority,reason}  1 when a peer's cluster is reachable with its push kubeconfig, else 0
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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Descriptions of the slices' status metrics.
var (
	sliversDesc = prometheus.NewDesc("planetkube_slice_slivers",
		"A slice's slivers at this install, by state: desired (the nodes it runs on) and ready.",
		[]string{"namespace", "slice", "state"}, nil)
	readyDesc = prometheus.NewDesc("planetkube_slice_ready",
		"1 when a slice's Ready condition is True, else 0; reason is the condition's (SliversReady, Suspended, Expired, SiteSliceLimit ...).",
		[]string{"namespace", "slice", "reason"}, nil)
	notRunningDesc = prometheus.NewDesc("planetkube_slice_nodes_not_running",
		"The nodes a slice's selection names that run no ready sliver of it, by reason (status.placement: NotTrusted, NodeFull, MaxNodes ...).",
		[]string{"namespace", "slice", "reason"}, nil)
)

// Descriptions of the federation's metrics.
var (
	ticketsDesc = prometheus.NewDesc("planetkube_tickets",
		"The Tickets applied here, by their Ready condition's reason (Redeemed, Superseded, Withdrawn, or why refused: NotTrusted, Expired, Replayed ...; Pending before the controller looked).",
		[]string{"reason"}, nil)
	feedDesc = prometheus.NewDesc("planetkube_authority_feed_synced",
		"1 when a peer authority's feed was read and applied at the last poll, else 0 (reason: FeedUnreachable, NotTrusted ...). Peers that are not polled have no series.",
		[]string{"authority", "reason"}, nil)
	pushDesc = prometheus.NewDesc("planetkube_authority_push_ready",
		"1 when a peer authority's cluster is reachable with its push kubeconfig, else 0. Peers not pushed to have no series.",
		[]string{"authority", "reason"}, nil)
)

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

// Describe sends the metrics' descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expiryDesc, sliversDesc, readyDesc, notRunningDesc, ticketsDesc, feedDesc, pushDesc} {
		ch <- d
	}
}

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
		c.logger().Error(err, "Listing slices for the metrics", "metric", ExpiryName)
		c.collectFederation(ctx, ch)
		return
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	at := now()
	for i := range list.Items {
		s := &list.Items[i]
		if !s.DeletionTimestamp.IsZero() {
			continue
		}
		collectStatus(ch, s)
		if s.Status.ExpiresAt == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
			s.Status.ExpiresAt.Sub(at).Seconds(), s.Namespace, s.Name)
	}
	c.collectFederation(ctx, ch)
}

// collectFederation sends the Tickets' and Authorities' metrics.
func (c *Collector) collectFederation(ctx context.Context, ch chan<- prometheus.Metric) {
	tickets := &planetv1.TicketList{}
	if err := c.Reader.List(ctx, tickets, client.UnsafeDisableDeepCopy); err != nil { // read-only
		c.logger().Error(err, "Listing tickets for the metrics")
	} else {
		byReason := map[string]int{}
		for i := range tickets.Items {
			reason := "Pending"
			if ready := meta.FindStatusCondition(tickets.Items[i].Status.Conditions, planetv1.ConditionReady); ready != nil {
				reason = ready.Reason
			}
			byReason[reason]++
		}
		for reason, n := range byReason {
			ch <- prometheus.MustNewConstMetric(ticketsDesc, prometheus.GaugeValue, float64(n), reason)
		}
	}
	authorities := &planetv1.AuthorityList{}
	if err := c.Reader.List(ctx, authorities, client.UnsafeDisableDeepCopy); err != nil { // read-only
		c.logger().Error(err, "Listing authorities for the metrics")
		return
	}
	for i := range authorities.Items {
		a := &authorities.Items[i]
		for _, m := range []struct {
			desc *prometheus.Desc
			typ  string
		}{{feedDesc, planetv1.ConditionFeedSynced}, {pushDesc, planetv1.ConditionPushReady}} {
			cond := meta.FindStatusCondition(a.Status.Conditions, m.typ)
			if cond == nil {
				continue
			}
			v := 0.0
			if cond.Status == metav1.ConditionTrue {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, v, a.Name, cond.Reason)
		}
	}
}

// logger is where a failed list is told.
func (c *Collector) logger() logr.Logger {
	if c.Log.GetSink() == nil {
		return ctrl.Log.WithName("slice-metrics")
	}
	return c.Log
}

// collectStatus sends a slice's status metrics.
func collectStatus(ch chan<- prometheus.Metric, s *planetv1.Slice) {
	st := &s.Status
	ch <- prometheus.MustNewConstMetric(sliversDesc, prometheus.GaugeValue, float64(st.DesiredSlivers), s.Namespace, s.Name, "desired")
	ch <- prometheus.MustNewConstMetric(sliversDesc, prometheus.GaugeValue, float64(st.ReadySlivers), s.Namespace, s.Name, "ready")
	if ready := meta.FindStatusCondition(st.Conditions, planetv1.ConditionReady); ready != nil {
		v := 0.0
		if ready.Status == metav1.ConditionTrue {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, v, s.Namespace, s.Name, ready.Reason)
	}
	if st.Placement != nil {
		for _, g := range st.Placement.Groups {
			ch <- prometheus.MustNewConstMetric(notRunningDesc, prometheus.GaugeValue, float64(g.Count), s.Namespace, s.Name, g.Reason)
		}
	}
}
