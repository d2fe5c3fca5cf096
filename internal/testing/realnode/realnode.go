// Package realnode joins real nodes to an emulated cluster (emulator with
// Options.RealNodes): each a kubelet, kube-proxy and containerd with runc
// and Debian's CNI plugins, in a network namespace of its own, so that pods
// on it really run while kwok's fake nodes stand beside it. The recipe and
// what this host allows are in shared/notes/real-node.md; in short:
//
//   - the node's namespace has one link to the host, a /30 of 10.201.I.0
//     (host .1, node .2), and its pods 10.244.I.0/24, routed to the node on
//     the host before anything is sent to a pod;
//   - the node reaches the API server at emulator.NodeAPIAddress on the host
//     (an address on lo and a TCP relay to the API server's loopback port),
//     and so do its pods, through kube-proxy and the kubernetes Service's
//     endpoint there;
//   - the kubelet's cgroups live under a cgroup root of the node's own
//     (/pk-NAME in every hierarchy), the node's files under its WorkDir.
//
// Every process is started with nsenter --net (not ip netns exec, which
// remounts /sys and hides the cgroup mounts from the kubelet).
package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const (
	// CNIBinDir holds Debian's CNI plugins (containernetworking-plugins).
	CNIBinDir = "/usr/lib/cni"
	// ClusterCIDR holds every real node's pod range (10.244.I.0/24).
	ClusterCIDR = "10.244.0.0/16"
	// APIPort is the relay's port at emulator.NodeAPIAddress.
	APIPort = 6443
	// MaxNodes bounds the node index (the third octet of its ranges).
	MaxNodes = 64
)

// binaries a real node needs in the bin folder (make tools builds them).
var binaries = []string{"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr"}

// commands a real node needs on the host, with the Debian package of each.
var commands = map[string]string{"runc": "runc", "nsenter": "util-linux", "ip": "iproute2", "iptables": "iptables", "nft": "nftables"}

// cniPlugins the node's network uses.
var cniPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// Check says why no real node can run on this machine with the binaries of
// binDir, or nil when one can.
func Check(binDir string) error {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root (a node needs network namespaces, cgroups and mounts)")
	}
	var missing []string
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		why = append(why, fmt.Sprintf("%s not built in %s (make tools)", strings.Join(missing, ", "), binDir))
	}
	var pkgs []string
	for cmd, pkg := range commands {
		if _, err := lookPath(cmd); err != nil {
			pkgs = append(pkgs, pkg)
		}
	}
	sort.Strings(pkgs)
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			pkgs = append(pkgs, "containernetworking-plugins")
			break
		}
	}
	if len(pkgs) > 0 {
		why = append(why, "Debian packages missing: "+strings.Join(pkgs, " ")+" (make test-deps)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.shares"); err != nil {
		why = append(why, "no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu (the real node and its tests are made for this machine's cgroup v1; see shared/notes/real-node.md)")
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; "))
	}
	return nil
}

// hostPath is $PATH with the sbin folders, where runc and ip live.
func hostPath() string {
	return os.Getenv("PATH") + ":/usr/local/sbin:/usr/sbin:/sbin"
}

func lookPath(cmd string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	for _, dir := range filepath.SplitList(hostPath()) {
		p := filepath.Join(dir, cmd)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", cmd)
}

// Nodes are the real nodes of one cluster and what they share: the API
// server's address on the host, its relay and the kubernetes Service's
// endpoint.
type Nodes struct {
	c      *emulator.Cluster
	log    io.Writer
	images []string

	lock    *os.File
	relay   net.Listener
	addedLo bool

	mu    sync.Mutex
	nodes []*Node
}

// New readies cluster c (started with Options.RealNodes) for real nodes;
// images are OCI or Docker archives every node imports (BuildImages).
func New(ctx context.Context, c *emulator.Cluster, images []string, log io.Writer) (_ *Nodes, err error) {
	if !c.RealNodes() {
		return nil, errors.New("the cluster was not started with Options.RealNodes")
	}
	if err := Check(c.BinDir); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	ns := &Nodes{c: c, log: log, images: images}
	defer func() {
		if err != nil {
			_ = ns.Stop()
		}
	}()
	if ns.lock, err = acquire(ctx, log); err != nil {
		return nil, err
	}
	// Holding the lock, an address already there is a killed run's: ours.
	out, err := run("ip", "addr", "add", emulator.NodeAPIAddress+"/32", "dev", "lo")
	if err != nil && !strings.Contains(out, "File exists") {
		return nil, fmt.Errorf("adding %s to lo: %s", emulator.NodeAPIAddress, out)
	}
	ns.addedLo = true
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return nil, err
	}
	if ns.relay, err = net.Listen("tcp", net.JoinHostPort(emulator.NodeAPIAddress, fmt.Sprint(APIPort))); err != nil {
		return nil, fmt.Errorf("listening for the nodes' API requests: %w", err)
	}
	go relay(ns.relay, u.Host)
	if err := ensureAPIEndpoint(ctx, c); err != nil {
		return nil, err
	}
	if err := ensureKubeletAPIAccess(ctx, c); err != nil {
		return nil, err
	}
	return ns, nil
}

// ensureKubeletAPIAccess lets the API server's kubelet client (logs, exec)
// through the kubelets' webhook authorization.
func ensureKubeletAPIAccess(ctx context.Context, c *emulator.Cluster) error {
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "planetkube-realnode-kubelet-api"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: emulator.KubeletClientUser}},
	}
	_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding the API server's kubelet client: %w", err)
	}
	return nil
}

// nodeLinks holds the nodes' links (10.201.I.0/30): the relay serves them
// and loopback only. The address is on lo, which Linux answers on every
// interface: a host elsewhere that routed it here must not reach the API.
var nodeLinks = netip.MustParsePrefix("10.201.0.0/16")

// relay copies each connection accepted by l from a node or loopback to
// target and back, until l is closed; each direction's end is passed on
// (a watch the API server ends must end at the node at once).
func relay(l net.Listener, target string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		from, _ := netip.ParseAddrPort(in.RemoteAddr().String())
		if a := from.Addr().Unmap(); !a.IsLoopback() && !nodeLinks.Contains(a) {
			_ = in.Close()
			continue
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(out, in)
				closeWrite(out)
				close(done)
			}()
			_, _ = io.Copy(in, out)
			closeWrite(in)
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// ensureAPIEndpoint gives the kubernetes Service (which has no selector) its
// endpoint at the relay: the emulator's API server keeps none of its own
// (--endpoint-reconciler-type=none, loopback addresses are refused).
func ensureAPIEndpoint(ctx context.Context, c *emulator.Cluster) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault, Labels: map[string]string{
			discoveryv1.LabelServiceName: "kubernetes",
			discoveryv1.LabelManagedBy:   "realnode.planetkube.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{emulator.NodeAPIAddress},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(APIPort)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	_, err := c.Client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the kubernetes Service's endpoint: %w", err)
	}
	return nil
}

// Nodes returns the nodes added so far.
func (ns *Nodes) Nodes() []*Node {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]*Node(nil), ns.nodes...)
}

// Stop stops every node (in reverse order) and the relay, and takes the
// address off lo. It is safe to call more than once.
func (ns *Nodes) Stop() error {
	ns.mu.Lock()
	nodes := ns.nodes
	ns.nodes = nil
	ns.mu.Unlock()
	var errs []error
	for i := len(nodes) - 1; i >= 0; i-- {
		errs = append(errs, nodes[i].Stop())
	}
	if ns.relay != nil {
		_ = ns.relay.Close()
		ns.relay = nil
	}
	if ns.addedLo {
		_, _ = run("ip", "addr", "del", emulator.NodeAPIAddress+"/32", "dev", "lo")
		ns.addedLo = false
	}
	if ns.lock != nil {
		_ = ns.lock.Close() // releases the flock
		ns.lock = nil
	}
	return errors.Join(errs...)
}

// LockFile serialises the real nodes of this machine: they share the API
// address, the relay's port, containerd's /run/containerd folders and the
// node names' namespaces, so one set of real nodes runs at a time (the
// packages of `go test ./...` run at once; make run may be up too).
const LockFile = "/run/planetkube-realnode.lock"

// acquire takes LockFile's exclusive lock, waiting while another process
// holds it, until ctx ends.
func acquire(ctx context.Context, log io.Writer) (*os.File, error) {
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			// Say who holds it, for those who wait.
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), strings.Join(os.Args, " "))), 0)
			return f, nil
		} else if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", LockFile, err)
		}
		holder, _ := os.ReadFile(LockFile)
		if strings.Contains(string(holder), "emulated-cluster") {
			_ = f.Close()
			return nil, fmt.Errorf("make run has the machine's real node (%s holds %s): stop it (Ctrl-C) first", strings.Fields(string(holder))[0], LockFile)
		}
		if !said {
			fmt.Fprintf(log, "Waiting for %s: another process runs real nodes (%s)\n", LockFile, strings.TrimSpace(string(holder)))
			said = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for %s (another process runs real nodes: a test, or make run): %w", LockFile, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// run runs a host command and returns its combined output.
func run(name string, args ...string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func (ns *Nodes) logf(format string, args ...any) {
	fmt.Fprintf(ns.log, format+"\n", args...)
}
