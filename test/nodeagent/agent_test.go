package nodeagent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/agent/ipfix"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/archive"
	"github.com/planetkube/planetkube/internal/flow/archive/archivetls"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/store"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/testing/browsertest"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// tcpSYNOptions is the size of the options of a Linux SYN without TCP
// timestamps (MSS 4, SACK-permitted 2+2 NOPs, window scale 3+1 NOP); the
// test turns timestamps off in the pods so that every other segment has no
// options and the IP-level byte count follows from the payload.
const tcpSYNOptions = 12

// TestNodeAgent runs one agent binary on a node namespace with two sliver
// pods (two slices of two sites) and checks, in order: attribution and exact
// byte counts for TCP and UDP over IPv4 and IPv6 through masquerade; hostile
// queries; the page in a real browser; IP reuse; kill -9 durability; and the
// manager's cluster-wide lookup over two nodes.
func TestNodeAgent(t *testing.T) {
	e := setUp(t)
	since := time.Now()
	e.site("princeton", "codeen", "CoDeeN content distribution network")
	e.site("mit", "chord", "Chord DHT measurements")
	e.site("ethz", "probe", "Internet probe study")

	node := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 2, ConntrackTimeout: time.Second})
	for _, p := range node.Pods {
		if err := p.SetSysctl("net.ipv4.tcp_timestamps", "0"); err != nil {
			t.Fatal(err)
		}
	}
	started := since.Add(-time.Minute)
	codeenUID := e.sliver("princeton", "codeen", "node-a", node.Pods[0].IPv4, node.Pods[0].IPv6, started)
	chordUID := e.sliver("mit", "chord", "node-a", node.Pods[1].IPv4, node.Pods[1].IPv6, started)
	// The lookup API listens on a loopback address of its own so that a
	// second node's agent can use the same port (as on real nodes).
	// Node a also shapes its uplink (bwmon), with the budget's ledger in
	// its data folder.
	// The public page (the chart's nodeAgent.publicPage) is a second
	// listener of the same handler: the page test below reads it there.
	public := fmt.Sprintf("http://127.0.0.2:%d", freePort(t, "127.0.0.2"))
	args := []string{"--bandwidth", "--bandwidth-uplink=uplink", "--bandwidth-interval=500ms", "--public-listen-address=" + strings.TrimPrefix(public, "http://")}
	// Node a exports its flows as IPFIX to a real collector, when nfdump is
	// installed.
	col := startCollector(t)
	if col != nil {
		args = append(args, "--ipfix-collector=udp://"+col.addr, "--ipfix-observation-domain=1", "--ipfix-template-interval=1s")
	}
	// Node a seals a segment every 3 s and serves the sealed ones to the
	// archiver's ServiceAccount alone, over TLS with the certificate of the
	// archiver's Secret (made here as the archiver makes it; node b below
	// serves plain HTTP).
	archiveURL := fmt.Sprintf("https://127.0.0.2:%d", freePort(t, "127.0.0.2"))
	cas, err := archivetls.Ensure(e.ctx, e.k8s, "default", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	archiveTLS := archivetls.ClientConfig(cas)
	tlsDir := t.TempDir()
	tlsSecret := &corev1.Secret{}
	if err := e.k8s.Get(e.ctx, client.ObjectKey{Namespace: "default", Name: archivetls.SecretName}, tlsSecret); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{archivetls.KeyCert, archivetls.KeyCertPK} {
		if err := os.WriteFile(filepath.Join(tlsDir, k), tlsSecret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args = append(args, "--segment-age=3s", "--archive-listen-address="+strings.TrimPrefix(archiveURL, "https://"),
		"--archive-readers=system:serviceaccount:default:archiver", "--archive-tls-dir="+tlsDir)
	a := e.startAgent("node-a", node.Node.Path, "127.0.0.2", 0, args...)

	tcp := netnstest.StartTCPServer(t, node.Internet)
	udp := netnstest.StartUDPServer(t, node.Internet)
	inet4, inet6 := node.Internet.IPv4, node.Internet.IPv6
	// ctx bounds each subtest's traffic.
	var ctx context.Context
	sub := func(t *testing.T) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(e.ctx, 2*waitFor)
		t.Cleanup(cancel)
	}

	t.Run("flows are attributed with exact byte counts", func(t *testing.T) {
		sub(t)
		const payload = 100_000
		sent, err := node.Pods[0].SendTCPCounted(ctx, netip.AddrPortFrom(inet4, tcp.Port()), payload)
		if err != nil {
			t.Fatal(err)
		}
		src := sent.Local
		row := flowFrom(t, a.lookup, since, inet4, src)
		checkSliver(t, row, "plc.princeton.codeen", "princeton-codeen/codeen-node-a", codeenUID)
		if row.Description != "CoDeeN content distribution network" || row.URL != "https://princeton.example.org/codeen" ||
			strings.Join(row.Contacts, ",") != "pi@princeton.example.org,tech@princeton.example.org" {
			t.Errorf("Slice details = %q, %q, %q", row.Description, row.URL, row.Contacts)
		}
		if row.Proto != 6 || row.Node != "node-a" {
			t.Errorf("proto %d node %q, want 6 node-a", row.Proto, row.Node)
		}
		// Masquerade: the reply goes to the node's uplink address.
		if want := netip.AddrPortFrom(node.Node.IPv4, 0).Addr().String(); !strings.HasPrefix(row.ReplyDst, want+":") {
			t.Errorf("Reply destination %s, want the node's address %s", row.ReplyDst, want)
		}
		hdr := uint64(netnstest.IPv4Header + netnstest.TCPHeader)
		// Conntrack counts retransmitted copies too.
		if got := row.OrigBytes - row.OrigPackets*hdr - tcpSYNOptions; got != payload+sent.RetransBytes {
			t.Errorf("TCP: %d bytes in %d packets carry %d payload bytes, want %d (%d retransmitted)",
				row.OrigBytes, row.OrigPackets, got, payload+sent.RetransBytes, sent.RetransBytes)
		}

		const count, size = 5, 300
		usrc, err := node.Pods[1].SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), count, size)
		if err != nil {
			t.Fatal(err)
		}
		urow := flowFrom(t, a.lookup, since, inet4, usrc)
		checkSliver(t, urow, "plc.mit.chord", "mit-chord/chord-node-a", chordUID)
		want := uint64(count * (netnstest.IPv4Header + netnstest.UDPHeader + size))
		if urow.Proto != 17 || urow.OrigPackets != count || urow.OrigBytes != want || urow.ReplyPackets != count || urow.ReplyBytes != want {
			t.Errorf("UDP: proto %d, %d/%d bytes/packets sent and %d/%d received, want %d/%d each way",
				urow.Proto, urow.OrigBytes, urow.OrigPackets, urow.ReplyBytes, urow.ReplyPackets, want, count)
		}

		sent6, err := node.Pods[1].SendTCPCounted(ctx, netip.AddrPortFrom(inet6, tcp.Port()), payload)
		if err != nil {
			t.Fatal(err)
		}
		src6 := sent6.Local
		row6 := flowFrom(t, a.lookup, since, inet6, src6)
		checkSliver(t, row6, "plc.mit.chord", "mit-chord/chord-node-a", chordUID)
		hdr6 := uint64(netnstest.IPv6Header + netnstest.TCPHeader)
		if got := row6.OrigBytes - row6.OrigPackets*hdr6 - tcpSYNOptions; got != payload+sent6.RetransBytes {
			t.Errorf("TCP over IPv6: %d bytes in %d packets carry %d payload bytes, want %d (%d retransmitted)",
				row6.OrigBytes, row6.OrigPackets, got, payload+sent6.RetransBytes, sent6.RetransBytes)
		}
		if !strings.HasPrefix(row6.ReplyDst, "["+node.Node.IPv6.String()+"]:") {
			t.Errorf("IPv6 reply destination %s, want the node's address %s", row6.ReplyDst, node.Node.IPv6)
		}

		// The slice query finds the same flows.
		code, r, body, err := getFlows(a.lookup, window(since, url.Values{"slice": {"plc.mit.chord"}}))
		if err != nil || code != http.StatusOK {
			t.Fatalf("Slice query: %d %s %v", code, body, err)
		}
		if n := countFrom(r.Flows, usrc, src6); n != 2 {
			t.Errorf("The slice query returned %d of chord's 2 flows: %+v", n, r.Flows)
		}
	})

	t.Run("each slice's bytes count against its budget", func(t *testing.T) {
		sub(t)
		usage := func() (codeen, chord budget.Usage, err error) {
			ledger, err := budget.Load(filepath.Join(a.dataDir, "bandwidth.json"))
			if err != nil {
				return codeen, chord, err
			}
			codeen, okA := ledger.Usage("plc.princeton.codeen")
			chord, okB := ledger.Usage("plc.mit.chord")
			if !okA || !okB {
				return codeen, chord, fmt.Errorf("the ledger lists %v, want both slices", ledger.Slices())
			}
			return codeen, chord, nil
		}
		var codeen0, chord0 budget.Usage
		eventually(t, "both slices to have their classes", func() (err error) {
			codeen0, chord0, err = usage()
			return err
		})
		const payload = 100_000
		if _, err := node.Pods[0].SendTCP(ctx, netip.AddrPortFrom(inet4, tcp.Port()), payload); err != nil {
			t.Fatal(err)
		}
		if _, err := node.Pods[1].SendTCP(ctx, netip.AddrPortFrom(inet6, tcp.Port()), payload); err != nil {
			t.Fatal(err)
		}
		var codeen, chord budget.Usage
		eventually(t, "the ledger to count what each sent", func() (err error) {
			if codeen, chord, err = usage(); err != nil {
				return err
			}
			if codeen.Bytes-codeen0.Bytes < payload || chord.Bytes-chord0.Bytes < payload {
				return fmt.Errorf("codeen %d more bytes, chord %d, want at least %d each", codeen.Bytes-codeen0.Bytes, chord.Bytes-chord0.Bytes, payload)
			}
			return nil
		})
		// Headers (and any retransmission) add a few percent, not more.
		if codeen.Bytes-codeen0.Bytes > payload*12/10 || chord.Bytes-chord0.Bytes > payload*12/10 {
			t.Errorf("codeen counted %d bytes, chord %d: more than they sent", codeen.Bytes-codeen0.Bytes, chord.Bytes-chord0.Bytes)
		}
	})

	t.Run("malformed and hostile queries get 400", func(t *testing.T) {
		sub(t)
		before := allFlows(t, a.lookup, since, inet4)
		for _, raw := range []string{
			"ip=not-an-ip", "ip=10.0.0.1%25eth0", "slice=%3Cscript%3Ealert(1)%3C/script%3E", "ip=1.2.3.4&ip=5.6.7.8",
			"ip=1.2.3.4&window=-5m", "ip=1.2.3.4&window=100000h", "ip=1.2.3.4&time=10000-01-01T00:00:00Z",
			"ip=1.2.3.4&from=2026-01-01T00:00:00Z", "ip=1.2.3.4&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
			"%zz", "ip=" + strings.Repeat("1", 5000), "slice=plc.x.y%27%20OR%201=1--", "",
		} {
			resp, err := http.Get(a.lookup + "/api/v1/flows?" + raw)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("Query %.60q: HTTP %d, want 400", raw, resp.StatusCode)
			}
		}
		for _, method := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
			req, _ := http.NewRequest(method, a.lookup+"/api/v1/flows?ip="+inet4.String(), strings.NewReader("x"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s: HTTP %d, want 405", method, resp.StatusCode)
			}
		}
		a.waitReady()
		if after := allFlows(t, a.lookup, since, inet4); len(after) != len(before) {
			t.Errorf("The bad queries changed the answer: %d flows before, %d after", len(before), len(after))
		}
	})

	t.Run("the lookup page renders in Chromium", func(t *testing.T) {
		sub(t)
		browsertest.Require(t)
		page := public + "/?" + window(since, url.Values{"ip": {inet4.String()}}).Encode()
		dom, err := browsertest.DumpDOM(ctx, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"plc.princeton.codeen", "plc.mit.chord", "CoDeeN content distribution network", " to " + inet4.String() + " came from slice",
			"https://princeton.example.org/codeen", "pi@princeton.example.org", "princeton-codeen/codeen-node-a", "node-a"} {
			if !strings.Contains(dom, want) {
				t.Errorf("The rendered page lacks %q", want)
			}
		}
		if n := strings.Count(dom, "<tr"); n < 3 {
			t.Errorf("The rendered page has %d table rows, want a header and at least 2 flows", n)
		}
	})

	t.Run("flows reach an IPFIX collector with their slice", func(t *testing.T) {
		sub(t)
		if col == nil {
			skiplog.Skip(t, "nfcapd is not installed (apt-get install nfdump): the IPFIX export is not checked against a collector")
		}
		const count, size = 3, 200
		src, err := node.Pods[1].SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), count, size)
		if err != nil {
			t.Fatal(err)
		}
		row := flowFrom(t, a.lookup, since, inet4, src)
		// The record carries the slice's number (and its full name in an
		// element nfdump skips); the options records that name the number
		// are sent with the templates (every second here), so every file
		// nfcapd starts learns them.
		chord := ipfix.SliceID("plc.mit.chord")
		want := fmt.Sprintf("17|%s|%d|%s|%d|%d|%d|%d|", src.Addr(), src.Port(), inet4, udp.Port(), row.OrigPackets, row.OrigBytes, chord)
		named := fmt.Sprintf("|%d|plc.mit.chord\n", chord)
		eventually(t, "nfdump to read the flow back, and the slice's name", func() error {
			got, err := col.records(ctx)
			if err != nil {
				return err
			}
			if !strings.Contains(got, want) || !strings.Contains(got, named) {
				return fmt.Errorf("nfdump reads\n%s\nwithout %q or %q", got, want, named)
			}
			return nil
		})
	})

	t.Run("only the archiver downloads the sealed segments, whole", func(t *testing.T) {
		sub(t)
		for _, name := range []string{"archiver", "stranger"} {
			if err := e.k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
				t.Fatal(err)
			}
		}
		dir := t.TempDir()
		fetcher := &archive.Fetcher{Dir: dir, Tokens: &archive.ServiceAccountTokens{Client: e.k8s, Namespace: "default", Name: "archiver"}, TLS: archiveTLS}
		eventually(t, "a sealed segment archived", func() error {
			res, err := fetcher.Sync(ctx, "node-a", archiveURL)
			if err == nil && res.Fetched == 0 {
				err = fmt.Errorf("nothing sealed yet: %+v", res)
			}
			return err
		})
		seqs, err := archive.Archived(filepath.Join(dir, "node-a"))
		if err != nil || len(seqs) == 0 {
			t.Fatalf("archived %v, %v", seqs, err)
		}
		for _, seq := range seqs {
			data, err1 := os.ReadFile(filepath.Join(dir, "node-a", store.SegmentFileName(seq, "log")))
			idx, err2 := os.ReadFile(filepath.Join(dir, "node-a", store.SegmentFileName(seq, "idx")))
			if info, err := store.Verify(seq, data, idx); err1 != nil || err2 != nil || err != nil || info.Records == 0 {
				t.Errorf("archived segment %d: %+v, %v %v %v", seq, info, err1, err2, err)
			}
		}
		stranger := &archive.Fetcher{Dir: t.TempDir(), Tokens: &archive.ServiceAccountTokens{Client: e.k8s, Namespace: "default", Name: "stranger"}, TLS: archiveTLS}
		if _, err := stranger.Sync(ctx, "node-a", archiveURL); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("a stranger's ServiceAccount: %v, want 403", err)
		}
		overTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: archiveTLS}}
		resp, err := overTLS.Get(archiveURL + segments.ListPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: HTTP %d, want 401", resp.StatusCode)
		}
		// Plain HTTP is not served on the TLS port.
		if resp, err := http.Get("http://" + strings.TrimPrefix(archiveURL, "https://") + segments.ListPath); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP to the TLS port: HTTP %d", resp.StatusCode)
			}
		}
	})

	t.Run("a reused IP keeps old flows with the old pod", func(t *testing.T) {
		sub(t)
		old, err := node.Pods[0].SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		flowFrom(t, a.lookup, since, inet4, old)
		var pod corev1.Pod
		if err := e.k8s.Get(e.ctx, client.ObjectKey{Namespace: "princeton-codeen", Name: "codeen-node-a"}, &pod); err != nil {
			t.Fatal(err)
		}
		if err := e.k8s.Delete(e.ctx, &pod, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		newNS := node.ReplacePod(0)
		if err := newNS.SetSysctl("net.ipv4.tcp_timestamps", "0"); err != nil {
			t.Fatal(err)
		}
		probeUID := e.sliver("ethz", "probe", "node-a", newNS.IPv4, newNS.IPv6, time.Now())
		// The new pod's IP counts from when the agent sees it: send until a
		// flow is attributed to it (flows in between are node traffic).
		var newSrc netip.AddrPort
		eventually(t, "a flow of the new pod attributed to it", func() error {
			src, err := newNS.SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), 1, 100)
			if err != nil {
				return err
			}
			row := flowFrom(t, a.lookup, since, inet4, src)
			if row.PodUID != probeUID {
				return fmt.Errorf("flow from %s attributed to %q", src, row.Slice)
			}
			newSrc = src
			return nil
		})
		checkSliver(t, flowFrom(t, a.lookup, since, inet4, newSrc), "plc.ethz.probe", "ethz-probe/probe-node-a", probeUID)
		checkSliver(t, flowFrom(t, a.lookup, since, inet4, old), "plc.princeton.codeen", "princeton-codeen/codeen-node-a", codeenUID)
	})

	t.Run("kill -9 loses no committed record", func(t *testing.T) {
		sub(t)
		// Traffic flows the whole time: short UDP exchanges from chord, 50 a second.
		trafficCtx, stopTraffic := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-trafficCtx.Done():
					return
				case <-tick.C:
					_, _ = node.Pods[1].SendUDP(trafficCtx, netip.AddrPortFrom(inet4, udp.Port()), 1, 64)
				}
			}
		}()
		defer func() { stopTraffic(); wg.Wait() }()
		killSince := time.Now()
		var committed []lookup.Row
		eventually(t, "at least 50 committed flows", func() error {
			committed = allFlows(t, a.lookup, killSince, inet4)
			if len(committed) < 50 {
				return fmt.Errorf("%d flows so far", len(committed))
			}
			return nil
		})
		a.kill()
		a.start()
		after := map[string]bool{}
		for _, r := range allFlows(t, a.lookup, killSince, inet4) {
			after[key(r)] = true
		}
		missing := 0
		for _, r := range committed {
			if !after[key(r)] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%d of the %d flows answered before kill -9 are gone after the restart", missing, len(committed))
		}
		// And the restarted agent records new flows.
		stopTraffic()
		wg.Wait()
		lastSince := time.Now()
		src, err := node.Pods[1].SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), 1, 64)
		if err != nil {
			t.Fatal(err)
		}
		checkSliver(t, flowFrom(t, a.lookup, lastSince, inet4, src), "plc.mit.chord", "mit-chord/chord-node-a", chordUID)
	})

	t.Run("the manager's lookup merges every node's flows", func(t *testing.T) {
		sub(t)
		nodeB := netnstest.NewNode(t, netnstest.NodeOptions{Pods: 1, ConntrackTimeout: time.Second})
		port := mustPort(t, a.lookup)
		// Node b seals every 2 s (its pruner seals an idle segment) and
		// serves its segments to the archiver.
		archiveB := fmt.Sprintf("http://127.0.0.3:%d", freePort(t, "127.0.0.3"))
		b := e.startAgent("node-b", nodeB.Node.Path, "127.0.0.3", port, "--segment-age=2s", "--prune-interval=1s",
			"--archive-listen-address="+strings.TrimPrefix(archiveB, "http://"), "--archive-readers=system:serviceaccount:default:archiver")
		// Node b's pods reuse node a's pod addresses: same pod CIDR layout.
		chordB := e.sliver("mit", "chord", "node-b", nodeB.Pods[0].IPv4, netip.Addr{}, time.Now().Add(-time.Minute))
		inetB := netnstest.StartUDPServer(t, nodeB.Internet)
		e.agentPod("node-a", "127.0.0.2")
		e.agentPod("node-b", "127.0.0.3")
		mgrSince := time.Now()
		srcA, err := node.Pods[1].SendUDP(ctx, netip.AddrPortFrom(inet4, udp.Port()), 1, 50)
		if err != nil {
			t.Fatal(err)
		}
		flowFrom(t, a.lookup, mgrSince, inet4, srcA)
		srcB, err := nodeB.Pods[0].SendUDP(ctx, netip.AddrPortFrom(nodeB.Internet.IPv4, inetB.Port()), 2, 50)
		if err != nil {
			t.Fatal(err)
		}
		flowFrom(t, b.lookup, mgrSince, nodeB.Internet.IPv4, srcB)

		o := managerOptions(t, port)
		h, err := manager.FlowLookupHandler(e.k8s, e.k8s, o)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptestServer(t, h)
		code, r, body, err := getFlows(srv, window(mgrSince, url.Values{"slice": {"plc.mit.chord"}}))
		if err != nil || code != http.StatusOK {
			t.Fatalf("Cluster-wide query: %d %s %v", code, body, err)
		}
		nodes := map[string]int{}
		for _, row := range r.Flows {
			nodes[row.Node]++
			if row.Slice != "plc.mit.chord" || row.Description != "Chord DHT measurements" {
				t.Errorf("Cluster-wide row %+v is not chord's with its description", row)
			}
			if row.Node == "node-b" && row.PodUID != chordB {
				t.Errorf("Node b's row names pod %q, want %q", row.PodUID, chordB)
			}
		}
		if nodes["node-a"] == 0 || nodes["node-b"] == 0 || len(r.Errors) != 0 {
			t.Errorf("Cluster-wide answer has flows per node %v and errors %v; want both nodes, no errors", nodes, r.Errors)
		}
		// Each agent says how far back its store goes: its retention, and
		// its oldest record, no later than the flows it just returned.
		if len(r.Nodes) != 2 {
			t.Errorf("Cluster-wide answer's nodes %+v; want node-a's and node-b's holdings", r.Nodes)
		}
		earliest := map[string]time.Time{}
		for _, row := range r.Flows {
			if t0, ok := earliest[row.Node]; !ok || row.Start.Before(t0) {
				earliest[row.Node] = row.Start
			}
		}
		for _, h := range r.Nodes {
			if h.RetentionSeconds != int64(store.DefaultRetention/time.Second) || h.RecordsSince == nil || h.RecordsSince.After(earliest[h.Node]) {
				t.Errorf("Holding %+v: want the default retention and an oldest record no later than the node's earliest flow here (%v)", h, earliest[h.Node])
			}
		}
		for i := 1; i < len(r.Flows); i++ {
			if r.Flows[i].Start.Before(r.Flows[i-1].Start) {
				t.Fatalf("Cluster-wide rows are not ordered by start at %d", i)
			}
		}
		// A node that is down is reported, and the others still answer.
		b.kill()
		code, r, body, err = getFlows(srv, window(mgrSince, url.Values{"slice": {"plc.mit.chord"}}))
		if err != nil || code != http.StatusOK {
			t.Fatalf("Cluster-wide query with node b down: %d %s %v", code, body, err)
		}
		if len(r.Errors) != 1 || r.Errors[0].Node != "node-b" || len(r.Flows) == 0 {
			t.Errorf("With node b down: %d flows, errors %v; want node a's flows and one error for node-b", len(r.Flows), r.Errors)
		}

		// The archive: node b's sealed segments are downloaded, then its
		// store is wiped (a reinstalled node); the cluster-wide lookup,
		// asking the archive too, still finds node b's flow, from the
		// archive, and node a's from node a, once each.
		b.start()
		if err := e.k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "archiver"}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		archiveDir := t.TempDir()
		fetcher := &archive.Fetcher{Dir: archiveDir, Tokens: &archive.ServiceAccountTokens{Client: e.k8s, Namespace: "default", Name: "archiver"}}
		reader := &archive.Reader{Dir: archiveDir, Retention: archive.DefaultRetention, Every: time.Nanosecond}
		srcQuery := flow.Query{Dst: nodeB.Internet.IPv4, From: mgrSince.Add(-time.Minute), To: time.Now().Add(time.Hour), Limit: 100}
		eventually(t, "node b's flow archived", func() error {
			if _, err := fetcher.Sync(ctx, "node-b", archiveB); err != nil {
				return err
			}
			recs, err := reader.Query(ctx, srcQuery)
			if err != nil {
				return err
			}
			if countFrom(rowsOf(recs), srcB) == 0 {
				return fmt.Errorf("not yet in a sealed segment (%d records archived)", len(recs))
			}
			return nil
		})
		b.kill()
		if err := os.RemoveAll(b.dataDir); err != nil {
			t.Fatal(err)
		}
		b.start()
		o.ArchiveURL = httptestServer(t, lookup.NewHandler(reader, nil, lookup.Options{RatePerSecond: 1e6, Burst: 1 << 20}))
		h, err = manager.FlowLookupHandler(e.k8s, e.k8s, o)
		if err != nil {
			t.Fatal(err)
		}
		withArchive := httptestServer(t, h)
		code, r, body, err = getFlows(withArchive, window(mgrSince, url.Values{"slice": {"plc.mit.chord"}}))
		if err != nil || code != http.StatusOK {
			t.Fatalf("Cluster-wide query with the archive: %d %s %v", code, body, err)
		}
		seen := map[string]int{}
		for _, row := range r.Flows {
			seen[row.Node+"/"+row.Source]++
			if row.Node == "node-b" && row.Source != flow.SourceArchive {
				t.Errorf("A flow of node b, whose store was wiped, answered by the node: %+v", row)
			}
		}
		// Each flow told by its source and destination: the window holds
		// earlier subtests' flows too, one of which may have had the
		// same ephemeral source port.
		fromB := countFlow(r.Flows, srcB, netip.AddrPortFrom(nodeB.Internet.IPv4, inetB.Port()))
		fromA := countFlow(r.Flows, srcA, netip.AddrPortFrom(inet4, udp.Port()))
		if fromB != 1 || fromA != 1 || seen["node-a/archive"] != 0 || len(r.Errors) != 0 || r.ArchiveError != "" {
			t.Errorf("With node b wiped: node b's flow %d times, node a's %d times; flows by node/source %v, errors %v %q; want node b's flow once from the archive, node a's once from node a",
				fromB, fromA, seen, r.Errors, r.ArchiveError)
		}
	})
}

func checkSliver(t *testing.T, row lookup.Row, slice, sliver, uid string) {
	t.Helper()
	if row.Slice != slice || row.Sliver != sliver || row.PodUID != uid {
		t.Errorf("Flow %s -> %s attributed to %q %q %q, want %q %q %q", row.OrigSrc, row.OrigDst, row.Slice, row.Sliver, row.PodUID, slice, sliver, uid)
	}
}

// countFlow counts the rows of the flow from src to dst.
func countFlow(rows []lookup.Row, src, dst netip.AddrPort) int {
	n := 0
	for _, r := range rows {
		if r.OrigSrc == src.String() && r.OrigDst == dst.String() {
			n++
		}
	}
	return n
}

func countFrom(rows []lookup.Row, srcs ...netip.AddrPort) int {
	n := 0
	for _, r := range rows {
		for _, s := range srcs {
			if r.OrigSrc == s.String() {
				n++
			}
		}
	}
	return n
}

func allFlows(t *testing.T, base string, since time.Time, dst netip.Addr) []lookup.Row {
	t.Helper()
	code, r, body, err := getFlows(base, window(since, url.Values{"ip": {dst.String()}}))
	if err != nil || code != http.StatusOK {
		t.Fatalf("Query: %d %s %v", code, body, err)
	}
	return r.Flows
}

// key identifies a flow across snapshots: its start and original tuple.
func key(r lookup.Row) string {
	return fmt.Sprintf("%s %d %s %s", r.Start.UTC().Format(time.RFC3339Nano), r.Proto, r.OrigSrc, r.OrigDst)
}

// rowsOf makes records rows, for countFrom.
func rowsOf(recs []flow.Record) []lookup.Row {
	rows := make([]lookup.Row, len(recs))
	for i, r := range recs {
		rows[i] = lookup.Row{OrigSrc: r.Orig.Src.String()}
	}
	return rows
}
