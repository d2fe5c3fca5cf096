package netnstest

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestNodeTopology(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	topo := NewNode(t, NodeOptions{Pods: 2, ConntrackTimeout: time.Second})
	tcp := StartTCPServer(t, topo.Internet)
	udp := StartUDPServer(t, topo.Internet)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for i, pod := range topo.Pods {
		for _, dst := range []netip.Addr{topo.Internet.IPv4, topo.Internet.IPv6} {
			local, err := pod.SendTCP(ctx, netip.AddrPortFrom(dst, tcp.Port()), 1000)
			if err != nil {
				t.Fatalf("Pod %d to %s over TCP: %v", i, dst, err)
			}
			if want := map[bool]netip.Addr{true: pod.IPv4, false: pod.IPv6}[dst.Is4()]; local.Addr() != want {
				t.Errorf("Pod %d's TCP source = %s, want %s", i, local.Addr(), want)
			}
			if _, err := pod.SendUDP(ctx, netip.AddrPortFrom(dst, udp.Port()), 3, 100); err != nil {
				t.Fatalf("Pod %d to %s over UDP: %v", i, dst, err)
			}
		}
	}
	if got, want := udp.Datagrams(), int64(2*2*3); got != want {
		t.Errorf("UDP server got %d datagrams, want %d", got, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tcp.Bytes() != 4000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := tcp.Bytes(); got != 4000 {
		t.Errorf("TCP server got %d bytes, want 4000", got)
	}

	// The internet host sees the node's uplink address (masquerade).
	if v, err := topo.Node.Sysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Errorf("Node ip_forward = %q, %v; want 1", v, err)
	}
	out, err := topo.Node.Command(ctx, "conntrack", "-L").CombinedOutput()
	if err != nil {
		t.Logf("conntrack -L: %v: %s", err, out)
	} else {
		t.Logf("Node conntrack table:\n%s", out)
	}
}

func TestReplacePodKeepsIP(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	topo := NewNode(t, NodeOptions{Pods: 1})
	udp := StartUDPServer(t, topo.Internet)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := topo.Pods[0]
	pod := topo.ReplacePod(0)
	if pod.Name == old.Name || pod.IPv4 != old.IPv4 || pod.IPv6 != old.IPv6 {
		t.Fatalf("ReplacePod: %+v after %+v, want another name and the same IPs", pod, old)
	}
	local, err := pod.SendUDP(ctx, netip.AddrPortFrom(topo.Internet.IPv4, udp.Port()), 1, 10)
	if err != nil {
		t.Fatalf("Sending from the new pod: %v", err)
	}
	if local.Addr() != old.IPv4 {
		t.Errorf("New pod's source = %s, want %s", local.Addr(), old.IPv4)
	}
}

// TestSendUDPEndsWhenCanceled: a sender waiting for an echo that will not
// come (a server that reads and never answers) returns once its context
// is canceled, not at the context's deadline.
func TestSendUDPEndsWhenCanceled(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	topo := NewNode(t, NodeOptions{Pods: 1})
	var pc net.PacketConn
	if err := topo.Internet.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", ":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	received := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		if _, _, err := pc.ReadFrom(buf); err == nil {
			close(received)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := topo.Pods[0].SendUDP(ctx, netip.AddrPortFrom(topo.Internet.IPv4, uint16(pc.LocalAddr().(*net.UDPAddr).Port)), 1, 10)
		done <- err
	}()
	select {
	case <-received:
	case err := <-done:
		t.Fatalf("SendUDP returned before its datagram arrived: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the datagram never arrived")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("SendUDP succeeded without an echo")
		}
	case <-time.After(time.Minute): // far less than the context's 10 minutes
		t.Fatal("SendUDP still waits for its echo a minute after its context was canceled")
	}
}
