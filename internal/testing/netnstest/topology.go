package netnstest

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Addresses of the topology. They are the same in every test: each test has
// its own namespaces, so parallel tests do not see each other's addresses.
var (
	// NodeUplinkIPv4 and NodeUplinkIPv6 are the node's uplink addresses,
	// the source of masqueraded pod traffic (the reply tuple's destination).
	NodeUplinkIPv4 = netip.MustParseAddr("203.0.113.1")
	NodeUplinkIPv6 = netip.MustParseAddr("2001:db8::1")
	// InternetIPv4 and InternetIPv6 are the internet host's addresses.
	InternetIPv4 = netip.MustParseAddr("203.0.113.2")
	InternetIPv6 = netip.MustParseAddr("2001:db8::2")
	// PodCIDRv4 and PodCIDRv6 hold every pod address: pod i has
	// 10.244.i.2/24 and fd00:10:244:i::2/64, with the node at .1 and ::1.
	PodCIDRv4 = netip.MustParsePrefix("10.244.0.0/16")
	PodCIDRv6 = netip.MustParsePrefix("fd00:10:244::/48")
)

// PodIPv4 returns the IPv4 address of pod i (0 ≤ i < 256).
func PodIPv4(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(i), 2}) }

// PodIPv6 returns the IPv6 address of pod i (0 ≤ i < 65536).
func PodIPv6(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:10:244:%x::2", i))
}

// NodeOptions shape a topology.
type NodeOptions struct {
	// Pods is the number of pod namespaces (at most 256).
	Pods int
	// ConntrackTimeout, when positive, shortens in the node namespace the
	// conntrack timeouts of flows that are over or never answered (TCP
	// TIME_WAIT, CLOSE..., UDP, ICMP) to this (whole seconds, at least 1),
	// so that tests see their DESTROY events soon. Established TCP flows
	// keep the default timeout.
	ConntrackTimeout time.Duration
}

// Node is a topology modelling a Kubernetes node: Node stands for the host
// network namespace (where the agent runs), Pods hang off it by veth pairs
// (pod i's veth is named "pod<i>" on the node side and "eth0" in the pod),
// and Internet sits behind the node's "uplink" veth. The node forwards,
// masquerades pod traffic that leaves by the uplink (IPv4 and IPv6), and
// tracks flows with conntrack (a `ct state` rule in its forward chain).
type Node struct {
	// Node, Internet and Pods are the namespaces. Node's addresses are its
	// uplink addresses.
	Node, Internet *NS
	Pods           []*NS

	t       testing.TB
	prefix  string
	podGens []int
}

// nodeRuleset is the node's nftables ruleset.
const nodeRuleset = `table inet planetkube_netnstest {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ct state new accept
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "uplink" ip saddr 10.244.0.0/16 masquerade
		oifname "uplink" ip6 saddr fd00:10:244::/48 masquerade
	}
}
`

// NewNode builds a topology; t.Cleanup deletes its namespaces.
func NewNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	if opts.Pods < 0 || opts.Pods > 256 {
		t.Fatalf("NodeOptions.Pods = %d, want 0 to 256", opts.Pods)
	}
	n := &Node{t: t, prefix: "pk" + randomSuffix()}
	var err error
	if n.Node, err = n.newNS("node"); err != nil {
		t.Fatalf("Creating the node namespace: %v", err)
	}
	n.Node.IPv4, n.Node.IPv6 = NodeUplinkIPv4, NodeUplinkIPv6
	if n.Internet, err = n.newNS("inet"); err != nil {
		t.Fatalf("Creating the internet namespace: %v", err)
	}
	n.Internet.IPv4, n.Internet.IPv6 = InternetIPv4, InternetIPv6
	if err := n.setupNode(opts); err != nil {
		t.Fatalf("Setting up the node namespace: %v", err)
	}
	for i := range opts.Pods {
		pod, err := n.addPod(i)
		if err != nil {
			t.Fatalf("Creating pod %d: %v", i, err)
		}
		n.Pods = append(n.Pods, pod)
		n.podGens = append(n.podGens, 0)
	}
	return n
}

// newNS creates a namespace named after the topology, deleted by t.Cleanup.
func (n *Node) newNS(role string) (*NS, error) {
	ns, err := newNS(n.prefix + "-" + role)
	if err != nil {
		return nil, err
	}
	n.t.Cleanup(func() {
		if err := ns.delete(); err != nil {
			n.t.Errorf("Deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns, nil
}

// setupNode wires the uplink, the sysctls and the ruleset of the node.
func (n *Node) setupNode(opts NodeOptions) error {
	ctx := context.Background()
	if err := run(ctx, nil, "ip", "-n", n.Node.Name, "link", "add", "uplink", "type", "veth",
		"peer", "name", "eth0", "netns", n.Internet.Name); err != nil {
		return err
	}
	nodeCmds := []string{
		"addr add " + NodeUplinkIPv4.String() + "/24 dev uplink",
		"addr add " + NodeUplinkIPv6.String() + "/64 dev uplink nodad",
		"link set uplink up",
	}
	inetCmds := []string{
		"addr add " + InternetIPv4.String() + "/24 dev eth0",
		"addr add " + InternetIPv6.String() + "/64 dev eth0 nodad",
		"link set eth0 up",
		"route add default via " + NodeUplinkIPv4.String(),
		"route add ::/0 via " + NodeUplinkIPv6.String(),
	}
	if err := ipBatch(n.Node, nodeCmds); err != nil {
		return err
	}
	if err := ipBatch(n.Internet, inetCmds); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
	} {
		if err := n.Node.SetSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := run(ctx, []byte(nodeRuleset), "ip", "netns", "exec", n.Node.Name, "nft", "-f", "-"); err != nil {
		return err
	}
	if opts.ConntrackTimeout > 0 {
		secs := strconv.Itoa(max(1, int(opts.ConntrackTimeout.Round(time.Second)/time.Second)))
		for _, key := range []string{
			"tcp_timeout_time_wait", "tcp_timeout_close", "tcp_timeout_close_wait",
			"tcp_timeout_fin_wait", "tcp_timeout_last_ack", "tcp_timeout_syn_sent",
			"tcp_timeout_syn_recv", "tcp_timeout_unacknowledged",
			"udp_timeout", "udp_timeout_stream", "icmp_timeout", "icmpv6_timeout",
		} {
			if err := n.Node.SetSysctl("net.netfilter.nf_conntrack_"+key, secs); err != nil {
				return err
			}
		}
	}
	return nil
}

// addPod creates the namespace of pod i (generation n.podGens[i]) and its
// veth pair, with pod i's addresses.
func (n *Node) addPod(i int) (*NS, error) {
	role := fmt.Sprintf("pod%d", i)
	if i < len(n.podGens) && n.podGens[i] > 0 {
		role += fmt.Sprintf("g%d", n.podGens[i])
	}
	pod, err := n.newNS(role)
	if err != nil {
		return nil, err
	}
	pod.IPv4, pod.IPv6 = PodIPv4(i), PodIPv6(i)
	gw4 := netip.AddrFrom4([4]byte{10, 244, byte(i), 1})
	gw6 := netip.MustParseAddr(fmt.Sprintf("fd00:10:244:%x::1", i))
	dev := fmt.Sprintf("pod%d", i)
	if err := run(context.Background(), nil, "ip", "-n", n.Node.Name, "link", "add", dev, "type", "veth",
		"peer", "name", "eth0", "netns", pod.Name); err != nil {
		return nil, err
	}
	if err := ipBatch(n.Node, []string{
		"addr add " + gw4.String() + "/24 dev " + dev,
		"addr add " + gw6.String() + "/64 dev " + dev + " nodad",
		"link set " + dev + " up",
	}); err != nil {
		return nil, err
	}
	if err := ipBatch(pod, []string{
		"addr add " + pod.IPv4.String() + "/24 dev eth0",
		"addr add " + pod.IPv6.String() + "/64 dev eth0 nodad",
		"link set eth0 up",
		"route add default via " + gw4.String(),
		"route add ::/0 via " + gw6.String(),
	}); err != nil {
		return nil, err
	}
	return pod, nil
}

// ReplacePod deletes pod i's namespace and veth pair and creates a new pod
// namespace (another name) that gets the same addresses: the IP reuse of a
// pod deleted and another scheduled. It returns the new namespace, also
// stored in n.Pods[i].
func (n *Node) ReplacePod(i int) *NS {
	n.t.Helper()
	if i < 0 || i >= len(n.Pods) {
		n.t.Fatalf("ReplacePod(%d): the topology has %d pods", i, len(n.Pods))
	}
	// Delete the veth first: a socket still open in the old namespace keeps
	// the namespace, and so its veth, alive after `ip netns delete`.
	if err := run(context.Background(), nil, "ip", "-n", n.Node.Name, "link", "del", fmt.Sprintf("pod%d", i)); err != nil {
		n.t.Fatalf("Deleting pod %d's veth: %v", i, err)
	}
	if err := n.Pods[i].delete(); err != nil {
		n.t.Fatalf("Deleting pod %d's namespace: %v", i, err)
	}
	n.podGens[i]++
	pod, err := n.addPod(i)
	if err != nil {
		n.t.Fatalf("Re-creating pod %d: %v", i, err)
	}
	n.Pods[i] = pod
	return pod
}

// ipBatch runs ip commands, one per line, in the namespace.
func ipBatch(ns *NS, cmds []string) error {
	return run(context.Background(), []byte(strings.Join(cmds, "\n")+"\n"), "ip", "-n", ns.Name, "-batch", "-")
}
