// Package emulator runs a real Kubernetes control plane on the local machine
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with kwok
// standing in for kubelets: fake nodes that go Ready and pods on them that go
// Running with pod IPs. It backs `make run`, the e2e tests and the benchmarks.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// startTimeout bounds Start when its context has no deadline.
const startTimeout = 5 * time.Minute

// DefaultSites are the sites the fake nodes are spread over when Options.Sites is empty.
var DefaultSites = []string{"princeton", "mit", "berkeley", "ethz", "tokyo"}

// Options configures an emulated cluster. The zero value is usable.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kwok and kwok-stages/. Default: see FindBinDir.
	BinDir string
	// WorkDir receives data, certificates, logs and the kubeconfig. Default: a
	// new temporary folder that Stop removes. A given WorkDir is kept, but its
	// etcd data is wiped at start.
	WorkDir string
	// LogDir receives one log file per component. Default: WorkDir/logs.
	LogDir string
	// Log receives progress messages of Start and Stop; nil discards them.
	Log io.Writer
	// Nodes is the number of fake nodes created at start; default 50, -1 for none.
	Nodes int
	// Sites the fake nodes are spread over, round-robin; default DefaultSites.
	Sites []string
	// ControllerManagerArgs are extra kube-controller-manager flags.
	ControllerManagerArgs []string
	// RealNodes readies the control plane for real kubelets
	// (internal/testing/realnode): the API server's certificate names
	// NodeAPIAddress, it reaches kubelets with a client certificate of its
	// own and webhooks at their Service's pod addresses, and pods get
	// service-account tokens.
	RealNodes bool
}

// Cluster is a running emulated cluster.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// Config is the admin client configuration (QPS 1000, burst 2000).
	Config *rest.Config
	// Client is a clientset built from Config.
	Client kubernetes.Interface
	// WorkDir holds data, certificates, logs and the kubeconfig.
	WorkDir string
	// LogDir holds one log file per component and manager.
	LogDir string
	// BinDir is where the binaries were taken from.
	BinDir string
	// Sites are the sites the initial nodes were spread over.
	Sites []string
	// NodeNames are the names of the nodes created by Start.
	NodeNames []string

	log      io.Writer
	removeWD bool
	pki      *pki
	etcdURL  string

	mu        sync.Mutex
	control   []*Process // in start order
	managers  []*Process
	managerN  atomic.Int32
	nodeIPSeq atomic.Uint32
	stopped   bool

	realNodes bool // Options.RealNodes
	fakeNodes int  // Options.Nodes

	webhookPort    int    // the manager's webhook server port, once installed
	webhookCertDir string // its serving certificate

	feedPort    int    // the manager's federation feed port, once issued
	feedCertDir string // its serving certificate
}

// Start starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok, creates the fake nodes and waits until they are all Ready. On
// failure everything it started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	began := time.Now()
	if err := retryPorts(func() error { return c.startEtcd(ctx) }); err != nil {
		return nil, err
	}
	if err := retryPorts(func() error { return c.startAPIServer(ctx) }); err != nil {
		return nil, err
	}
	if err := c.startComponents(opts.ControllerManagerArgs); err != nil {
		return nil, err
	}
	if err := c.createInitialNodes(ctx, opts.Nodes); err != nil {
		return nil, err
	}
	if err := c.WaitNodesReady(ctx, len(c.NodeNames)); err != nil {
		return nil, err
	}
	c.logf("Cluster ready with %d nodes in %s (kubeconfig %s, logs in %s)",
		len(c.NodeNames), time.Since(began).Round(time.Millisecond), c.Kubeconfig, c.LogDir)
	return c, nil
}

// newCluster applies the defaults of opts and prepares the work folder.
func newCluster(opts Options) (*Cluster, error) {
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	if err := CheckBinaries(binDir); err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: binDir, Sites: opts.Sites, log: opts.Log, WorkDir: opts.WorkDir, LogDir: opts.LogDir, realNodes: opts.RealNodes, fakeNodes: opts.Nodes}
	if len(c.Sites) == 0 {
		c.Sites = DefaultSites
	}
	if c.log == nil {
		c.log = io.Discard
	}
	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "planetkube-emulator-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		c.WorkDir, c.removeWD = dir, true
	} else {
		abs, err := filepath.Abs(c.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("resolving work dir: %w", err)
		}
		c.WorkDir = abs
		if err := os.RemoveAll(filepath.Join(abs, "etcd")); err != nil {
			return nil, fmt.Errorf("wiping stale etcd data: %w", err)
		}
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(c.WorkDir, "logs")
	}
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log dir: %w", err)
	}
	p, err := writePKI(filepath.Join(c.WorkDir, "pki"), opts.RealNodes)
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.pki = p
	return c, nil
}

// Stop kills every process the cluster started (managers first, then the
// control plane in reverse start order), waits for them and removes a
// temporary work folder. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	managers, control := c.managers, c.control
	c.mu.Unlock()

	var errs []error
	for _, p := range managers {
		if err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(control) - 1; i >= 0; i-- {
		_ = control[i].Kill()
	}
	if c.removeWD {
		if err := os.RemoveAll(c.WorkDir); err != nil {
			errs = append(errs, fmt.Errorf("removing work dir: %w", err))
		}
	}
	c.logf("Cluster stopped")
	return errors.Join(errs...)
}

// Processes returns the control-plane processes and managers still tracked.
func (c *Cluster) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(append([]*Process(nil), c.control...), c.managers...)
}

// StartManager runs binary with args as a child process with KUBECONFIG set to
// the admin kubeconfig, its output going to LogDir/manager-N.log.
func (c *Cluster) StartManager(ctx context.Context, binary string, args ...string) (*Process, error) {
	return c.StartManagerAs(ctx, "", binary, args...)
}

// StartManagerAs is StartManager with the manager acting as user (for a
// ServiceAccount, system:serviceaccount:<namespace>:<name>), so that its
// requests are authorized by that user's RBAC. An empty user is the admin.
func (c *Cluster) StartManagerAs(_ context.Context, user, binary string, args ...string) (*Process, error) {
	kubeconfig := c.Kubeconfig
	if user != "" {
		var err error
		if kubeconfig, err = c.ImpersonatingKubeconfig(user); err != nil {
			return nil, err
		}
	}
	name := fmt.Sprintf("manager-%d", c.managerN.Add(1))
	p, err := startProcess(name, filepath.Join(c.LogDir, name+".log"), binary, args,
		[]string{"KUBECONFIG=" + kubeconfig})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		_ = p.Kill()
		return nil, errors.New("cluster is stopped")
	}
	c.managers = append(c.managers, p)
	c.logf("Started %s (pid %d), log %s", name, p.Pid(), p.LogPath)
	return p, nil
}

// Restart kills a control-plane component (SIGKILL: "etcd",
// "kube-apiserver", "kube-controller-manager", "kube-scheduler" or "kwok"),
// starts it again with the same flags (so on the same ports, with the same
// data) and, for etcd and kube-apiserver, waits until it is healthy.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	c.mu.Lock()
	idx := -1
	for i, p := range c.control {
		if p.Name == name {
			idx = i
		}
	}
	if idx < 0 {
		c.mu.Unlock()
		return fmt.Errorf("no control-plane component %q", name)
	}
	old := c.control[idx]
	c.mu.Unlock()
	_ = old.Kill()
	c.logf("Killed %s (pid %d)", name, old.Pid())
	p, err := startProcess(name, old.LogPath, old.binary, old.args, old.env)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.control[idx] = p
	c.mu.Unlock()
	c.logf("Restarted %s (pid %d)", name, p.Pid())
	switch name {
	case "etcd":
		return waitFor(ctx, "etcd health", pollInterval, []*Process{p}, func(ctx context.Context) bool {
			return httpOK(ctx, c.etcdURL+"/health", `"health":"true"`)
		})
	case "kube-apiserver":
		return waitFor(ctx, "kube-apiserver /readyz", pollInterval, []*Process{p}, func(ctx context.Context) bool {
			body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err == nil && string(body) == "ok"
		})
	}
	return nil
}

// startComponent starts one control-plane binary of BinDir and tracks it.
func (c *Cluster) startComponent(name string, args []string, env ...string) (*Process, error) {
	p, err := startProcess(name, filepath.Join(c.LogDir, name+".log"), filepath.Join(c.BinDir, name), args, env)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.control = append(c.control, p)
	c.mu.Unlock()
	c.logf("Started %s (pid %d)", name, p.Pid())
	return p, nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, format+"\n", args...)
}
