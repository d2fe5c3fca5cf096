package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Header sizes, for the byte counts of conntrack, which counts whole IP
// packets: a UDP datagram of n payload bytes is n+UDPHeader+IPv4Header (or
// IPv6Header) bytes. A TCP segment is at least TCPHeader+IP header bytes, and
// more with options (SYNs carry about 20 more, timestamps add 12 to every
// segment), so tests assert TCP byte counts as bounds.
const (
	IPv4Header = 20
	IPv6Header = 40
	UDPHeader  = 8
	TCPHeader  = 20
)

// IPHeader returns the IP header size of a packet to or from addr.
func IPHeader(addr netip.Addr) int {
	if addr.Unmap().Is4() {
		return IPv4Header
	}
	return IPv6Header
}

// TCPServer is a TCP server in a namespace that reads each connection to
// its end, counts the bytes, and closes it.
type TCPServer struct {
	ln    net.Listener
	port  uint16
	bytes atomic.Int64
	conns atomic.Int64
	wg    sync.WaitGroup
}

// StartTCPServer starts a TCP server listening on every address of ns (IPv4
// and IPv6) on a free port; t.Cleanup stops it.
func StartTCPServer(t testing.TB, ns *NS) *TCPServer {
	t.Helper()
	s := &TCPServer{}
	err := ns.Do(func() error {
		var err error
		s.ln, err = net.Listen("tcp", ":0")
		return err
	})
	if err != nil {
		t.Fatalf("Listening on TCP in %s: %v", ns.Name, err)
	}
	s.port = uint16(s.ln.Addr().(*net.TCPAddr).Port)
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = s.ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *TCPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				s.bytes.Add(int64(n))
				if err != nil {
					break
				}
			}
			_ = c.Close()
			s.conns.Add(1)
		}()
	}
}

// Port returns the port the server listens on.
func (s *TCPServer) Port() uint16 { return s.port }

// Bytes returns the payload bytes received so far over all connections.
func (s *TCPServer) Bytes() int64 { return s.bytes.Load() }

// Conns returns the number of connections read to their end and closed.
func (s *TCPServer) Conns() int64 { return s.conns.Load() }

// UDPServer is a UDP server in a namespace that counts the datagrams it
// receives and echoes each back to its sender.
type UDPServer struct {
	pc        net.PacketConn
	port      uint16
	bytes     atomic.Int64
	datagrams atomic.Int64
	wg        sync.WaitGroup
}

// StartUDPServer starts a UDP echo server on every address of ns (IPv4 and
// IPv6) on a free port; t.Cleanup stops it.
func StartUDPServer(t testing.TB, ns *NS) *UDPServer {
	t.Helper()
	s := &UDPServer{}
	err := ns.Do(func() error {
		var err error
		s.pc, err = net.ListenPacket("udp", ":0")
		return err
	})
	if err != nil {
		t.Fatalf("Listening on UDP in %s: %v", ns.Name, err)
	}
	s.port = uint16(s.pc.LocalAddr().(*net.UDPAddr).Port)
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = s.pc.Close()
		s.wg.Wait()
	})
	return s
}

func (s *UDPServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		s.bytes.Add(int64(n))
		s.datagrams.Add(1)
		_, _ = s.pc.WriteTo(buf[:n], addr)
	}
}

// Port returns the port the server listens on.
func (s *UDPServer) Port() uint16 { return s.port }

// Bytes returns the payload bytes received.
func (s *UDPServer) Bytes() int64 { return s.bytes.Load() }

// Datagrams returns the number of datagrams received.
func (s *UDPServer) Datagrams() int64 { return s.datagrams.Load() }

// DialTCP opens a TCP connection from the namespace to dst.
func (ns *NS) DialTCP(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dialing %s from %s: %w", dst, ns.Name, err)
	}
	return c.(*net.TCPConn), nil
}

// SendTCP connects from the namespace to dst, sends exactly n payload bytes,
// half-closes, and waits for the server to close (so the whole flow,
// FINs included, is over when it returns). It returns the local address.
func (ns *NS) SendTCP(ctx context.Context, dst netip.AddrPort, n int) (netip.AddrPort, error) {
	sent, err := ns.SendTCPCounted(ctx, dst, n)
	return sent.Local, err
}

// TCPSent is what SendTCPCounted reports of a finished connection.
type TCPSent struct {
	// Local is the connection's local address.
	Local netip.AddrPort
	// RetransBytes is the payload the kernel sent more than once: conntrack
	// counts every copy, so a byte count that must be exact subtracts it.
	// Loss is rare on veth pairs but not impossible on a busy machine.
	RetransBytes uint64
}

// SendTCPCounted is SendTCP, and also reads the socket's retransmitted
// bytes (TCP_INFO) once the peer has closed, when no more can follow.
func (ns *NS) SendTCPCounted(ctx context.Context, dst netip.AddrPort, n int) (TCPSent, error) {
	c, err := ns.DialTCP(ctx, dst)
	if err != nil {
		return TCPSent{}, err
	}
	defer c.Close()
	sent := TCPSent{Local: addrPort(c.LocalAddr())}
	defer bound(ctx, c, 0)()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return sent, fmt.Errorf("sending %d bytes to %s: %w", n, dst, err)
	}
	if err := c.CloseWrite(); err != nil {
		return sent, fmt.Errorf("half-closing the connection to %s: %w", dst, err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return sent, fmt.Errorf("waiting for %s to close: %w", dst, err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return sent, err
	}
	var infoErr error
	if err := raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if infoErr == nil {
			sent.RetransBytes = info.Bytes_retrans
		}
	}); err != nil {
		return sent, err
	}
	if infoErr != nil {
		return sent, fmt.Errorf("reading TCP_INFO of the connection to %s: %w", dst, infoErr)
	}
	return sent, nil
}

// SendUDP sends count datagrams of size payload bytes from one socket of the
// namespace to dst, and waits for each echo (from a UDPServer) before the
// next, so the flow has exactly count packets each way when it returns. It
// returns the local address.
func (ns *NS) SendUDP(ctx context.Context, dst netip.AddrPort, count, size int) (netip.AddrPort, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "udp", dst.String())
		return err
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dialing %s from %s: %w", dst, ns.Name, err)
	}
	defer c.Close()
	local := addrPort(c.LocalAddr())
	defer bound(ctx, c, 10*time.Second)()
	payload := make([]byte, size)
	echo := make([]byte, size+1)
	for i := range count {
		if _, err := c.Write(payload); err != nil {
			return local, fmt.Errorf("sending datagram %d to %s: %w", i, dst, err)
		}
		n, err := c.Read(echo)
		if err != nil {
			return local, fmt.Errorf("reading echo %d from %s: %w", i, dst, err)
		}
		if n != size {
			return local, fmt.Errorf("echo %d from %s has %d bytes, want %d", i, dst, n, size)
		}
	}
	return local, nil
}

// bound ends c's reads and writes when ctx ends: at its deadline (without
// one, after fallback, if positive) and as soon as it is canceled, so that
// a lost datagram does not keep a canceled sender waiting. The returned
// function stops watching ctx.
func bound(ctx context.Context, c net.Conn, fallback time.Duration) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	} else if fallback > 0 {
		_ = c.SetDeadline(time.Now().Add(fallback))
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// addrPort returns the unmapped address and port of a TCP or UDP address.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// StreamTCP connects from the namespace to dst and sends as fast as the
// path allows until ctx ends (a bulk sender, for shaping tests). It returns
// nil when ctx ended it.
func (ns *NS) StreamTCP(ctx context.Context, dst netip.AddrPort) error {
	c, err := ns.DialTCP(ctx, dst)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("streaming to %s: %w", dst, err)
		}
	}
}

// Stream starts a bulk sender (StreamTCP) from each listed pod to a server
// of its own in the internet namespace, over IPv4, and returns the servers
// in the same order; the senders stop when t ends.
func (topo *Node) Stream(t testing.TB, pods ...int) []*TCPServer {
	t.Helper()
	var servers []*TCPServer
	for range pods {
		servers = append(servers, StartTCPServer(t, topo.Internet))
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

// Received waits until the servers together received at least total more
// bytes than at the call, and returns what each received meanwhile and how
// long it took (a measurement window bounded by bytes, not by a sleep).
func Received(t testing.TB, servers []*TCPServer, total int64) ([]int64, time.Duration) {
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
