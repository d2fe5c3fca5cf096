package bench

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const (
	// allocationHeading is the heading of the authority allocation section.
	allocationHeading = "## Authority allocation (issue 25)"
	// benchAllocation names the root pool allocated to the authority in
	// each site's namespace; benchAuthority is the manager's (--authority).
	benchAllocation, benchAuthority = "authority-share", "plc"
)

var allocationPairs = flag.Int("allocation-pairs", 3, "alternating pool-binding/allocation change pairs of the authority allocation benchmark")

// allocationResult holds the figures of the authority allocation benchmark.
type allocationResult struct {
	nodes, sites int
	// created is the first allocation's: from its creation to every
	// sliver replaced onto it, Running, every old one gone.
	created time.Duration
	// binding and allocation hold, per pair, the time from a change of
	// the bound pools' or of the allocations' amounts to every sliver
	// replaced, Running, every old one gone; bindingFirst says which side
	// of each pair ran first.
	binding, allocation []time.Duration
	bindingFirst        []bool
	machine             machine
}

// runAllocation allocates, in every site of c, a root pool over all the
// site's nodes to the manager's own authority, whose slice `all` runs a
// sliver on every node (bound by the pool binding phase before), then
// changes, in alternating pairs, the bound pools' cpu and the allocations'
// cpu: each change replaces every sliver, make-before-break.
func runAllocation(ctx context.Context, t *testing.T, c *emulator.Cluster) (*allocationResult, error) {
	t.Helper()
	k8s, err := newClient(c.Config)
	if err != nil {
		return nil, err
	}
	n := len(c.NodeNames)
	res := &allocationResult{nodes: n, sites: len(c.Sites)}
	if res.created, err = replaceAll(ctx, t, c, "Authority allocation created", func(ctx context.Context) error { return createAllocations(ctx, k8s, c.Sites) }); err != nil {
		return nil, err
	}
	for pair := range *allocationPairs {
		bindingFirst := pair%2 == 0
		res.bindingFirst = append(res.bindingFirst, bindingFirst)
		bind := func() error {
			d, err := replaceAll(ctx, t, c, fmt.Sprintf("Binding change %d", pair), func(ctx context.Context) error {
				return setPoolCPU(ctx, k8s, c.Sites, benchPool, fmt.Sprintf("%dm", 1100+100*pair))
			})
			res.binding = append(res.binding, d)
			return err
		}
		alloc := func() error {
			d, err := replaceAll(ctx, t, c, fmt.Sprintf("Allocation change %d", pair), func(ctx context.Context) error {
				return setPoolCPU(ctx, k8s, c.Sites, benchAllocation, fmt.Sprint(9+pair))
			})
			res.allocation = append(res.allocation, d)
			return err
		}
		order := []func() error{bind, alloc}
		if !bindingFirst {
			order = []func() error{alloc, bind}
		}
		for _, run := range order {
			if err := run(); err != nil {
				return nil, err
			}
		}
	}
	if err := checkSlivers(ctx, c.Client, naming.SliceNamespace(benchSite, benchSlice), planetv1.LabelSlice+"="+benchSlice, c.NodeNames); err != nil {
		t.Errorf("Authority allocation: %v", err)
	}
	res.machine = describeMachine()
	return res, nil
}

// replaceAll runs change and returns how long until every sliver of the
// slice `all` is one that was not there before (a sliver's name carries the
// hash of what is reserved for it) and Running, and every old one is gone.
func replaceAll(ctx context.Context, t *testing.T, c *emulator.Cluster, name string, change func(context.Context) error) (time.Duration, error) {
	ns, selector := naming.SliceNamespace(benchSite, benchSlice), planetv1.LabelSlice+"="+benchSlice
	before, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	old := make(map[string]bool, len(before.Items))
	for i := range before.Items {
		old[before.Items[i].Name] = true
	}
	began := time.Now()
	if err := change(ctx); err != nil {
		return 0, err
	}
	d, err := waitSettled(ctx, c, ns, selector, len(c.NodeNames), func(p *corev1.Pod) bool {
		return !old[p.Name] && p.DeletionTimestamp.IsZero()
	}, began)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	t.Logf("%s: every sliver replaced and Running after %s", name, d.Round(time.Millisecond))
	return d, nil
}

// createAllocations creates, in each site's namespace, a root pool over all
// the site's nodes allocated to the manager's authority.
func createAllocations(ctx context.Context, k8s client.Client, sites []string) error {
	for _, s := range sites {
		pool := &planetv1.ResourcePool{
			ObjectMeta: metav1.ObjectMeta{Namespace: s, Name: benchAllocation},
			Spec: planetv1.ResourcePoolSpec{
				Nodes: &planetv1.NodeSelection{Sites: []string{s}},
				PerNode: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("64Gi"),
					planetv1.ResourceSlivers: resource.MustParse("10"),
				},
				Binding: &planetv1.PoolBinding{Authority: benchAuthority},
			},
		}
		if err := k8s.Create(ctx, pool); err != nil {
			return fmt.Errorf("creating pool %s/%s: %w", s, benchAllocation, err)
		}
	}
	return nil
}

// setPoolCPU sets the cpu of pool name in every site's namespace.
func setPoolCPU(ctx context.Context, k8s client.Client, sites []string, name, cpu string) error {
	for _, s := range sites {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			pool := &planetv1.ResourcePool{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: s, Name: name}, pool); err != nil {
				return err
			}
			pool.Spec.PerNode[corev1.ResourceCPU] = resource.MustParse(cpu)
			return k8s.Update(ctx, pool)
		}); err != nil {
			return fmt.Errorf("setting the cpu of pool %s/%s: %w", s, name, err)
		}
	}
	return nil
}

func (r *allocationResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `make bench` (this phase runs after the pool binding, on the same cluster). %s "+
		"%d kwok nodes; the slice `%s/%s` of the manager's authority (`%s`) runs one sliver on every node, bound to the pools of the phase above.\n\n",
		r.machine, r.nodes, benchSite, benchSlice, benchAuthority)
	fmt.Fprintf(&b, "First, in the namespace of each of the %d sites, a root pool over all the site's nodes (8 cpu, 64Gi, 10 slivers per node) is allocated to `%s`: "+
		"every one of the %d slivers is replaced onto the allocation (annotation `%s`), make-before-break, "+
		"and a list shows them all Running with every old one gone after **%s**.\n\n",
		r.sites, benchAuthority, r.nodes, clusterview.AnnotationAllocation, seconds(r.created))
	fmt.Fprintf(&b, "Then, in %d alternating pairs, the bound pools' cpu changes (the anchor: issue 3's pool binding, which the issue names) and the allocations' cpu changes; "+
		"each change replaces every sliver, and the clock stops when a list shows %d new slivers all Running and no old one:\n\n", len(r.binding), r.nodes)
	b.WriteString("| Pair | First | Pool binding changed | Allocation changed | Allocation / binding |\n|---:|---|---:|---:|---:|\n")
	ratios := make([]float64, len(r.binding))
	for i := range r.binding {
		first := "allocation"
		if r.bindingFirst[i] {
			first = "binding"
		}
		ratios[i] = r.allocation[i].Seconds() / r.binding[i].Seconds()
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f× |\n", i+1, first, seconds(r.binding[i]), seconds(r.allocation[i]), ratios[i])
	}
	med, lo, hi := medianRange(ratios)
	fmt.Fprintf(&b, "\nAllocation / binding, all replaced and Running: **median %.2f×** (range %.2f×–%.2f× over %d pairs).\n", med, lo, hi, len(ratios))
	return b.String()
}
