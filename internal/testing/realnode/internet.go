package realnode

import (
	"fmt"
	"path/filepath"

	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// Internet is a network namespace that stands for the internet beyond a
// node: one link to the node (its uplink, inet0 there), 10.202.I.0/30 with
// the node at .1 and the internet at .2. What slivers send there leaves the
// node by that link, masqueraded by the node's CNI bridge as it would be
// to a real destination, and never leaves the machine.
type Internet struct {
	// IP is the internet's address, where its servers listen.
	IP string
	// NodeIP is the node's end of the link; Uplink the link's name in the node.
	NodeIP, Uplink string
	// NetNS names the namespace.
	NetNS string

	node  *Node
	procs []*emulator.Process
}

// Internet makes the node's internet namespace (once; later calls return it).
func (n *Node) Internet() (*Internet, error) {
	if n.internet != nil {
		return n.internet, nil
	}
	in := &Internet{
		IP: fmt.Sprintf("10.202.%d.2", n.Index), NodeIP: fmt.Sprintf("10.202.%d.1", n.Index),
		Uplink: "inet0", NetNS: n.internetNS(), node: n,
	}
	for _, s := range [][]string{
		{"netns", "add", in.NetNS},
		{"-n", n.NetNS, "link", "add", in.Uplink, "type", "veth", "peer", "name", "eth0", "netns", in.NetNS},
		{"-n", n.NetNS, "addr", "add", in.NodeIP + "/30", "dev", in.Uplink},
		{"-n", n.NetNS, "link", "set", in.Uplink, "up"},
		{"-n", in.NetNS, "link", "set", "lo", "up"},
		{"-n", in.NetNS, "addr", "add", in.IP + "/30", "dev", "eth0"},
		{"-n", in.NetNS, "link", "set", "eth0", "up"},
	} {
		if _, err := run("ip", s...); err != nil {
			_, _ = run("ip", "netns", "del", in.NetNS)
			return nil, err
		}
	}
	n.internet = in
	return in, nil
}

func (n *Node) internetNS() string { return fmt.Sprintf("pk-inet-%d", n.Index) }

// Start runs binary with args in the internet's namespace until Stop; its
// output goes to the node's logs folder as name.log.
func (in *Internet) Start(name, binary string, args ...string) (*emulator.Process, error) {
	nsenter, err := lookPath("nsenter")
	if err != nil {
		return nil, err
	}
	p, err := emulator.StartProcess(name, in.LogPath(name), nsenter,
		append([]string{"--net=/var/run/netns/" + in.NetNS, "--", binary}, args...), nil)
	if err != nil {
		return nil, err
	}
	in.procs = append(in.procs, p)
	return p, nil
}

// stop kills the internet's processes and removes its namespace (and with
// it the link).
func (in *Internet) stop() {
	for _, p := range in.procs {
		_ = p.Kill()
	}
	_, _ = run("ip", "netns", "del", in.NetNS)
}

// LogPath is where the output of the process Start named name goes.
func (in *Internet) LogPath(name string) string {
	return filepath.Join(in.node.WorkDir, "logs", name+".log")
}
