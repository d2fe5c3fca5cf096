// Package manager wires PlanetKube's controllers into a controller-runtime
// manager: flags, client rate limits, cache scoping, health endpoints.
package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/util/flowcontrol"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/coalesce"
	"github.com/planetkube/planetkube/internal/federation/peerclient"
	"github.com/planetkube/planetkube/internal/federation/pull"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/slicemetrics"
	"github.com/planetkube/planetkube/internal/trust"
)

// Leader election holds a Lease in the manager's own namespace only, and
// records its transitions as core Events there.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=planetkube-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=events,verbs=create;patch

// maxStatusCoalesce bounds --status-coalesce: a slice's status is never
// more than this behind.
const maxStatusCoalesce = time.Minute

// Main parses the flags and runs the manager until SIGTERM or SIGINT.
func Main(args []string) error {
	var o Options
	if err := cli.Parse("manager", args, o.BindFlags); err != nil {
		return err
	}
	log := ctrl.Log.WithName("setup")
	if err := trust.CheckDefault(cli.SplitList(o.DefaultTrust)); err != nil {
		return fmt.Errorf("--default-trusted-authorities: %w", err)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.QPS), o.Burst

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.Scheme(),
		Cache:                   CacheOptions(),
		Metrics:                 MetricsOptions(o),
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		WebhookServer:           webhook.NewServer(webhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir}),
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "planetkube-manager.planetkube.io",
		LeaderElectionNamespace: o.LeaderElectNamespace,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	slices, err := setup(mgr, o)
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	ready := healthz.Ping
	if o.Webhooks {
		if ready, err = serveWebhooks(ctx, mgr, o, slices); err != nil {
			return err
		}
	}
	if err := mgr.AddReadyzCheck("readyz", ready); err != nil {
		return err
	}
	log.Info("Starting manager", "authority", o.Authority, "qps", o.QPS, "burst", o.Burst, "webhookCertMode", o.WebhookCertMode)
	return mgr.Start(ctx)
}

// The metrics endpoint checks its clients with the API server.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// MetricsOptions serve the metrics on --metrics-bind-address: with
// --metrics-secure (the default) over HTTPS (a self-signed certificate, as
// Prometheus' Kubernetes discovery expects with insecure_skip_verify or a
// CA) behind authentication and authorization by the API server.
func MetricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// ownSigner gives this install's key, read once from its Secret.
func ownSigner(mgr ctrl.Manager, o Options) *authority.SignerSource {
	return &authority.SignerSource{Reader: mgr.GetAPIReader(), Namespace: o.Namespace, SecretName: o.AuthorityKeySecret, Authority: o.Authority}
}

// Setup registers every PlanetKube controller with the manager, and the
// shared view of the cluster they read.
func Setup(mgr ctrl.Manager, o Options) error {
	_, err := setup(mgr, o)
	return err
}

// setup is Setup, returning the Slice controller (the Slice webhook's
// dry runs ask it what a slice would get).
func setup(mgr ctrl.Manager, o Options) (*controllers.SliceReconciler, error) {
	defaultTrust := cli.SplitList(o.DefaultTrust)
	view := clusterview.New(nil)
	pods, err := cache.New(mgr.GetConfig(), PodCacheOptions(mgr))
	if err != nil {
		return nil, fmt.Errorf("creating the pod cache: %w", err)
	}
	if err := mgr.Add(pods); err != nil {
		return nil, err
	}
	if err := view.Feed(context.Background(), mgr.GetCache(), pods); err != nil {
		return nil, fmt.Errorf("feeding the cluster view: %w", err)
	}
	if err := mgr.Add(view); err != nil {
		return nil, err
	}
	if o.SliverBackoff <= 0 {
		o.SliverBackoff = time.Second
	}
	if o.SliverBackoffMax < o.SliverBackoff {
		o.SliverBackoffMax = max(o.SliverBackoff, 15*time.Minute)
	}
	if err := (&controllers.SiteReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("site-controller"),
		View:     view,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the Site controller: %w", err)
	}
	slices := &controllers.SliceReconciler{
		Client:        mgr.GetClient(),
		Recorder:      mgr.GetEventRecorder("slice-controller"),
		View:          view,
		Backoff:       flowcontrol.NewBackOff(o.SliverBackoff, o.SliverBackoffMax),
		Authority:     o.Authority,
		DefaultTrust:  defaultTrust,
		SliverWriters: o.SliverWriters,
		SharesPerNode: int32(o.SharesPerNode),
		Workers:       o.SliceWorkers,
		KeysRecheck:   o.KeysRecheck,
	}
	if o.StatusCoalesce < 0 || o.StatusCoalesce > maxStatusCoalesce {
		return nil, fmt.Errorf("--status-coalesce %s: between 0 and %s", o.StatusCoalesce, maxStatusCoalesce)
	}
	if o.StatusCoalesce > 0 {
		slices.StatusHolds = &coalesce.Holds{Window: o.StatusCoalesce}
	}
	if err := slices.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the Slice controller: %w", err)
	}
	// planetkube_slice_expiry_seconds, read from the cache at each scrape.
	if err := slicemetrics.Register(metrics.Registry, &slicemetrics.Collector{Reader: mgr.GetCache()}); err != nil {
		return nil, fmt.Errorf("registering the slice metrics: %w", err)
	}
	if err := (&controllers.ResourcePoolReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("resourcepool-controller"),
		View:     view,
		Trust:    trust.Policy{Local: o.Authority, Default: defaultTrust},
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the ResourcePool controller: %w", err)
	}
	if err := mgr.Add(&authority.Bootstrap{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Authority: o.Authority,
		Namespace: o.Namespace, SecretName: o.AuthorityKeySecret, DisplayName: o.AuthorityDisplayName,
	}); err != nil {
		return nil, err
	}
	if o.PeersFile != "" {
		peers, err := readPeersFile(o.PeersFile, o.Authority)
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(&authority.PeerSync{Client: mgr.GetClient(), Peers: peers}); err != nil {
			return nil, err
		}
	}
	signer := ownSigner(mgr, o)
	peers := &peerclient.Clients{Reader: mgr.GetAPIReader(), Namespace: o.Namespace, Scheme: mgr.GetScheme(), Now: time.Now}
	if err := (&controllers.AuthorityReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("authority-controller"),
		Local:    o.Authority,
		Signer:   signer,
		Poller:   &pull.Poller{Authority: o.Authority, Signer: signer, Peers: peers, Skew: o.TicketSkew, Timeout: o.FeedTimeout, DefaultTrust: defaultTrust},
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the Authority controller: %w", err)
	}
	if err := (&controllers.TicketReconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("ticket-controller"),
		Namespace:    o.Namespace,
		Authority:    o.Authority,
		Own:          signer,
		DefaultTrust: defaultTrust,
		Skew:         o.TicketSkew,
		Workers:      o.TicketWorkers,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the Ticket controller: %w", err)
	}
	fedSecrets, err := cache.New(mgr.GetConfig(), FederationSecretCacheOptions(mgr, o.Namespace))
	if err != nil {
		return nil, fmt.Errorf("creating the federation tickets' cache: %w", err)
	}
	// Started on every replica, with the manager's own cache: each serves the feed.
	if err := mgr.Add(everyReplica{fedSecrets}); err != nil {
		return nil, err
	}
	if err := mgr.Add(&controllers.RecordPruner{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: o.Namespace, Skew: o.TicketSkew}); err != nil {
		return nil, err
	}
	if err := (&controllers.FederationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("federation-controller"),
		Authority: o.Authority,
		Namespace: o.Namespace,
		Secrets:   fedSecrets,
		Signer:    signer,
		Peers:     peers,
		Workers:   o.SliceWorkers,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the federation controller: %w", err)
	}
	if o.FeedAddr != "0" && o.FeedAddr != "" {
		if o.FeedCertDir == "" {
			return nil, errors.New("--feed-bind-address needs --feed-cert-dir (the feed is served over HTTPS only)")
		}
		handler, err := FeedHandler(mgr.GetClient(), fedSecrets, signer, o)
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(&feedServer{addr: o.FeedAddr, certDir: o.FeedCertDir, handler: handler}); err != nil {
			return nil, err
		}
	}
	if o.FlowLookupAddr != "0" && o.FlowLookupAddr != "" {
		if err := setupFlowLookup(mgr, o); err != nil {
			return nil, err
		}
	}
	if err := setupUsage(mgr, o); err != nil {
		return nil, err
	}
	return slices, nil
}

// readPeersFile reads and checks --peers-file (at most 256 KiB).
func readPeersFile(path, local string) ([]authority.Peer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--peers-file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256<<10+1))
	if err != nil {
		return nil, fmt.Errorf("--peers-file: %w", err)
	}
	if len(data) > 256<<10 {
		return nil, fmt.Errorf("--peers-file %s: over 256 KiB", path)
	}
	peers, err := authority.ReadPeers(data, local)
	if err != nil {
		return nil, fmt.Errorf("--peers-file %s: %w", path, err)
	}
	return peers, nil
}
