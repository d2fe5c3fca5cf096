package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
)

// install is one install of a federated `make run`.
type install struct {
	name    string
	cluster *emulator.Cluster
	key     ed25519.PrivateKey
	samples []string
	mgr     *emulator.Process
}

// runFederated is `make run FEDERATED=1`: besides plc (the cluster c), a
// second install ple in its own cluster; each knows the other's authority
// (key, feed, push kubeconfig) and runs its manager with its feed.
func runFederated(ctx, startCtx context.Context, c *emulator.Cluster, cfg config) error {
	fmt.Printf("Starting the second install's cluster (ple, %d nodes) in %s ...\n", cfg.peerNodes, filepath.Join(cfg.workDir, "ple"))
	pc, err := emulator.Start(startCtx, emulator.Options{
		WorkDir: filepath.Join(cfg.workDir, "ple"), Nodes: cfg.peerNodes, Sites: []string{"inria", "upmc"}, Log: os.Stdout,
	})
	if err != nil {
		return fmt.Errorf("starting ple's cluster: %w", err)
	}
	defer func() { _ = pc.Stop() }()
	plc := &install{name: "plc", cluster: c, samples: []string{cfg.samples, "config/federation/plc"}}
	ple := &install{name: "ple", cluster: pc, samples: []string{"config/federation/ple"}}
	for _, in := range []*install{plc, ple} {
		if err := in.prepare(startCtx); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
	}
	for _, pair := range [][2]*install{{plc, ple}, {ple, plc}} {
		a, b := pair[0], pair[1]
		opts := emulator.PeerOptions{Push: true, Pull: true, PollSeconds: int32(cfg.pollSeconds)}
		if err := a.cluster.Peer(startCtx, a.name, b.cluster, b.name, b.key.Public().(ed25519.PublicKey), opts); err != nil {
			return fmt.Errorf("peering %s with %s: %w", a.name, b.name, err)
		}
	}
	for _, in := range []*install{plc, ple} {
		if err := in.start(startCtx, cfg); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
	}
	printUsage(c, plc.mgr)
	fmt.Printf(`
Federated with a second install, ple (sites inria and upmc; inria trusts plc):
  kubectl get authorities -o wide                         # ple: PushReady, FeedSynced
  kubectl get slice -n princeton scriptroute -o jsonpath='{.status.federation}'
  kubectl --kubeconfig %[1]s get slices -A                # plc.princeton.scriptroute runs at ple
  kubectl --kubeconfig %[1]s get pods -A -l planetkube.io/slice -o wide
  kubectl --kubeconfig %[1]s get authorities -o wide
ple's logs: %[2]s/   manager log: %[3]s
`, pc.Kubeconfig, pc.LogDir, ple.mgr.LogPath)
	return waitManagers(ctx, plc.mgr, ple.mgr)
}

// prepare installs PlanetKube, the authority key (as a Helm release brings
// it) and the feed's certificate.
func (in *install) prepare(ctx context.Context) error {
	if err := in.cluster.InstallPlanetKube(ctx); err != nil {
		return err
	}
	key, err := ticket.GenerateKey()
	if err != nil {
		return err
	}
	in.key = key
	if err := in.cluster.PutAuthorityKey(ctx, in.name, key); err != nil {
		return err
	}
	_, _, _, err = in.cluster.FeedServing()
	return err
}

// start runs the install's manager with its feed and applies its samples.
func (in *install) start(ctx context.Context, cfg config) error {
	feedArgs, err := in.cluster.FeedArgs()
	if err != nil {
		return err
	}
	args := append(append(in.cluster.WebhookArgs(), strings.Fields(cfg.managerArgs)...), append(feedArgs, "--authority="+in.name)...)
	in.mgr, err = in.cluster.StartManagerAs(ctx, cfg.managerAs, cfg.manager, args...)
	if err != nil {
		return fmt.Errorf("starting manager: %w", err)
	}
	if err := in.cluster.WaitWebhook(ctx, 30*time.Second); err != nil {
		return err
	}
	for _, s := range in.samples {
		if err := in.cluster.ApplySamples(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
