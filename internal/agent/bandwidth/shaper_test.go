package bandwidth

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/planetkube/planetkube/internal/testing/netnstest"
)

// uplinkCap is the shaped uplink of the kernel tests, in bit/s.
const uplinkCap = 20_000_000

// newShaped makes a node topology with pods and a shaper on its uplink.
func newShaped(t *testing.T, pods int, cfg Config) (*netnstest.Node, *Shaper) {
	t.Helper()
	netnstest.RequireRoot(t)
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: pods})
	cfg.Link, cfg.NetNS = "uplink", topo.Node.Path
	if cfg.NodeCap == 0 {
		cfg.NodeCap = uplinkCap
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return topo, s
}

// podClass is the class of a slice with one sliver, pod i of topo.
func podClass(topo *netnstest.Node, i int, slice string, share int) Class {
	return Class{Slice: slice, Share: share, Addrs: []netip.Addr{topo.Pods[i].IPv4, topo.Pods[i].IPv6}}
}

func TestSharesSplitTheUplink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shares [2]int
	}{{"1:1", [2]int{1, 1}}, {"1:3", [2]int{1, 3}}} {
		t.Run(tc.name, func(t *testing.T) {
			topo, s := newShaped(t, 2, Config{})
			if _, err := s.Apply([]Class{podClass(topo, 0, "plc.a.one", tc.shares[0]), podClass(topo, 1, "plc.b.two", tc.shares[1])}); err != nil {
				t.Fatal(err)
			}
			servers := topo.Stream(t, 0, 1)
			netnstest.Received(t, servers, 2_000_000) // TCP ramps up
			got, took := netnstest.Received(t, servers, 12_000_000)
			ratio := float64(got[1]) / float64(got[0])
			want := float64(tc.shares[1]) / float64(tc.shares[0])
			rate := float64(got[0]+got[1]) * 8 / took.Seconds()
			t.Logf("Shares %v: received %v bytes in %v (%.2f Mbit/s), ratio %.3f", tc.shares, got, took, rate/1e6, ratio)
			if ratio < want*0.9 || ratio > want*1.1 {
				t.Errorf("Throughput ratio %.3f, want %.1f within 10 %%", ratio, want)
			}
			if rate > uplinkCap*1.02 || rate < uplinkCap*0.8 {
				t.Errorf("Goodput %.2f Mbit/s, want at most the %d Mbit/s cap and near it", rate/1e6, uplinkCap/1_000_000)
			}
		})
	}
}

// TestRemoveLeftovers: with shaping turned off, the agent removes the tree
// and the table an earlier agent left, once.
func TestRemoveLeftovers(t *testing.T) {
	topo, s := newShaped(t, 1, Config{})
	if _, err := s.Apply([]Class{podClass(topo, 0, "plc.a.one", 1)}); err != nil {
		t.Fatal(err)
	}
	if !s.Healthy() {
		t.Fatal("The new tree is not in place")
	}
	removed, err := RemoveLeftovers(topo.Node.Path, "uplink")
	if err != nil || !removed {
		t.Fatalf("RemoveLeftovers = %v, %v; want the tree and table removed", removed, err)
	}
	if s.Healthy() {
		t.Error("The uplink still has the shaper's qdisc")
	}
	if out, err := topo.Node.Command(context.Background(), "nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), TableName) {
		t.Errorf("nft list tables: %s %v; want no %s", out, err, TableName)
	}
	if removed, err := RemoveLeftovers(topo.Node.Path, "uplink"); err != nil || removed {
		t.Errorf("A second RemoveLeftovers = %v, %v; want nothing to remove", removed, err)
	}
}
