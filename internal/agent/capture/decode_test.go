package capture

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/planetkube/planetkube/internal/agent/netns"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
)

// TestDecodeMatchesTheReferenceOnKernelEvents reads the real kernel's NEW
// and DESTROY messages for TCP, UDP and ICMP flows over IPv4 and IPv6 (a
// node namespace with conntrack accounting and timestamps) and checks that
// decodeEvent decodes each exactly as ti-mo/conntrack does.
func TestDecodeMatchesTheReferenceOnKernelEvents(t *testing.T) {
	netnstest.RequireRoot(t)
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 1, ConntrackTimeout: time.Second})
	if err := EnableAccounting(topo.Node.Path); err != nil {
		t.Fatal(err)
	}
	fd, closeNS, err := netns.Open(topo.Node.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeNS()
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, g := range []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy} {
		if err := conn.JoinGroup(uint32(g)); err != nil {
			t.Fatal(err)
		}
	}
	tcp := netnstest.StartTCPServer(t, topo.Internet)
	udp := netnstest.StartUDPServer(t, topo.Internet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := topo.Pods[0]
	for _, dst := range []netip.Addr{topo.Internet.IPv4, topo.Internet.IPv6} {
		if _, err := pod.SendTCP(ctx, netip.AddrPortFrom(dst, tcp.Port()), 5000); err != nil {
			t.Fatal(err)
		}
		if _, err := pod.SendUDP(ctx, netip.AddrPortFrom(dst, udp.Port()), 2, 100); err != nil {
			t.Fatal(err)
		}
		if err := pod.Run(ctx, "ping", "-c", "1", "-W", "5", dst.String()); err != nil {
			t.Fatal(err)
		}
	}
	// Six flows, each a NEW. DESTROYs come when the kernel reaps expired
	// flows, which its garbage collector may put off for up to a minute on
	// a busy machine: once every NEW is in, the test deletes the flows
	// (ti-mo/conntrack's Flush), and the kernel sends their DESTROYs.
	seen := map[uint8]map[int]int{} // proto → event type → count
	allNew := func() bool {
		for _, proto := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6} {
			if seen[proto][evNew] == 0 {
				return false
			}
		}
		return true
	}
	done := func() bool { return allNew() && seen[unix.IPPROTO_TCP][evDestroy] > 0 }
	flushed := false
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for total := 0; !done(); {
		if !flushed && allNew() {
			flushConntrack(t, fd)
			flushed = true
		}
		msgs, err := conn.Receive()
		if err != nil {
			t.Fatalf("Receiving conntrack events (%d so far: %v): %v", total, seen, err)
		}
		for _, m := range msgs {
			now := time.Now()
			got := decodeEvent(message(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data), now)
			want := decodeTiMo(m, now)
			if want.typ != evNew && want.typ != evDestroy {
				t.Fatalf("The reference could not decode a kernel event: %v", want.err)
			}
			if !sameEvent(got, want) {
				t.Fatalf("decodeEvent %+v (%v), the reference %+v", got, got.err, want)
			}
			if seen[got.rec.Proto] == nil {
				seen[got.rec.Proto] = map[int]int{}
			}
			seen[got.rec.Proto][got.typ]++
			total++
		}
	}
	t.Logf("Decoded kernel events by protocol and type: %v", seen)
}

// flushConntrack deletes every flow of the conntrack table of the network
// namespace fd.
func flushConntrack(t *testing.T, fd int) {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
