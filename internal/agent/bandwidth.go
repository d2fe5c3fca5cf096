package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/agent/sliver"
	"github.com/planetkube/planetkube/internal/cli"
)

// DefaultNodeCap is the node's cap on its uplink when no other is given, in
// bit/s.
const DefaultNodeCap = 1_000_000_000

// bindFlags registers the bandwidth flags.
func (b *BandwidthOptions) bindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&b.Enabled, "bandwidth", false, "Shape each slice's traffic on the node's uplink (PlanetLab's bwmon): an HTB class per slice with its share of --bandwidth-node-cap, and a daily byte budget past whose threshold the slice's ceil is lowered. Takes over the uplink's root qdisc and adds the nftables table "+bandwidth.TableName+"; needs NET_ADMIN in the host network.")
	fs.StringVar(&b.Uplink, "bandwidth-uplink", "", "With --bandwidth: the uplink's name (default: the link of the default route).")
	fs.Uint64Var(&b.NodeCap, "bandwidth-node-cap", DefaultNodeCap, "With --bandwidth: the node's cap on its uplink in bit/s, which slices share.")
	fs.Uint64Var(&b.MinRate, "bandwidth-min-rate", budget.DefaultMinRate, "With --bandwidth: the lowest rate of a slice held by its budget, in bit/s (at most a quarter of the cap), and the rate kept for the node's own traffic.")
	fs.Uint64Var(&b.Budget, "bandwidth-budget", budget.DefaultBudget, "With --bandwidth: the bytes a slice may send from the node per period (PlanetLab: 10,546,875 KiB a day).")
	fs.Uint64Var(&b.ExemptBudget, "bandwidth-exempt-budget", budget.DefaultExemptBudget, "With --bandwidth: the bytes a slice may send to exempt destinations per period.")
	fs.Float64Var(&b.Threshold, "bandwidth-threshold", budget.DefaultThreshold, "With --bandwidth: the fraction of a budget past which the slice's ceil becomes (budget − used) × 8 / (seconds left in the period).")
	fs.DurationVar(&b.Period, "bandwidth-period", budget.DefaultPeriod, "With --bandwidth: the budget period (a day).")
	fs.StringVar(&b.Exempt, "bandwidth-exempt", "", "With --bandwidth: comma-separated destination networks (CIDRs) counted apart, against --bandwidth-exempt-budget (PlanetLab's Internet2 class).")
	fs.Uint64Var(&b.ExemptCap, "bandwidth-exempt-cap", 0, "With --bandwidth-exempt: the cap of exempt traffic in bit/s (default the node cap).")
	fs.DurationVar(&b.Interval, "bandwidth-interval", bandwidth.DefaultInterval, "With --bandwidth: how often the classes' counters are read and the ceils set.")
	fs.StringVar(&b.Ledger, "bandwidth-ledger", "", "With --bandwidth: the file that keeps each slice's usage in the period across restarts (default bandwidth.json in --data-dir).")
}

// validate checks the bandwidth flags.
func (b *BandwidthOptions) validate() error {
	var errs []error
	if _, err := b.exempt(); err != nil {
		errs = append(errs, err)
	}
	if err := b.policy().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--bandwidth: %w", err))
	}
	if b.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--bandwidth-interval must be positive, got %v", b.Interval))
	}
	if b.MinRate > b.NodeCap {
		errs = append(errs, fmt.Errorf("--bandwidth-min-rate %d is above --bandwidth-node-cap %d", b.MinRate, b.NodeCap))
	}
	return errors.Join(errs...)
}

// exempt parses --bandwidth-exempt.
func (b *BandwidthOptions) exempt() ([]netip.Prefix, error) {
	out, err := cli.ParseCIDRs("--bandwidth-exempt", b.Exempt, "192.0.2.0/24")
	if err != nil {
		return nil, err
	}
	if len(out) > bandwidth.MaxExempt {
		return nil, fmt.Errorf("--bandwidth-exempt: %d networks, at most %d", len(out), bandwidth.MaxExempt)
	}
	return out, nil
}

// policy is the budget of every slice.
func (b *BandwidthOptions) policy() budget.Config {
	return budget.Config{
		Budget: b.Budget, ExemptBudget: b.ExemptBudget, Threshold: b.Threshold,
		Period: b.Period, MinRate: b.MinRate, MaxRate: b.NodeCap,
	}
}

// addBandwidth sets up the uplink's shaping and adds its loop, which it
// returns; sliceOf names a pod's slice as flows are attributed.
func addBandwidth(mgr ctrl.Manager, o Options, sliceOf func(*corev1.Pod) string) (*bandwidth.Loop, error) {
	b := o.Bandwidth
	exempt, _ := b.exempt() // validated
	uplink := b.Uplink
	if uplink == "" {
		var err error
		if uplink, err = bandwidth.DefaultUplink(o.NetNS); err != nil {
			return nil, fmt.Errorf("--bandwidth: %w", err)
		}
	}
	shaper, err := bandwidth.New(bandwidth.Config{
		Link: uplink, NetNS: o.NetNS, NodeCap: b.NodeCap, MinRate: b.MinRate, Exempt: exempt, ExemptCap: b.ExemptCap,
	})
	if err != nil {
		return nil, fmt.Errorf("--bandwidth: %w", err)
	}
	path := b.Ledger
	if path == "" {
		path = filepath.Join(o.DataDir, "bandwidth.json")
	}
	ledger, err := budget.Load(path)
	if err != nil {
		shaper.Close()
		return nil, fmt.Errorf("--bandwidth: %w", err)
	}
	m := bandwidthMetrics()
	ctrl.Log.WithName("node-agent").Info("Shaping slice bandwidth", "uplink", uplink, "nodeCap", b.NodeCap, "exempt", len(exempt), "ledger", path)
	loop := &bandwidth.Loop{
		Shaper: shaper, Ledger: ledger, LedgerPath: path, Policy: b.policy(), Node: o.NodeName,
		Slivers: bandwidthSlivers(mgr, sliceOf), Recorder: mgr.GetEventRecorder("planetkube-node-agent"), Metrics: m, Interval: b.Interval,
	}
	if err := mgr.Add(loop); err != nil {
		return nil, err
	}
	return loop, nil
}

// bandwidthMetrics returns the bandwidth loop's metrics, registered once
// per process in controller-runtime's registry (so that Run may run again in
// one process, as the tests do).
var bandwidthMetrics = sync.OnceValue(func() bandwidth.Metrics {
	m := bandwidth.NewMetrics()
	metrics.Registry.MustRegister(m.Collectors()...)
	return m
})

// bandwidthSlivers lists the node's running slivers with their slice's
// share and addresses.
func bandwidthSlivers(mgr ctrl.Manager, sliceOf func(*corev1.Pod) string) func() []bandwidth.Sliver {
	pods := sliverPods(mgr)
	c := mgr.GetCache()
	return func() []bandwidth.Sliver {
		var out []bandwidth.Sliver
		for _, pod := range pods() {
			full := sliceOf(pod)
			addrs := podIPs(pod)
			if pod.Status.Phase != corev1.PodRunning || full == "" || len(addrs) == 0 {
				continue
			}
			s := bandwidth.Sliver{Slice: full, Share: 1, Addrs: addrs, Ref: sliver.SliceRef(pod)}
			if s.Ref != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				slice := &planetv1.Slice{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(s.Ref), slice); err == nil && slice.Spec.CPUShare > 0 {
					s.Share = int(slice.Spec.CPUShare)
				}
				cancel()
			}
			out = append(out, s)
		}
		return out
	}
}
