// Command emulated-cluster is `make run`: it starts an emulated cluster (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok fake nodes
// spread over sites) and installs PlanetKube on it, applies the samples, and
// keeps everything up until SIGINT or SIGTERM.
//
// Where the machine can run a real node (root, the binaries of make tools,
// runc and the CNI plugins: internal/testing/realnode), it joins one
// (real-princeton-0) and installs the chart with helm as a site does: the
// manager's replicas and the node agent run as pods on the real node, the
// samples' slices get a real sliver there, and an "internet" namespace
// beyond the node answers TCP and UDP on port 9000. Elsewhere, and with
// --federated, it says why and runs the manager as a local process against
// config/ (the CRDs, RBAC and webhooks).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/realnode"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

// config holds the command-line flags.
type config struct {
	nodes                int
	sites, workDir       string
	manager, managerArgs string
	managerAs            string
	samples              string
	federated            bool
	peerNodes            int
	pollSeconds          int
	realNode             bool
}

func parseFlags() config {
	var c config
	flag.IntVar(&c.nodes, "nodes", 50, "number of fake nodes")
	flag.StringVar(&c.sites, "sites", strings.Join(emulator.DefaultSites, ","), "comma-separated sites the nodes are spread over")
	flag.StringVar(&c.workDir, "workdir", ".run", "folder for data, certificates, logs and kubeconfig (kept; stale etcd data is wiped)")
	flag.StringVar(&c.manager, "manager", "bin/planetkube", `manager binary ("" runs no manager)`)
	flag.StringVar(&c.managerArgs, "manager-args", strings.Join(emulator.DefaultManagerArgs, " "), "manager arguments, space-separated")
	flag.StringVar(&c.managerAs, "manager-as", emulator.ManagerUser, `user the manager acts as, so its generated RBAC applies ("" is the admin)`)
	flag.StringVar(&c.samples, "samples", "config/samples", "sample manifests applied after the manager starts, if the folder exists")
	flag.BoolVar(&c.federated, "federated", false, "also start a second install, ple (its own cluster in <workdir>/ple, sites inria and upmc), federated with this one (plc) by push and pull; applies config/federation")
	flag.IntVar(&c.peerNodes, "peer-nodes", 12, "with --federated: ple's fake nodes")
	flag.IntVar(&c.pollSeconds, "poll-seconds", 60, "with --federated: how often each install polls the other's feed (plus jitter)")
	flag.BoolVar(&c.realNode, "real-node", true, "join a real node and install the chart with helm where the machine can (root, runc, CNI plugins); false: fake nodes and a local manager only")
	flag.Parse()
	return c
}

func run() error {
	cfg := parseFlags()
	if cfg.federated && cfg.manager == "" {
		return errors.New("--federated needs a manager (--manager)")
	}
	if cfg.manager != "" {
		if _, err := os.Stat(cfg.manager); err != nil {
			return fmt.Errorf("manager binary %s not found: run `make build` first, or pass --manager \"\"", cfg.manager)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Printf("Starting an emulated cluster with %d nodes in %s ...\n", cfg.nodes, cfg.workDir)
	began := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	nodes := cfg.nodes
	if nodes == 0 {
		nodes = -1 // Options treats 0 as the default
	}
	real := cfg.realNode && !cfg.federated && cfg.manager != ""
	if real {
		if bin, err := emulator.FindBinDir(); err != nil {
			return err
		} else if err := realnode.Check(bin); err != nil {
			fmt.Printf("No real node on this machine (%v): fake nodes only, the manager as a local process.\n", err)
			real = false
		}
	}
	c, err := emulator.Start(startCtx, emulator.Options{
		WorkDir: cfg.workDir, Nodes: nodes, Sites: cli.SplitList(cfg.sites), Log: os.Stdout, RealNodes: real,
	})
	if err != nil {
		return fmt.Errorf("starting cluster: %w", err)
	}
	defer func() {
		fmt.Println("Stopping the manager and the cluster ...")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "Error stopping:", err)
		}
	}()
	fmt.Printf("Cluster up in %s\n", time.Since(began).Round(time.Millisecond))

	if cfg.federated {
		return runFederated(ctx, startCtx, c, cfg)
	}
	if real {
		site, err := setUpRealNode(startCtx, c, cfg)
		if err == nil {
			defer func() { _ = site.Nodes.Stop() }()
			printUsage(c, nil)
			printRealNodeUsage(site)
			<-ctx.Done()
			fmt.Println("\nSignal received")
			return nil
		}
		if site != nil {
			_ = site.Nodes.Stop()
		}
		if _, installed := realnode.Helm(startCtx, c, "status", realnode.Release, "-n", realnode.ReleaseNamespace, "--kubeconfig", c.Kubeconfig); installed == nil {
			return fmt.Errorf("the real node's set-up failed after the chart was installed: %w", err)
		}
		fmt.Printf("No real node after all (%v): fake nodes only, the manager as a local process.\n", err)
	}
	manager, err := setUp(startCtx, c, cfg)
	if err != nil {
		return err
	}
	printUsage(c, manager)
	return waitManagers(ctx, manager)
}

// waitManagers waits for a signal, or for a manager to exit.
func waitManagers(ctx context.Context, managers ...*emulator.Process) error {
	died := make(chan *emulator.Process, len(managers))
	for _, m := range managers {
		if m != nil {
			go func() { <-m.Done(); died <- m }()
		}
	}
	select {
	case <-ctx.Done():
		fmt.Println("\nSignal received")
		return nil
	case m := <-died:
		return fmt.Errorf("manager exited (%s); last lines of %s:\n%s", m.State(), m.LogPath, m.LogTail(40))
	}
}

// setUp installs PlanetKube (CRDs, RBAC, webhooks), starts the manager (if
// any) and applies the samples, as the tour test does too (emulator.SetUp).
func setUp(ctx context.Context, c *emulator.Cluster, cfg config) (*emulator.Process, error) {
	return c.SetUp(ctx, emulator.SetUpOptions{
		Manager: cfg.manager, ManagerArgs: strings.Fields(cfg.managerArgs), ManagerAs: cfg.managerAs, Samples: cfg.samples,
	})
}

// setUpRealNode installs the chart on the cluster with its real node, as
// the tour test does too (realnode.InstallSite), applies the samples and
// starts the node's internet's servers.
func setUpRealNode(ctx context.Context, c *emulator.Cluster, cfg config) (*realnode.Site, error) {
	site, err := realnode.InstallSite(ctx, c, realnode.SiteOptions{Log: os.Stdout})
	if err != nil {
		return nil, err
	}
	if err := c.ApplySamples(ctx, cfg.samples); err != nil {
		return site, err
	}
	_, err = site.ServeInternet()
	return site, err
}

// printRealNodeUsage says how to look at the real node.
func printRealNodeUsage(site *realnode.Site) {
	inet, _ := site.Node.Internet()
	fmt.Printf(`
The real node %[1]s (a kubelet, containerd and runc in the network namespace %[2]s, at %[3]s)
runs the chart's manager replicas, its node agent and the samples' slivers of princeton:

  kubectl get pods -n %[4]s -o wide
  kubectl exec -n princeton-codeen codeen-%[1]s -- /workload cat /etc/planetkube/ssh/authorized_keys
  kubectl exec -n princeton-codeen codeen-%[1]s -- /workload tcp-send -to %[5]s:9000 -bytes 100000 -exit
  curl -s 'http://%[3]s:9470/api/v1/flows?ip=%[5]s'    # the node's lookup: the flow is codeen's

Real node logs: %[6]s/
`, site.Node.Name, site.Node.NetNS, site.Node.IP, realnode.ReleaseNamespace, inet.IP, filepath.Join(site.Node.WorkDir, "logs"))
}

func printUsage(c *emulator.Cluster, manager *emulator.Process) {
	fmt.Printf(`
Emulated cluster ready. Kubeconfig: %[1]s

  export KUBECONFIG=%[1]s PATH=%[4]s:$PATH   # kubectl is in %[4]s
  kubectl get nodes -L %[2]s
  kubectl get sites
  kubectl get slices -A -o wide
  kubectl get pods -A -l planetkube.io/slice -o wide
  kubectl get planetkube -A
  kubectl describe slice -n princeton codeen
  kubectl get authorities                        # this install's authority, published at first start
  planetkube ticket issue --help                 # sign a ticket for a peer (docs/trust-and-federation.md)

Component logs: %[3]s/
`, c.Kubeconfig, emulator.SiteLabel, c.LogDir, c.BinDir)
	if manager != nil {
		fmt.Printf("Manager log:    %s\n", manager.LogPath)
	}
	fmt.Println("Press Ctrl-C to stop everything.")
}
