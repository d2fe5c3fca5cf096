package capture

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/testing/metrictest"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
)

// collector gathers the emitted records.
type collector struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (c *collector) emit(b []flow.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, b...)
}

// find returns the records of the flow from src to dst: finals (End set)
// and snapshots.
func (c *collector) find(src, dst netip.AddrPort) (finals, snaps []flow.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.recs {
		if r.Orig.Src == src && r.Orig.Dst == dst {
			if r.End.IsZero() {
				snaps = append(snaps, r)
			} else {
				finals = append(finals, r)
			}
		}
	}
	return finals, snaps
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("Timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCapture runs the capture in the node namespace until the test ends,
// and returns once it listens (its first dump is done).
func startCapture(t *testing.T, topo *netnstest.Node, opts Options) (*collector, *Metrics) {
	t.Helper()
	if err := EnableAccounting(topo.Node.Path); err != nil {
		t.Fatal(err)
	}
	opts.NetNS = topo.Node.Path
	if opts.DumpInterval == 0 {
		// Dumps also reap expired entries (and so send their DESTROY): the
		// kernel's garbage collector may take up to a minute on a small table.
		opts.DumpInterval = 500 * time.Millisecond
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	opts.Logger = testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	col := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, col.emit) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10 s after cancellation")
		}
	})
	eventually(t, 10*time.Second, "the initial dump", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return metrictest.Value(t, opts.Metrics.Dumps) >= 1
	})
	return col, opts.Metrics
}

// waitFinal waits for the one final record of the flow from src to dst.
func waitFinal(t *testing.T, col *collector, src, dst netip.AddrPort) flow.Record {
	t.Helper()
	var finals []flow.Record
	eventually(t, 15*time.Second, fmt.Sprintf("the final record of %s → %s", src, dst), func() bool {
		finals, _ = col.find(src, dst)
		return len(finals) > 0
	})
	if len(finals) != 1 {
		t.Errorf("Flow %s → %s has %d final records, want 1: %+v", src, dst, len(finals), finals)
	}
	return finals[0]
}

// checkCommon checks the tuples and times of a final record of a flow from a
// pod through the node's masquerade.
func checkCommon(t *testing.T, r flow.Record, proto uint8, src, dst netip.AddrPort, node netip.Addr, before, after time.Time) {
	t.Helper()
	if r.Proto != proto {
		t.Errorf("Proto = %d, want %d", r.Proto, proto)
	}
	if r.Reply.Src != dst {
		t.Errorf("Reply.Src = %s, want %s", r.Reply.Src, dst)
	}
	if r.Reply.Dst.Addr() != node {
		t.Errorf("Reply.Dst = %s, want the node's uplink address %s (masquerade)", r.Reply.Dst, node)
	}
	// The kernel's clock and time.Now may differ by the timer granularity.
	slack := 50 * time.Millisecond
	if r.Start.Before(before.Add(-slack)) || r.Start.After(after) {
		t.Errorf("Start = %s, want within [%s, %s]", r.Start, before, after)
	}
	if r.End.Before(r.Start) || r.End.Before(after.Add(-slack)) {
		t.Errorf("End = %s, want after Start %s and after the flow %s", r.End, r.Start, after)
	}
}

// TestCaptureTCPAndUDP checks final records of TCP and UDP flows from a pod
// to the internet, IPv4 and IPv6. UDP counts are exact: each datagram of n
// bytes is n+8+IP header bytes, and each is echoed. For TCP the payload is
// bounded: OrigBytes minus the minimal headers of every packet is at least
// the payload, and options (at most 40 bytes a segment) bound it above.
func TestCaptureTCPAndUDP(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 1, ConntrackTimeout: time.Second})
	tcp := netnstest.StartTCPServer(t, topo.Internet)
	udp := netnstest.StartUDPServer(t, topo.Internet)
	col, m := startCapture(t, topo, Options{})
	pod := topo.Pods[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, fam := range []struct {
		name     string
		dst, src netip.Addr
		node     netip.Addr
	}{
		{"IPv4", topo.Internet.IPv4, pod.IPv4, topo.Node.IPv4},
		{"IPv6", topo.Internet.IPv6, pod.IPv6, topo.Node.IPv6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			hdr := uint64(netnstest.IPHeader(fam.dst))

			const payload = 100_000
			dst := netip.AddrPortFrom(fam.dst, tcp.Port())
			before := time.Now()
			sent, err := pod.SendTCPCounted(ctx, dst, payload)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			local := sent.Local
			if local.Addr() != fam.src {
				t.Fatalf("TCP source %s, want %s", local, fam.src)
			}
			r := waitFinal(t, col, local, dst)
			checkCommon(t, r, 6, local, dst, fam.node, before, after)
			minHdr := hdr + netnstest.TCPHeader
			// Conntrack counts retransmitted copies too.
			carried := payload + sent.RetransBytes
			if r.OrigPackets < 3 || r.OrigBytes < carried+r.OrigPackets*minHdr || r.OrigBytes > carried+r.OrigPackets*(minHdr+40) {
				t.Errorf("TCP orig: %d bytes in %d packets, want %d payload bytes (%d of them retransmitted) plus headers",
					r.OrigBytes, r.OrigPackets, carried, sent.RetransBytes)
			}
			if r.ReplyPackets < 2 || r.ReplyBytes < r.ReplyPackets*minHdr || r.ReplyBytes > r.ReplyPackets*(minHdr+40) {
				t.Errorf("TCP reply: %d bytes in %d packets, want headers only", r.ReplyBytes, r.ReplyPackets)
			}

			const count, size = 5, 300
			dst = netip.AddrPortFrom(fam.dst, udp.Port())
			before = time.Now()
			local, err = pod.SendUDP(ctx, dst, count, size)
			if err != nil {
				t.Fatal(err)
			}
			after = time.Now()
			r = waitFinal(t, col, local, dst)
			checkCommon(t, r, 17, local, dst, fam.node, before, after)
			want := uint64(count * (size + netnstest.UDPHeader + int(hdr)))
			if r.OrigPackets != count || r.OrigBytes != want || r.ReplyPackets != count || r.ReplyBytes != want {
				t.Errorf("UDP counters: orig %d bytes/%d packets, reply %d/%d; want %d/%d each way",
					r.OrigBytes, r.OrigPackets, r.ReplyBytes, r.ReplyPackets, want, count)
			}
		})
	}
	if v := metrictest.Value(t, m.Overflows); v != 0 {
		t.Errorf("Overflows = %v, want 0", v)
	}
	if v := metrictest.Value(t, m.LostFlows); v != 0 {
		t.Errorf("LostFlows = %v, want 0", v)
	}
}

// TestCaptureLongFlow checks that a flow open before the capture starts is
// emitted as a snapshot by the initial dump, then by the periodic dumps when
// its counters change, and finally as a final record.
func TestCaptureLongFlow(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 1, ConntrackTimeout: time.Second})
	tcp := netnstest.StartTCPServer(t, topo.Internet)
	if err := EnableAccounting(topo.Node.Path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := netip.AddrPortFrom(topo.Internet.IPv4, tcp.Port())
	start := time.Now()
	conn, err := topo.Pods[0].DialTCP(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	src := netip.MustParseAddrPort(conn.LocalAddr().String())
	if _, err := conn.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the server to read 1000 bytes", func() bool { return tcp.Bytes() >= 1000 })

	const interval = 300 * time.Millisecond
	col, _ := startCapture(t, topo, Options{DumpInterval: interval})
	var snaps []flow.Record
	eventually(t, 5*time.Second, "the initial snapshot", func() bool {
		_, snaps = col.find(src, dst)
		return len(snaps) >= 1
	})
	first := snaps[0]
	if first.OrigBytes < 1000 || !first.End.IsZero() || first.Start.Before(start.Add(-50*time.Millisecond)) {
		t.Errorf("Initial snapshot %+v, want ≥ 1000 orig bytes, End zero, Start after %s", first, start)
	}

	// Unchanged counters: no new snapshot over a few dumps.
	if _, err := conn.Write(make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a snapshot with the new bytes", func() bool {
		_, snaps = col.find(src, dst)
		return len(snaps) >= 2 && snaps[len(snaps)-1].OrigBytes >= 6000
	})
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	r := waitFinal(t, col, src, dst)
	checkCommon(t, r, 6, src, dst, topo.Node.IPv4, start, end)
	if r.OrigBytes < 6000 || r.OrigBytes < snaps[len(snaps)-1].OrigBytes {
		t.Errorf("Final OrigBytes = %d, want ≥ 6000 and ≥ the last snapshot's", r.OrigBytes)
	}
	_, snaps = col.find(src, dst)
	for i := 1; i < len(snaps); i++ {
		if snaps[i].OrigBytes == snaps[i-1].OrigBytes && snaps[i].ReplyBytes == snaps[i-1].ReplyBytes {
			t.Errorf("Snapshot %d repeats unchanged counters: %+v", i, snaps[i])
		}
	}
}

// sendUDPBurst sends perWorker one-datagram UDP exchanges from each of
// workers goroutines, spread over the topology's pods, and returns the local
// addresses they used.
func sendUDPBurst(ctx context.Context, t *testing.T, topo *netnstest.Node, dst netip.AddrPort, workers, perWorker int) map[netip.AddrPort]bool {
	t.Helper()
	made := make([][]netip.AddrPort, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := topo.Pods[w%len(topo.Pods)]
			for range perWorker {
				local, err := pod.SendUDP(ctx, dst, 1, 10)
				if err != nil {
					errs <- err
					return
				}
				made[w] = append(made[w], local)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sources := make(map[netip.AddrPort]bool, workers*perWorker)
	for _, ws := range made {
		for _, a := range ws {
			sources[a] = true
		}
	}
	return sources
}

// flowKey tells flows apart by source and start: a source port may be
// reused once its first flow ended.
type flowKey struct {
	src   netip.AddrPort
	start time.Time
}

// endedFlows returns the records with End set of the flows to dst from
// sources, by flow.
func endedFlows(col *collector, dst netip.AddrPort, sources map[netip.AddrPort]bool) map[flowKey][]flow.Record {
	got := make(map[flowKey][]flow.Record)
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, r := range col.recs {
		if !r.End.IsZero() && r.Orig.Dst == dst && sources[r.Orig.Src] {
			k := flowKey{r.Orig.Src, r.Start}
			got[k] = append(got[k], r)
		}
	}
	return got
}

// TestCaptureOverflow overflows a tiny event socket buffer with a burst of
// short UDP flows and checks that the capture re-syncs, keeps working, and
// accounts for every flow: each has exactly one record with End set, either
// final (its DESTROY was seen) or lost (it vanished between dumps).
func TestCaptureOverflow(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	const timeout = 3 * time.Second
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 4, ConntrackTimeout: timeout})
	udp := netnstest.StartUDPServer(t, topo.Internet)
	tcp := netnstest.StartTCPServer(t, topo.Internet)
	col, m := startCapture(t, topo, Options{ReadBuffer: 4096, PlainReadBuffer: true, UnreliableEvents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	const perWorker, workers = 1000, 16
	dst := netip.AddrPortFrom(topo.Internet.IPv4, udp.Port())
	want := sendUDPBurst(ctx, t, topo, dst, workers, perWorker)
	t.Logf("Made %d UDP flows; overflows so far %v", workers*perWorker, metrictest.Value(t, m.Overflows))

	// A flow after the burst is still captured.
	tdst := netip.AddrPortFrom(topo.Internet.IPv4, tcp.Port())
	local, err := topo.Pods[0].SendTCP(ctx, tdst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	waitFinal(t, col, local, tdst)

	// Each flow must have exactly one record with End set: final, or lost
	// (with its last known counters).
	eventually(t, 30*time.Second, "a record with End set for every flow", func() bool {
		srcs := make(map[netip.AddrPort]bool)
		for k := range endedFlows(col, dst, want) {
			srcs[k.src] = true
		}
		return len(srcs) == len(want)
	})
	total := 0
	for k, rs := range endedFlows(col, dst, want) {
		total += len(rs)
		if len(rs) != 1 {
			t.Errorf("Flow from %s started %v has %d records with End set, want 1", k.src, k.start, len(rs))
		}
	}
	overflows, lost, resyncs := metrictest.Value(t, m.Overflows), metrictest.Value(t, m.LostFlows), metrictest.Value(t, m.Resyncs)
	t.Logf("Overflows %v, re-syncs %v, lost flows %v, late destroys %v, records %d (final %v, snapshot %v, lost %v)",
		overflows, resyncs, lost, metrictest.Value(t, m.Events.WithLabelValues("late_destroy")), total,
		metrictest.Value(t, m.Records.WithLabelValues(kindFinal)), metrictest.Value(t, m.Records.WithLabelValues(kindSnapshot)), metrictest.Value(t, m.Records.WithLabelValues(kindLost)))
	if overflows < 1 || resyncs < 1 {
		t.Errorf("Overflows = %v, re-syncs = %v; want at least 1 each with a 4 KiB buffer", overflows, resyncs)
	}
}

// TestCaptureReliableBurst overflows a small event socket with reliable
// DESTROY events (the default): thousands of short UDP flows expire together
// and are reaped in a burst (by the kernel's collector and the capture's
// dumps every 500 ms), more DESTROYs than the buffer holds. The kernel keeps
// the ones it could not deliver and sends them again, so the socket is not
// re-dialled and no flow is lost: each has exactly one final record.
func TestCaptureReliableBurst(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	topo := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 4, ConntrackTimeout: time.Second})
	udp := netnstest.StartUDPServer(t, topo.Internet)
	col, m := startCapture(t, topo, Options{ReadBuffer: 16 << 10, PlainReadBuffer: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const perWorker, workers = 500, 16
	dst := netip.AddrPortFrom(topo.Internet.IPv4, udp.Port())
	want := sendUDPBurst(ctx, t, topo, dst, workers, perWorker)
	// A source port reused within the timeout is the same flow (one more
	// datagram), so the datagrams the final records carry add up to those
	// sent.
	ended := func() (map[flowKey][]flow.Record, uint64) {
		got := endedFlows(col, dst, want)
		var packets uint64
		for _, rs := range got {
			for _, r := range rs {
				packets += r.OrigPackets
			}
		}
		return got, packets
	}
	sent := uint64(workers * perWorker)
	eventually(t, 45*time.Second, "final records carrying every datagram sent", func() bool {
		_, packets := ended()
		return packets >= sent
	})
	// Late duplicates, if any, would come within a few dumps.
	time.Sleep(time.Second)
	got, packets := ended()
	if packets != sent {
		t.Errorf("Final records carry %d datagrams, want the %d sent", packets, sent)
	}
	for k, rs := range got {
		if len(rs) != 1 {
			t.Errorf("Flow from %s started %v has %d records with End set, want 1: %+v", k.src, k.start, len(rs), rs)
		} else if r := rs[0]; r.OrigPackets == 0 || r.ReplyPackets != r.OrigPackets {
			t.Errorf("Flow from %s: %d/%d packets, want the exact counters of its DESTROY (n/n, each datagram echoed)", k.src, r.OrigPackets, r.ReplyPackets)
		}
	}
	overflows, lost, resyncs := metrictest.Value(t, m.Overflows), metrictest.Value(t, m.LostFlows), metrictest.Value(t, m.Resyncs)
	t.Logf("%d flows; overflows %v, re-syncs %v, lost %v, late destroys %v, final records %v",
		len(got), overflows, resyncs, lost, metrictest.Value(t, m.Events.WithLabelValues("late_destroy")), metrictest.Value(t, m.Records.WithLabelValues(kindFinal)))
	if overflows < 1 {
		t.Errorf("Overflows = %v, want at least 1 with a 16 KiB buffer (the test did not make a burst)", overflows)
	}
	if lost != 0 || resyncs != 0 {
		t.Errorf("Lost flows = %v, re-syncs = %v; want 0 with reliable DESTROY events", lost, resyncs)
	}
}

// TestCaptureCancel checks that Run returns nil on cancellation and leaves
// no goroutine behind.
func TestCaptureCancel(t *testing.T) {
	netnstest.RequireRoot(t)
	topo := netnstest.NewNode(t, netnstest.NodeOptions{})
	if err := EnableAccounting(topo.Node.Path); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	m := NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{NetNS: topo.Node.Path, Metrics: m}, func([]flow.Record) {}) }()
	eventually(t, 10*time.Second, "the initial dump", func() bool { return metrictest.Value(t, m.Dumps) >= 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancellation, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5 s after cancellation")
	}
	eventually(t, 5*time.Second, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestRunErrors checks the errors of a capture that cannot start.
func TestRunErrors(t *testing.T) {
	err := Run(context.Background(), Options{NetNS: "/nonexistent/netns"}, func([]flow.Record) {})
	if err == nil {
		t.Fatal("Run in a missing namespace returned nil")
	}
	if err := EnableAccounting("/nonexistent/netns"); err == nil {
		t.Fatal("EnableAccounting in a missing namespace returned nil")
	}
}
