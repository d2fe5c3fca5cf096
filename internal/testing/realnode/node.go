package realnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// Node is one real node: its namespace, link, cgroup root, files and processes.
type Node struct {
	// Name is the Node object's name; Site its planetkube.io/site label.
	Name, Site string
	// Index picks the node's ranges: link 10.201.Index.0/30, pods 10.244.Index.0/24.
	Index int
	// IP is the node's address (InternalIP); HostIP the host's end of its link.
	IP, HostIP string
	// PodCIDR is the node's pod range.
	PodCIDR string
	// NetNS names the node's network namespace (/var/run/netns/NetNS).
	NetNS string
	// CgroupRoot is the kubelet's cgroup root, the same in every hierarchy.
	CgroupRoot string
	// WorkDir holds the node's configuration, state and logs.
	WorkDir string

	ns                         *Nodes
	hostLink                   string
	socket                     string
	containerd, kubelet, proxy *emulator.Process
	internet                   *Internet
}

// Add starts a real node named name at site with index i (0 ≤ i <
// MaxNodes, distinct per node), imports the images and waits until the
// node is Ready. A failed start is undone.
func (ns *Nodes) Add(ctx context.Context, name, site string, i int) (_ *Node, err error) {
	if i < 0 || i >= MaxNodes {
		return nil, fmt.Errorf("node index %d not in [0, %d)", i, MaxNodes)
	}
	n := &Node{
		Name: name, Site: site, Index: i,
		IP: fmt.Sprintf("10.201.%d.2", i), HostIP: fmt.Sprintf("10.201.%d.1", i),
		PodCIDR: fmt.Sprintf("10.244.%d.0/24", i),
		NetNS:   "pk-" + name, CgroupRoot: "/pk-" + name,
		WorkDir: filepath.Join(ns.c.WorkDir, "realnode-"+name),
		ns:      ns, hostLink: fmt.Sprintf("pkn%d", i),
	}
	n.socket = filepath.Join(n.WorkDir, "containerd.sock")
	began := time.Now()
	_ = n.cleanUp() // what a killed run may have left under the same name
	defer func() {
		if err != nil {
			err = fmt.Errorf("starting real node %s: %w", name, err)
			_ = n.Stop()
		}
	}()
	for _, d := range []string{"containerd", "kubelet", "pki", "cni/net.d", "cni/ipam", "pod-logs", "logs"} {
		if err := os.MkdirAll(filepath.Join(n.WorkDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := n.setUpNetwork(); err != nil {
		return nil, err
	}
	if err := n.setUpCgroups(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	if err := n.importImages(ctx); err != nil {
		return nil, err
	}
	if err := n.startKubeletAndProxy(); err != nil {
		return nil, err
	}
	if err := n.WaitReady(ctx, true); err != nil {
		return nil, err
	}
	ns.mu.Lock()
	ns.nodes = append(ns.nodes, n)
	ns.mu.Unlock()
	ns.logf("Real node %s (site %s) Ready at %s in %s, pods %s, logs in %s",
		name, site, n.IP, time.Since(began).Round(time.Millisecond), n.PodCIDR, filepath.Join(n.WorkDir, "logs"))
	return n, nil
}

// setUpNetwork makes the node's namespace and its link to the host, and
// routes the node's pod range to it on the host.
func (n *Node) setUpNetwork() error {
	steps := [][]string{
		{"netns", "add", n.NetNS},
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
		{"addr", "add", n.HostIP + "/30", "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.NetNS, "link", "set", "lo", "up"},
		{"-n", n.NetNS, "addr", "add", n.IP + "/30", "dev", "eth0"},
		{"-n", n.NetNS, "link", "set", "eth0", "up"},
		{"-n", n.NetNS, "route", "add", "default", "via", n.HostIP},
		{"route", "add", n.PodCIDR, "via", n.IP},
	}
	for _, s := range steps {
		if _, err := run("ip", s...); err != nil {
			return err
		}
	}
	if err := n.confine(); err != nil {
		return err
	}
	// Forwarding inside the node only: its pods' traffic goes out by eth0.
	return n.sysctl("net.ipv4.ip_forward", "1")
}

// confineRules drop, in the node's namespace, whatever the node or its
// pods send beyond the harness's own ranges: the node links and the API's
// relay (10.201/16), the internets (10.202/16), the pods (10.244/16), the
// Services (10.96/16). The host forwards nothing to the world for a node,
// even where its ip_forward is on: no image pull, no sliver traffic leaves
// the machine.
const confineRules = `table inet planetkube_realnode {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr != { 127.0.0.0/8, 10.96.0.0/16, 10.201.0.0/16, 10.202.0.0/16, 10.244.0.0/16 } counter drop
		ip6 daddr != { ::1, fe80::/10, ff00::/8 } counter drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		ip daddr != { 127.0.0.0/8, 10.96.0.0/16, 10.201.0.0/16, 10.202.0.0/16, 10.244.0.0/16 } counter drop
		ip6 daddr != { ::1, fe80::/10, ff00::/8 } counter drop
	}
}
`

func (n *Node) confine() error {
	path := filepath.Join(n.WorkDir, "confine.nft")
	if err := os.WriteFile(path, []byte(confineRules), 0o644); err != nil {
		return err
	}
	_, err := run("nsenter", "--net=/var/run/netns/"+n.NetNS, "--", "nft", "-f", path)
	return err
}

// sysctl sets a network sysctl of the node's namespace.
func (n *Node) sysctl(key, value string) error {
	_, err := run("nsenter", "--net=/var/run/netns/"+n.NetNS, "--", "sh", "-c",
		fmt.Sprintf("echo %s > /proc/sys/%s", value, strings.ReplaceAll(key, ".", "/")))
	return err
}

// readSysctl reads a network sysctl of the node's namespace.
func (n *Node) readSysctl(key string) (string, error) {
	return run("nsenter", "--net=/var/run/netns/"+n.NetNS, "--", "cat", "/proc/sys/"+strings.ReplaceAll(key, ".", "/"))
}

// ClosedTCPConntrack are conntrack's timeouts of TCP flows that are closing
// or over (net.netfilter.<name>): shortened, a closed flow's DESTROY (its
// final record for the agent) comes in a second, not TIME_WAIT's two minutes.
var ClosedTCPConntrack = []string{
	"nf_conntrack_tcp_timeout_time_wait", "nf_conntrack_tcp_timeout_close", "nf_conntrack_tcp_timeout_close_wait",
	"nf_conntrack_tcp_timeout_fin_wait", "nf_conntrack_tcp_timeout_last_ack",
}

// ShortenConntrack sets the node's conntrack timeouts names
// (net.netfilter.<name>) to 1 s, so that flows that ended leave its table,
// and reach the agent's store, at once; restore puts the old values back.
func (n *Node) ShortenConntrack(names ...string) (restore func(), err error) {
	old := map[string]string{}
	restore = func() {
		for key, v := range old {
			_ = n.sysctl(key, v)
		}
	}
	for _, name := range names {
		key := "net.netfilter." + name
		v, err := n.readSysctl(key)
		if err != nil {
			restore()
			return nil, err
		}
		if err := n.sysctl(key, "1"); err != nil {
			restore()
			return nil, err
		}
		old[key] = v
	}
	return restore, nil
}

// cgroupHierarchies are the mount points of the host's cgroup hierarchies
// (v1 controllers, the named systemd one and the unified one).
func cgroupHierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+1 >= len(fields) {
			continue
		}
		if t := fields[sep+1]; t == "cgroup" || t == "cgroup2" {
			dirs = append(dirs, fields[4])
		}
	}
	return dirs, sc.Err()
}

// setUpCgroups makes the node's cgroup root in every hierarchy, with the
// cpuset one given its parent's CPUs and memory nodes (it starts empty).
func (n *Node) setUpCgroups() error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range dirs {
		d := filepath.Join(h, n.CgroupRoot)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// start runs a binary of the bin folder in the node's network namespace.
func (n *Node) start(name string, args ...string) (*emulator.Process, error) {
	argv := append([]string{"--net=/var/run/netns/" + n.NetNS, "--", filepath.Join(n.ns.c.BinDir, name)}, args...)
	nsenter, err := lookPath("nsenter")
	if err != nil {
		return nil, err
	}
	return emulator.StartProcess(name+"-"+n.Name, filepath.Join(n.WorkDir, "logs", name+".log"), nsenter, argv,
		[]string{"PATH=" + n.ns.c.BinDir + ":" + hostPath()})
}

func (n *Node) startContainerd(ctx context.Context) error {
	cni := filepath.Join(n.WorkDir, "cni")
	if err := os.WriteFile(filepath.Join(cni, "net.d", "10-planetkube.conflist"),
		[]byte(cniConfig("pkbr0", n.PodCIDR, filepath.Join(cni, "ipam"))), 0o644); err != nil {
		return err
	}
	cfg := filepath.Join(n.WorkDir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(containerdConfig(filepath.Join(n.WorkDir, "containerd"), n.socket,
		PauseImage, filepath.Join(cni, "net.d"))), 0o644); err != nil {
		return err
	}
	var err error
	if n.containerd, err = n.start("containerd", "--config", cfg); err != nil {
		return err
	}
	var last error
	if err := n.poll(ctx, "containerd", 30*time.Second, []*emulator.Process{n.containerd}, func() bool {
		_, last = n.ctr("version")
		return last == nil
	}); err != nil {
		return fmt.Errorf("%w (%v): %s", err, last, n.containerd.LogTail(10))
	}
	return nil
}

// ctr runs ctr against the node's containerd, in the kubelet's namespace.
func (n *Node) ctr(args ...string) (string, error) {
	return run(filepath.Join(n.ns.c.BinDir, "ctr"), append([]string{"--address", n.socket, "-n", "k8s.io"}, args...)...)
}

func (n *Node) importImages(ctx context.Context) error {
	for _, img := range n.ns.images {
		if _, err := n.ctr("images", "import", img); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// startKubeletAndProxy writes the node's credentials and configuration and
// starts the kubelet and kube-proxy.
func (n *Node) startKubeletAndProxy() error {
	c := n.ns.c
	pki := filepath.Join(n.WorkDir, "pki")
	server := fmt.Sprintf("https://%s:%d", emulator.NodeAPIAddress, APIPort)
	cert, key, err := c.IssueClientCert(pki, "kubelet", "system:node:"+n.Name, "system:nodes")
	if err != nil {
		return err
	}
	proxyCert, proxyKey, err := c.IssueClientCert(pki, "kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	files := map[string]string{
		"kubelet.kubeconfig":    kubeconfig(server, c.CACert(), cert, key),
		"kube-proxy.kubeconfig": kubeconfig(server, c.CACert(), proxyCert, proxyKey),
		"kubelet.yaml": kubeletConfig(kubeletOptions{
			CgroupRoot: n.CgroupRoot, Socket: n.socket, NodeIP: n.IP, CACert: c.CACert(),
			PodLogsDir: filepath.Join(n.WorkDir, "pod-logs"),
		}),
	}
	files["kube-proxy.yaml"] = kubeProxyConfig(filepath.Join(n.WorkDir, "kube-proxy.kubeconfig"), n.Name, ClusterCIDR)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.WorkDir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	region, zone := emulator.RegionZone(n.Site)
	labels := []string{
		emulator.SiteLabel + "=" + n.Site,
		corev1.LabelTopologyRegion + "=" + region,
		corev1.LabelTopologyZone + "=" + zone,
		"type=real",
	}
	if n.kubelet, err = n.start("kubelet",
		"--config="+filepath.Join(n.WorkDir, "kubelet.yaml"),
		"--kubeconfig="+filepath.Join(n.WorkDir, "kubelet.kubeconfig"),
		"--root-dir="+filepath.Join(n.WorkDir, "kubelet"),
		"--cert-dir="+filepath.Join(pki, "kubelet-serving"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--node-labels="+strings.Join(labels, ","),
		"--v=1",
	); err != nil {
		return err
	}
	n.proxy, err = n.start("kube-proxy", "--config="+filepath.Join(n.WorkDir, "kube-proxy.yaml"))
	return err
}

// WaitReady waits until the node's Ready condition is ready (true or false).
func (n *Node) WaitReady(ctx context.Context, ready bool) error {
	want := corev1.ConditionTrue
	if !ready {
		want = corev1.ConditionUnknown
	}
	var procs []*emulator.Process
	if ready {
		procs = []*emulator.Process{n.containerd, n.kubelet}
	}
	return n.poll(ctx, "node "+n.Name+" Ready="+string(want), 2*time.Minute, procs, func() bool {
		node, err := n.ns.c.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == want || (!ready && c.Status == corev1.ConditionFalse)
			}
		}
		return false
	})
}

// poll checks cond every 200 ms until it holds, timeout passes, ctx ends or
// one of procs exits (its log's tail is in the error).
func (n *Node) poll(ctx context.Context, what string, timeout time.Duration, procs []*emulator.Process, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for _, p := range procs {
			if p != nil && p.Exited() {
				return fmt.Errorf("waiting for %s: %s exited (%s): %s", what, p.Name, p.State(), p.LogTail(20))
			}
		}
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// StopKubelet stops the kubelet (SIGTERM): its containers go on running,
// and the node goes NotReady once the node lifecycle controller sees no
// heartbeat.
func (n *Node) StopKubelet() error {
	if n.kubelet == nil {
		return nil
	}
	err := n.kubelet.Stop()
	if err != nil && !n.kubelet.Exited() {
		return err
	}
	return nil
}

// StartKubelet starts the kubelet again, with the same flags, once
// StopKubelet stopped it.
func (n *Node) StartKubelet() error {
	if !n.kubelet.Exited() {
		return errors.New("the kubelet runs: StopKubelet first")
	}
	p, err := n.kubelet.Again()
	if err != nil {
		return err
	}
	n.kubelet = p
	return nil
}

// Exec runs a command in the node's network namespace (as the host's root:
// the node's files, cgroups and processes are the host's) and returns its
// combined output.
func (n *Node) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return run("nsenter", append([]string{"--net=/var/run/netns/" + n.NetNS, "--", name}, args...)...)
}

// KubeletLog is the path of the kubelet's log.
func (n *Node) KubeletLog() string { return filepath.Join(n.WorkDir, "logs", "kubelet.log") }

// Stop stops the node and removes what it made on the host: the kubelet
// and kube-proxy, every process in its cgroups, containerd and its shims,
// the mounts under its WorkDir, its cgroups and its network namespace.
func (n *Node) Stop() error {
	if n.internet != nil {
		n.internet.stop()
	}
	for _, p := range []*emulator.Process{n.kubelet, n.proxy} {
		if p != nil {
			_ = p.Stop()
		}
	}
	n.killCgroupProcesses()
	n.killShims()
	if n.containerd != nil {
		_ = n.containerd.Stop()
	}
	return n.cleanUp()
}

// cleanUp removes the node's host state, also what a killed run left:
// processes in its cgroups, shims of its socket, mounts under its WorkDir,
// its cgroups, its namespace and its link (and with it the route).
func (n *Node) cleanUp() error {
	n.killCgroupProcesses()
	n.killShims()
	unmountUnder(n.stateMarker())
	var errs []error
	if left := n.removeCgroups(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left: %s", strings.Join(left, ", ")))
	}
	_, _ = run("ip", "link", "del", n.hostLink)
	for _, ns := range []string{n.internetNS(), n.NetNS} {
		if out, err := run("ip", "netns", "del", ns); err != nil && !strings.Contains(out, "No such file") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stateMarker is in the path of everything the node mounts and of its
// containerd's socket, whichever run's WorkDir made them: what a killed
// run left is found by it (the lock says no other run has a node of
// this name now).
func (n *Node) stateMarker() string { return "/realnode-" + n.Name + "/" }

// cgroupDirs lists the node's cgroup folders, deepest first.
func (n *Node) cgroupDirs() []string {
	hierarchies, _ := cgroupHierarchies()
	var dirs []string
	for _, h := range hierarchies {
		_ = filepath.WalkDir(filepath.Join(h, n.CgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func (n *Node) killCgroupProcesses() {
	for _, d := range n.cgroupDirs() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// removeCgroups removes the node's cgroup folders bottom-up, for a few
// seconds while killed processes exit, and returns those left.
func (n *Node) removeCgroups() []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, d := range n.cgroupDirs() {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, d)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		n.killCgroupProcesses()
		time.Sleep(100 * time.Millisecond)
	}
}

// killShims kills the runc shims that the node's containerd started (they
// outlive containerd by design).
func (n *Node) killShims() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(b)
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, n.stateMarker()+"containerd.sock") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// unmountUnder detaches every mount whose path has marker in it (or ends
// with it, less its last slash), deepest first: the kubelet bind-mounts its
// root dir onto itself; containerd mounts rootfs and sandbox namespaces
// under its state.
func unmountUnder(marker string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (strings.Contains(f[4], marker) || strings.HasSuffix(f[4], strings.TrimSuffix(marker, "/"))) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
