package bwshape

import (
	"context"
	"net/netip"
	"testing"
	"time"

	netnstest "github.com/planetkube/planetkube/internal/testing/netns"
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

// stream starts a bulk sender from each pod to its own server in the
// internet namespace and returns the servers; the senders stop with t.
func stream(t *testing.T, topo *netnstest.Node, pods ...int) []*netnstest.TCPServer {
	t.Helper()
	var servers []*netnstest.TCPServer
	for range pods {
		servers = append(servers, netnstest.StartTCPServer(t, topo.Internet))
	}
	// Registered after the servers, so it runs before their cleanup,
	// which waits for the connections to end.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(pods))
	t.Cleanup(func() {
		cancel()
		for range pods {
			if err := <-done; err != nil {
				t.Errorf("Sender: %v", err)
			}
		}
	})
	for k, i := range pods {
		dst := netip.AddrPortFrom(topo.Internet.IPv4, servers[k].Port())
		go func() { done <- topo.Pods[i].StreamTCP(ctx, dst) }()
	}
	return servers
}

// received waits until the servers together received at least total more
// bytes than at the call, and returns what each received meanwhile and
// how long it took.
func received(t *testing.T, servers []*netnstest.TCPServer, total int64) ([]int64, time.Duration) {
	t.Helper()
	start := make([]int64, len(servers))
	for i, s := range servers {
		start[i] = s.Bytes()
	}
	began := time.Now()
	deadline := began.Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		got := make([]int64, len(servers))
		var sum int64
		for i, s := range servers {
			got[i] = s.Bytes() - start[i]
			sum += got[i]
		}
		if sum >= total {
			return got, time.Since(began)
		}
		if time.Now().After(deadline) {
			t.Fatalf("The servers received %v bytes in a minute, want %d in all", got, total)
		}
	}
	return nil, 0
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
			servers := stream(t, topo, 0, 1)
			received(t, servers, 2_000_000) // TCP ramps up
			got, took := received(t, servers, 12_000_000)
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
