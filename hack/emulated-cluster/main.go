// Command emulated-cluster is `make run`: it starts an emulated cluster (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok fake nodes
// spread over sites), applies the CRDs and RBAC, runs the PlanetKube manager
// against it, applies the samples, and keeps everything up until SIGINT or
// SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/testing/emulator"
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
	c, err := emulator.Start(startCtx, emulator.Options{
		WorkDir: cfg.workDir, Nodes: nodes, Sites: cli.SplitList(cfg.sites), Log: os.Stdout,
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
