package bench

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
)

const (
	bandwidthHeading = "## Bandwidth fairness (issue 12)"
	// bwCap is the shaped uplink, bit/s; bwWindow the bytes each side
	// measures over (about 4 s at the cap); bwPairs the alternations.
	bwCap    = 20_000_000
	bwWindow = 10_000_000
	bwPairs  = 3
	// bwSlices is the node size for the loop's own cost.
	bwSlices = 100
)

// bwShares are the slices' shares of the fairness run.
var bwShares = []uint64{1, 1, 2, 4}

type bwResult struct {
	agent, none []float64 // Jain's index per pair
	agentTop    []float64 // the share-4 slice's measured / ideal, with the agent
	rates       []float64 // goodput of the agent's side, bit/s
	passCPU     time.Duration
	passes      int
	machine     machine
}

// TestBandwidthBench measures bandwidth fairness on a shaped uplink (20
// Mbit/s, the real kernel): one bulk TCP sender per slice, shares bwShares;
// with the agent's classes against the anchor, the same cap with no slice
// classes (one FIFO, the kernel's default sharing), alternating over
// bwPairs. Then the loop's own CPU per pass at bwSlices slices.
func TestBandwidthBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	netnstest.RequireRoot(t)
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: len(bwShares)})
	shaper, err := bandwidth.New(bandwidth.Config{Link: "uplink", NetNS: topo.Node.Path, NodeCap: bwCap, MinRate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer shaper.Close()
	classes := make([]bandwidth.Class, len(bwShares))
	pods := make([]int, len(bwShares))
	for i, share := range bwShares {
		pods[i] = i
		classes[i] = bandwidth.Class{Slice: fmt.Sprintf("plc.bench.s%d", i), Share: int(share), Addrs: []netip.Addr{topo.Pods[i].IPv4}}
	}
	servers := topo.Stream(t, pods...)
	res := &bwResult{machine: describeMachine()}
	for pair := range bwPairs {
		sides := []bool{true, false}
		if pair%2 == 1 {
			sides = []bool{false, true}
		}
		for _, withAgent := range sides {
			apply := classes
			if !withAgent {
				apply = nil
			}
			if _, err := shaper.Apply(apply); err != nil {
				t.Fatal(err)
			}
			netnstest.Received(t, servers, bwWindow/4) // the senders settle
			got, took := netnstest.Received(t, servers, bwWindow)
			used := make([]float64, len(got))
			var sum float64
			for i, g := range got {
				used[i] = float64(g)
				sum += used[i]
			}
			j, top := jainOfShares(used, bwShares)
			if withAgent {
				res.agent, res.agentTop, res.rates = append(res.agent, j), append(res.agentTop, top), append(res.rates, sum*8/took.Seconds())
			} else {
				res.none = append(res.none, j)
			}
			t.Logf("Pair %d, agent %v: received %v in %v, Jain's index %.3f", pair+1, withAgent, got, took, j)
		}
	}
	res.passCPU, res.passes = bwLoopCost(t, topo)
	if err := writeSection(*benchOut, bandwidthHeading, res.markdown()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

// bwLoopCost measures the CPU of one pass of the bandwidth loop (read the
// counters, fold them into the ledger, apply the classes, save the ledger)
// with bwSlices slices on the node, on a shaper of its own.
func bwLoopCost(t *testing.T, topo *netnstest.Node) (time.Duration, int) {
	t.Helper()
	shaper, err := bandwidth.New(bandwidth.Config{Link: "uplink", NetNS: topo.Node.Path, NodeCap: bwCap, MinRate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer shaper.Close()
	slivers := make([]bandwidth.Sliver, bwSlices)
	for i := range slivers {
		slivers[i] = bandwidth.Sliver{Slice: fmt.Sprintf("plc.site%d.slice%d", i%10, i), Share: 1 + i%4,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 250, byte(i / 250), byte(1 + i%250)})}}
	}
	loop := &bandwidth.Loop{Shaper: shaper, Ledger: &budget.Ledger{}, LedgerPath: filepath.Join(t.TempDir(), "bandwidth.json"),
		Policy: budget.DefaultConfig(bwCap), Slivers: func() []bandwidth.Sliver { return slivers }, Node: "bench"}
	ctx := context.Background()
	if err := loop.Once(ctx); err != nil { // makes the classes
		t.Fatal(err)
	}
	const passes = 50
	start := selfCPU()
	for range passes {
		if err := loop.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return (selfCPU() - start) / passes, passes
}

func (r *bwResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestBandwidthBench -v -args -bench-out=$PWD/docs/benchmarks.md`, as root). "+
		"Date: %s. Machine: %d CPUs (%s), Linux %s, %s; network namespaces and veth pairs on the real kernel.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "**Bandwidth fairness**: %d slices, one sliver each (a pod namespace with one bulk TCP sender to the internet namespace), shares %v, on an uplink shaped to %d Mbit/s. Each side measures what each slice's server received while %d MB arrive in all, and Jain's index of (measured share / ideal share) says how fair (1 = exactly the shares). The agent's side has its HTB classes (each slice's share of the cap guaranteed, quantum 1,600 × share) and address maps; the anchor is the same cap with no slice classes (one FIFO: the kernel's default sharing, by TCP). The sides alternate over %d pairs.\n\n",
		len(bwShares), bwShares, bwCap/1_000_000, bwWindow/1_000_000, len(r.agent))
	b.WriteString("| Pair | Jain's index, agent | Jain's index, no agent | share-4 slice: measured / ideal (agent) | goodput (agent) |\n|---|---|---|---|---|\n")
	for i := range r.agent {
		fmt.Fprintf(&b, "| %d | %.3f | %.3f | %.2f | %.1f Mbit/s |\n", i+1, r.agent[i], r.none[i], r.agentTop[i], r.rates[i]/1e6)
	}
	am, alo, ahi := medianRange(r.agent)
	nm, nlo, nhi := medianRange(r.none)
	fmt.Fprintf(&b, "\nMedian Jain's index **%.3f** (%.3f–%.3f) with the agent against **%.3f** (%.3f–%.3f) without.\n\n", am, alo, ahi, nm, nlo, nhi)
	fmt.Fprintf(&b, "**The loop's own CPU**: one pass over %d slices (read the HTB counters, fold them into the ledger, check every class and map, save the ledger file) costs **%s** of CPU (mean of %d passes); at the default interval of %s that is %.4f%% of one CPU.\n",
		bwSlices, r.passCPU.Round(time.Microsecond), r.passes, bandwidth.DefaultInterval, 100*r.passCPU.Seconds()/bandwidth.DefaultInterval.Seconds())
	return b.String()
}
