package manager

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/usage"
)

// Bounds of a usage round.
const (
	// minUsageInterval bounds how often the agents are asked (and the
	// statuses written).
	minUsageInterval = 10 * time.Second
	// usageFetchTimeout bounds one agent's answer; usageFetchers how many
	// agents are asked at once.
	usageFetchTimeout = 10 * time.Second
	usageFetchers     = 32
)

// setupUsage adds the usage gatherer (leader only) and its metrics.
func setupUsage(mgr ctrl.Manager, o Options) error {
	if o.UsageInterval == 0 {
		return nil
	}
	if o.UsageInterval < minUsageInterval {
		return fmt.Errorf("--usage-interval %s: at least %s (or 0 to disable)", o.UsageInterval, minUsageInterval)
	}
	sel, err := labels.Parse(o.AgentSelector)
	if err != nil {
		return fmt.Errorf("--agent-selector: %w", err)
	}
	g := &UsageGatherer{
		Client:   mgr.GetClient(),
		Targets:  fanout.PodTargets(mgr.GetAPIReader(), o.AgentNamespace, sel, o.AgentPort),
		Interval: o.UsageInterval,
		Local:    o.Authority,
	}
	if err := registerCollector(metrics.Registry, g); err != nil {
		return err
	}
	return mgr.Add(g)
}

// registerCollector registers c on reg, in place of an equal one a
// previous manager of this process registered (tests start several).
func registerCollector(reg prometheus.Registerer, c prometheus.Collector) error {
	reg.Unregister(c)
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("registering the usage metrics: %w", err)
	}
	return nil
}

// +kubebuilder:rbac:groups=planetkube.io,resources=slices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=sites/status,verbs=get;update;patch

// UsageGatherer asks every node agent for its usage report each Interval,
// sums the reports per slice and per site (usage.Accumulator), and writes
// each Slice's status.usage and each Site's status.contribution where they
// changed: at most one status write per slice and per site per Interval.
// It runs on the leader only; it also serves the figures as metrics.
type UsageGatherer struct {
	// Client reads Slices, Sites and Nodes from the cache and writes
	// their status.
	Client client.Client
	// Targets lists the agents.
	Targets fanout.Targets
	// Interval is the time between rounds.
	Interval time.Duration
	// Local is this install's authority.
	Local string
	// HTTP asks the agents (nil: a client with usageFetchTimeout).
	HTTP *http.Client
	// Now returns the current time (nil: time.Now).
	Now func() time.Time

	acc usage.Accumulator
	// mu guards the figures the metrics read.
	mu     sync.Mutex
	slices map[usage.Key]usage.Totals
	sites  map[string]usage.SiteTotals
}

// NeedLeaderElection: one replica writes.
func (g *UsageGatherer) NeedLeaderElection() bool { return true }

// Start runs a round each Interval until ctx ends; a round that fails is
// logged and the next one tried.
func (g *UsageGatherer) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("usage")
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	for {
		if writes, err := g.Round(ctx); err != nil {
			log.Error(err, "Gathering the slices' usage", "writes", writes)
		} else {
			log.V(1).Info("Gathered the slices' usage", "writes", writes)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round asks every agent, folds their reports and writes what changed. It
// returns how many statuses it wrote.
func (g *UsageGatherer) Round(ctx context.Context) (int, error) {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	targets, err := g.Targets(ctx)
	if err != nil {
		return 0, err
	}
	reports := g.fetch(ctx, targets)
	slices := &planetv1.SliceList{}
	if err := g.Client.List(ctx, slices); err != nil {
		return 0, err
	}
	sites := &planetv1.SiteList{}
	if err := g.Client.List(ctx, sites); err != nil {
		return 0, err
	}
	nodeSite, err := g.nodeSites(ctx)
	if err != nil {
		return 0, err
	}
	byName := map[string]*planetv1.Slice{}
	for i := range slices.Items {
		byName[slices.Items[i].Namespace+"/"+slices.Items[i].Name] = &slices.Items[i]
	}
	siteByName := map[string]*planetv1.Site{}
	for i := range sites.Items {
		siteByName[sites.Items[i].Name] = &sites.Items[i]
	}
	g.acc.Local = g.Local
	sliceTotals, siteTotals := g.acc.Fold(usage.Round{
		Reports: reports,
		SiteOf:  func(n string) string { return nodeSite[n] },
		SliceExists: func(k usage.Key) bool {
			_, ok := byName[k.Namespace+"/"+k.Name]
			return ok
		},
		NodeExists: func(n string) bool { _, ok := nodeSite[n]; return ok },
		KnownSlice: func(name string) (usage.Totals, time.Time, bool) {
			s := byName[name]
			if s == nil || s.Status.Usage == nil || s.Status.Usage.UpdatedAt == nil {
				return usage.Totals{}, time.Time{}, false
			}
			u := s.Status.Usage
			return usage.Totals{CPUSeconds: float64(u.CPUSeconds), Flows: u.Flows}, u.UpdatedAt.Time, true
		},
		KnownSite: func(name string) (usage.SiteTotals, time.Time, bool) {
			s := siteByName[name]
			if s == nil || s.Status.Contribution == nil || s.Status.Contribution.UpdatedAt == nil {
				return usage.SiteTotals{}, time.Time{}, false
			}
			c := s.Status.Contribution
			return usage.SiteTotals{CPUSeconds: float64(c.CPUSeconds), CPUSecondsToOthers: float64(c.CPUSecondsToOthers)}, c.UpdatedAt.Time, true
		},
	})
	at := metav1.NewTime(now().UTC().Truncate(time.Second))
	var writes int
	var errs []error
	for key := range sliceTotals {
		s := byName[key.Namespace+"/"+key.Name]
		if s == nil {
			continue
		}
		t := sliceTotals[key]
		want := &planetv1.SliceUsage{CPUSeconds: seconds(t.CPUSeconds), Flows: t.Flows, BytesToday: t.BytesToday,
			BudgetBytes: t.BudgetBytes, Nodes: int32(t.Nodes), UpdatedAt: &at}
		if sameUsage(s.Status.Usage, want) {
			continue
		}
		patched := s.DeepCopy()
		patched.Status.Usage = want
		if err := g.Client.Status().Patch(ctx, patched, client.MergeFrom(s)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("writing the usage of slice %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		writes++
	}
	for name, t := range siteTotals {
		s := siteByName[name]
		if s == nil {
			continue
		}
		want := &planetv1.SiteContribution{Slivers: int32(t.Slivers), ForeignSlivers: int32(t.ForeignSlivers),
			CPUSeconds: seconds(t.CPUSeconds), CPUSecondsToOthers: seconds(t.CPUSecondsToOthers), UpdatedAt: &at}
		if sameContribution(s.Status.Contribution, want) {
			continue
		}
		patched := s.DeepCopy()
		patched.Status.Contribution = want
		if err := g.Client.Status().Patch(ctx, patched, client.MergeFrom(s)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("writing the contribution of site %s: %w", name, err))
			continue
		}
		writes++
	}
	g.snapshot(sliceTotals, siteTotals)
	if len(errs) > 0 {
		return writes, fmt.Errorf("%d status writes failed, the first: %w", len(errs), errs[0])
	}
	return writes, nil
}

// fetch asks the agents for their reports, usageFetchers at a time; an
// agent that does not answer is left out of the round (its counters are
// kept for the next).
func (g *UsageGatherer) fetch(ctx context.Context, targets []fanout.Target) []*usage.Report {
	hc := g.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: usageFetchTimeout}
	}
	out := make([]*usage.Report, len(targets))
	sem := make(chan struct{}, usageFetchers)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := usage.Fetch(ctx, hc, t.URL)
			if err != nil {
				ctrl.LoggerFrom(ctx).V(1).Info("An agent gave no usage report", "node", t.Node, "error", err.Error())
				return
			}
			r.Node = t.Node // the node is the pod's, not what the answer says
			out[i] = r
		}()
	}
	wg.Wait()
	reports := out[:0]
	for _, r := range out {
		if r != nil {
			reports = append(reports, r)
		}
	}
	return reports
}

// nodeSites returns the site of every node ("" for a node of none).
func (g *UsageGatherer) nodeSites(ctx context.Context) (map[string]string, error) {
	nodes := &corev1.NodeList{}
	if err := g.Client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return nil, err
	}
	sites := make(map[string]string, len(nodes.Items))
	for _, n := range nodes.Items {
		sites[n.Name] = n.Labels[planetv1.LabelSite]
	}
	return sites, nil
}

// seconds rounds CPU seconds down to a whole number a status can hold.
func seconds(v float64) int64 {
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// sameUsage compares two usages but for when they were written.
func sameUsage(a, b *planetv1.SliceUsage) bool {
	return sameBut(a, b, func(u *planetv1.SliceUsage) { u.UpdatedAt = nil })
}

// sameContribution compares two contributions but for when they were
// written.
func sameContribution(a, b *planetv1.SiteContribution) bool {
	return sameBut(a, b, func(c *planetv1.SiteContribution) { c.UpdatedAt = nil })
}

// sameBut compares copies of a and b once clear has blanked what does not
// count in them.
func sameBut[T any](a, b *T, clear func(*T)) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	clear(&x)
	clear(&y)
	return equality.Semantic.DeepEqual(x, y)
}

// Metrics of the usage, per slice and per site, as of the last round.
var (
	usageSliceCPU = prometheus.NewDesc("planetkube_slice_cpu_seconds_total",
		"CPU time a slice's slivers used on this install's nodes, as their agents report it.", []string{"namespace", "slice"}, nil)
	usageSliceFlows = prometheus.NewDesc("planetkube_slice_flows_total",
		"Flows of a slice the node agents recorded.", []string{"namespace", "slice"}, nil)
	usageSliceBytes = prometheus.NewDesc("planetkube_slice_bytes_today",
		"Bytes a slice sent today (each node's bandwidth budget period), summed over nodes.", []string{"namespace", "slice"}, nil)
	usageSliceBudget = prometheus.NewDesc("planetkube_slice_budget_bytes",
		"The day's bandwidth budget of a slice, summed over the nodes that report it.", []string{"namespace", "slice"}, nil)
	usageSiteSlivers = prometheus.NewDesc("planetkube_site_slivers_hosted",
		"Slivers a site's nodes run, by whose: own (the site's slices) or others (other sites' and authorities').", []string{"site", "for"}, nil)
	usageSiteCPU = prometheus.NewDesc("planetkube_site_cpu_seconds_given_total",
		"CPU time slices used on a site's nodes, by whose: own or others.", []string{"site", "for"}, nil)
)

// snapshot keeps the totals for the metrics.
func (g *UsageGatherer) snapshot(slices map[usage.Key]*usage.Totals, sites map[string]*usage.SiteTotals) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.slices = make(map[usage.Key]usage.Totals, len(slices))
	for k, v := range slices {
		g.slices[k] = *v
	}
	g.sites = make(map[string]usage.SiteTotals, len(sites))
	for k, v := range sites {
		g.sites[k] = *v
	}
}

// Describe implements prometheus.Collector.
func (g *UsageGatherer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{usageSliceCPU, usageSliceFlows, usageSliceBytes, usageSliceBudget, usageSiteSlivers, usageSiteCPU} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the last round's figures (none
// on a replica that is not the leader).
func (g *UsageGatherer) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, t := range g.slices {
		ch <- prometheus.MustNewConstMetric(usageSliceCPU, prometheus.CounterValue, t.CPUSeconds, k.Namespace, k.Name)
		ch <- prometheus.MustNewConstMetric(usageSliceFlows, prometheus.CounterValue, float64(t.Flows), k.Namespace, k.Name)
		ch <- prometheus.MustNewConstMetric(usageSliceBytes, prometheus.GaugeValue, float64(t.BytesToday), k.Namespace, k.Name)
		ch <- prometheus.MustNewConstMetric(usageSliceBudget, prometheus.GaugeValue, float64(t.BudgetBytes), k.Namespace, k.Name)
	}
	for site, t := range g.sites {
		ch <- prometheus.MustNewConstMetric(usageSiteSlivers, prometheus.GaugeValue, float64(t.Slivers-t.ForeignSlivers), site, "own")
		ch <- prometheus.MustNewConstMetric(usageSiteSlivers, prometheus.GaugeValue, float64(t.ForeignSlivers), site, "others")
		ch <- prometheus.MustNewConstMetric(usageSiteCPU, prometheus.CounterValue, t.CPUSeconds-t.CPUSecondsToOthers, site, "own")
		ch <- prometheus.MustNewConstMetric(usageSiteCPU, prometheus.CounterValue, t.CPUSecondsToOthers, site, "others")
	}
}
