// Package manager wires PlanetKube's controllers into a controller-runtime
// manager: flags, client rate limits, cache scoping, health endpoints.
package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/flowcontrol"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/admission"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/cpushare"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/flow/slicedir"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/ticket"
	"github.com/planetkube/planetkube/internal/trust"
	"github.com/planetkube/planetkube/internal/webhookcert"
)

// Leader election holds a Lease in the manager's own namespace only, and
// records its transitions as core Events there.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=planetkube-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=events,verbs=create;patch

// Options are the manager's settings, one flag each.
type Options struct {
	Authority            string
	AuthorityDisplayName string
	AuthorityKeySecret   string
	DefaultTrust         string
	PeersFile            string
	Namespace            string
	TicketSkew           time.Duration
	MetricsAddr          string
	MetricsSecure        bool
	ProbeAddr            string
	LeaderElect          bool
	LeaderElectNamespace string
	QPS                  float64
	Burst                int
	SliceWorkers         int
	TicketWorkers        int
	SliverWriters        int
	SharesPerNode        int
	SliverBackoff        time.Duration
	SliverBackoffMax     time.Duration
	Webhooks             bool
	WebhookHost          string
	WebhookPort          int
	WebhookCertDir       string
	WebhookCertMode      string
	WebhookCertSecret    string
	WebhookService       string
	WebhookConfiguration string
	WebhookExtraDNSNames string
	FlowLookupAddr       string
	LookupTrustedProxies string
	ArchiveURL           string
	Operator             lookup.Operator
	FeedAddr             string
	FeedCertDir          string
	FeedTimeout          time.Duration
	AgentNamespace       string
	AgentSelector        string
	AgentPort            int
}

// BindFlags registers the options on a flag set, with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Authority, "authority", "plc", "Name of this install's slice authority: the first part of slice full names.")
	fs.StringVar(&o.AuthorityDisplayName, "authority-display-name", "", "Human-readable name of the authority, shown on its Authority object.")
	fs.StringVar(&o.DefaultTrust, "default-trusted-authorities", "", "Comma-separated authorities a Site that sets no spec.trustedAuthorities trusts besides --authority, delegates included.")
	fs.StringVar(&o.PeersFile, "peers-file", "", "YAML list of peer authorities (name, displayName, keys) to keep as Authority objects; one dropped from the list is deleted, with its slices here. Empty: none are managed.")
	fs.StringVar(&o.AuthorityKeySecret, "authority-key-secret", "planetkube-authority-key", "Secret (in --namespace) holding the authority's Ed25519 private key; made at first start when absent.")
	fs.StringVar(&o.Namespace, "namespace", cli.EnvOr("POD_NAMESPACE", "planetkube-system"), "The manager's namespace, where the authority key Secret lives (default: $POD_NAMESPACE, else planetkube-system).")
	fs.DurationVar(&o.TicketSkew, "ticket-clock-skew", ticket.DefaultSkew, fmt.Sprintf("Clock skew allowed on tickets' iat, nbf and exp (at most %s).", ticket.MaxSkew))
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve the metrics over HTTPS to clients the API server authenticates (TokenReview) and authorizes (SubjectAccessReview: get on /metrics, as the ClusterRole planetkube-metrics-reader grants); false: plain HTTP to anyone who reaches the port.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	fs.StringVar(&o.LeaderElectNamespace, "leader-elect-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	// client-go's default of 20 QPS / 30 burst would make a 1,000-node slice
	// take 50 s to roll out; the API server takes far more.
	fs.Float64Var(&o.QPS, "kube-api-qps", 1000, "Queries per second the manager's API client may make.")
	fs.IntVar(&o.Burst, "kube-api-burst", 2000, "Burst of the manager's API client above its QPS.")
	fs.IntVar(&o.SliceWorkers, "slice-workers", 4, "Slices reconciled at the same time.")
	fs.IntVar(&o.TicketWorkers, "ticket-workers", 8, "Tickets redeemed at the same time.")
	fs.IntVar(&o.SliverWriters, "sliver-writers", 64, "Parallel API writes (sliver creations and deletions) per slice reconcile.")
	fs.IntVar(&o.SharesPerNode, "shares-per-node", cpushare.DefaultSharesPerNode, "Share units each node's unreserved CPU is divided into (a share-1 sliver requests 1/N of it).")
	fs.DurationVar(&o.SliverBackoff, "sliver-backoff", time.Second, "First wait before a failed sliver (say, rejected by the kubelet for OutOfcpu) is replaced again on the same node; it doubles with each failure.")
	fs.DurationVar(&o.SliverBackoffMax, "sliver-backoff-max", 15*time.Minute, "Longest wait before a failed sliver is replaced again.")
	fs.BoolVar(&o.Webhooks, "webhooks", true, "Serve the validating webhooks (config/webhook); the API server must be configured to call them.")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "Address the webhook server listens on (default: all).")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "Folder with the webhook server's tls.crt and tls.key (default: controller-runtime's, "+defaultCertDir()+").")
	fs.StringVar(&o.WebhookCertMode, "webhook-cert-mode", WebhookCertsSelf, "Who makes the webhook server's certificate: "+WebhookCertsSelf+" (the manager makes and renews a CA and certificate in --webhook-cert-secret, mounted at --webhook-cert-dir, and writes the CA into --webhook-configuration) or "+WebhookCertsFiles+" (someone else, say cert-manager, puts them in --webhook-cert-dir and the CA in the configuration).")
	fs.StringVar(&o.WebhookCertSecret, "webhook-cert-secret", "planetkube-webhook-cert", "With --webhook-cert-mode=self: the Secret, in --namespace, that holds the CA and the serving certificate.")
	fs.StringVar(&o.WebhookService, "webhook-service", "planetkube-webhook", "With --webhook-cert-mode=self: the webhook Service in --namespace; the certificate is for <service>.<namespace>.svc.")
	fs.StringVar(&o.WebhookConfiguration, "webhook-configuration", "planetkube-validating-webhooks", "With --webhook-cert-mode=self: the ValidatingWebhookConfiguration whose caBundle the manager keeps.")
	fs.StringVar(&o.WebhookExtraDNSNames, "webhook-extra-dns-names", "", "With --webhook-cert-mode=self: further DNS names for the certificate, comma-separated.")
	fs.StringVar(&o.FlowLookupAddr, "flow-lookup-address", ":9470", "Address of the cluster-wide flow lookup page (/) and JSON API (/api/v1/flows), which asks every node agent; 0 disables it.")
	fs.StringVar(&o.ArchiveURL, "archive-url", "", "Base URL of the install's flow archive (planetkube archiver's lookup, such as http://planetkube-archiver.planetkube-system.svc:9470): the cluster-wide lookup asks it with the nodes, for times they no longer hold; empty: none.")
	fs.StringVar(&o.LookupTrustedProxies, "lookup-trusted-proxies", "", "CIDRs of the proxies in front of the cluster-wide lookup (an Ingress controller's pods), comma-separated: their X-Forwarded-For names the client that the rate limit goes by; anyone else's is ignored.")
	o.Operator.BindFlags(fs)
	fs.StringVar(&o.FeedAddr, "feed-bind-address", "0", "Address of the federation feed (HTTPS, path "+feed.Path+"), which peers poll for the tickets of this install's slices that span them; 0 disables it.")
	fs.StringVar(&o.FeedCertDir, "feed-cert-dir", "", "Folder with the feed's tls.crt and tls.key (reloaded when they change); required with --feed-bind-address.")
	fs.DurationVar(&o.FeedTimeout, "feed-timeout", 30*time.Second, "Longest a poll of a peer's feed may take (connecting, the answer, reading it); a slower feed counts as unreachable.")
	fs.StringVar(&o.AgentNamespace, "agent-namespace", "planetkube-system", "Namespace of the node agents' pods.")
	fs.StringVar(&o.AgentSelector, "agent-selector", "app.kubernetes.io/component=node-agent", "Label selector of the node agents' pods.")
	fs.IntVar(&o.AgentPort, "agent-port", 9470, "Port of the node agents' lookup API.")
}

// CacheOptions scopes the informer cache: only PlanetKube's pods are cached,
// and managed fields are dropped, which keeps the manager's memory flat on
// large clusters.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{planetv1.LabelManagedBy: planetv1.ManagedByValue})},
		},
	}
}

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
		WebhookServer:           webhook.NewServer(webhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir}),
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "planetkube-manager.planetkube.io",
		LeaderElectionNamespace: o.LeaderElectNamespace,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := Setup(mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	ready := healthz.Ping
	if o.Webhooks {
		if ready, err = serveWebhooks(ctx, mgr, o); err != nil {
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

// Webhook certificate modes (--webhook-cert-mode).
const (
	WebhookCertsSelf  = "self"
	WebhookCertsFiles = "files"
)

// defaultCertDir is controller-runtime's default webhook certificate folder.
func defaultCertDir() string {
	return filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
}

// serveWebhooks arranges for the validating webhooks to be registered, and
// their server started, once the serving certificate is in
// --webhook-cert-dir: the manager's own (mode self: made by webhookcert,
// which also writes its CA into the webhook configuration), or one that
// someone else puts there (mode files: cert-manager, which may come after
// the pod starts). Until then the manager is not ready and the webhooks,
// failing open, are skipped; the returned check says so.
func serveWebhooks(ctx context.Context, mgr ctrl.Manager, o Options) (healthz.Checker, error) {
	dir := o.WebhookCertDir
	if dir == "" {
		dir = defaultCertDir()
	}
	w := &webhookStarter{mgr: mgr, o: o, dir: dir}
	switch o.WebhookCertMode {
	case WebhookCertsFiles:
	case WebhookCertsSelf:
		certs, err := webhookcert.Manage(ctx, mgr, webhookcert.Options{
			Namespace: o.Namespace, SecretName: o.WebhookCertSecret, Service: o.WebhookService,
			ExtraDNSNames: cli.SplitList(o.WebhookExtraDNSNames), Configuration: o.WebhookConfiguration, CertDir: dir,
		})
		if err != nil {
			return nil, err
		}
		w.certs = certs
	default:
		return nil, fmt.Errorf("--webhook-cert-mode %q: want %s or %s", o.WebhookCertMode, WebhookCertsSelf, WebhookCertsFiles)
	}
	if err := mgr.Add(w); err != nil {
		return nil, err
	}
	return w.check, nil
}

// webhookStarter is a runnable of every replica that waits for the
// webhook certificate, then registers the webhooks (which starts their
// server). An error in doing so stops the manager, so that the pod
// restarts rather than stay unready.
type webhookStarter struct {
	mgr     ctrl.Manager
	o       Options
	dir     string
	certs   <-chan struct{} // mode self: closed when ready; nil: wait for the files
	started atomic.Pointer[healthz.Checker]
}

// NeedLeaderElection: every replica serves the webhooks.
func (w *webhookStarter) NeedLeaderElection() bool { return false }

// Start waits for the certificate and registers the webhooks.
func (w *webhookStarter) Start(ctx context.Context) error {
	if w.certs != nil {
		select {
		case <-w.certs:
		case <-ctx.Done():
			return nil
		}
	} else if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		_, crt := os.Stat(filepath.Join(w.dir, "tls.crt"))
		_, key := os.Stat(filepath.Join(w.dir, "tls.key"))
		return crt == nil && key == nil, nil
	}); err != nil {
		return nil // stopped before the files came
	}
	if ctx.Err() != nil {
		return nil // stopping: the manager takes no new runnable
	}
	if err := setupWebhooks(w.mgr, w.o); err != nil {
		return err
	}
	check := w.mgr.GetWebhookServer().StartedChecker()
	w.started.Store(&check)
	ctrl.LoggerFrom(ctx).Info("Serving the webhooks", "certDir", w.dir, "mode", w.o.WebhookCertMode)
	return nil
}

// check is the readiness check: the webhook server answers.
func (w *webhookStarter) check(req *http.Request) error {
	if check := w.started.Load(); check != nil {
		return (*check)(req)
	}
	return errors.New("waiting for the webhook certificate in " + w.dir)
}

// PodCacheOptions scope the view's pod cache: every pod bound to a node and
// not finished, stripped to what the view reads (clusterview.StripPod).
func PodCacheOptions(mgr ctrl.Manager) cache.Options {
	return cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {
				Field:     fields.ParseSelectorOrDie("spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"),
				Transform: clusterview.StripPod,
			},
		},
	}
}

// everyReplica makes the manager start a cache with its own, on every
// replica and before the runnables that read it (a bare cache.Cache would
// start on the leader only).
type everyReplica struct{ cache.Cache }

// GetCache puts it in the manager's group of caches.
func (c everyReplica) GetCache() cache.Cache { return c.Cache }

// ownSigner gives this install's key, read once from its Secret.
func ownSigner(mgr ctrl.Manager, o Options) *authority.SignerSource {
	return &authority.SignerSource{Reader: mgr.GetAPIReader(), Namespace: o.Namespace, SecretName: o.AuthorityKeySecret, Authority: o.Authority}
}

// FederationSecretCacheOptions scope the cache of the Secrets that hold the
// home slices' tickets for their peers: those of the manager's namespace
// with their label, and no other Secret.
func FederationSecretCacheOptions(mgr ctrl.Manager, namespace string) cache.Options {
	return cache.Options{
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{namespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{planetv1.LabelFederationTickets: "true"}),
			},
		},
	}
}

// Setup registers every PlanetKube controller with the manager, and the
// shared view of the cluster they read.
func Setup(mgr ctrl.Manager, o Options) error {
	defaultTrust := cli.SplitList(o.DefaultTrust)
	view := clusterview.New(nil)
	pods, err := cache.New(mgr.GetConfig(), PodCacheOptions(mgr))
	if err != nil {
		return fmt.Errorf("creating the pod cache: %w", err)
	}
	if err := mgr.Add(pods); err != nil {
		return err
	}
	if err := view.Feed(context.Background(), mgr.GetCache(), pods); err != nil {
		return fmt.Errorf("feeding the cluster view: %w", err)
	}
	if err := mgr.Add(view); err != nil {
		return err
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
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Site controller: %w", err)
	}
	if err := (&controllers.SliceReconciler{
		Client:        mgr.GetClient(),
		Recorder:      mgr.GetEventRecorder("slice-controller"),
		View:          view,
		Backoff:       flowcontrol.NewBackOff(o.SliverBackoff, o.SliverBackoffMax),
		Authority:     o.Authority,
		DefaultTrust:  defaultTrust,
		SliverWriters: o.SliverWriters,
		SharesPerNode: int32(o.SharesPerNode),
		Workers:       o.SliceWorkers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Slice controller: %w", err)
	}
	if err := (&controllers.ResourcePoolReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("resourcepool-controller"),
		View:     view,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ResourcePool controller: %w", err)
	}
	if err := mgr.Add(&authority.Bootstrap{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Authority: o.Authority,
		Namespace: o.Namespace, SecretName: o.AuthorityKeySecret, DisplayName: o.AuthorityDisplayName,
	}); err != nil {
		return err
	}
	if o.PeersFile != "" {
		peers, err := readPeersFile(o.PeersFile, o.Authority)
		if err != nil {
			return err
		}
		if err := mgr.Add(&authority.PeerSync{Client: mgr.GetClient(), Peers: peers}); err != nil {
			return err
		}
	}
	signer := ownSigner(mgr, o)
	peers := &controllers.PeerClients{Reader: mgr.GetAPIReader(), Namespace: o.Namespace, Scheme: mgr.GetScheme(), Now: time.Now}
	if err := (&controllers.AuthorityReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("authority-controller"),
		Local:    o.Authority,
		Signer:   signer,
		Poller:   &controllers.Poller{Authority: o.Authority, Signer: signer, Peers: peers, Skew: o.TicketSkew, Timeout: o.FeedTimeout, DefaultTrust: defaultTrust},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Authority controller: %w", err)
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
		return fmt.Errorf("setting up the Ticket controller: %w", err)
	}
	fedSecrets, err := cache.New(mgr.GetConfig(), FederationSecretCacheOptions(mgr, o.Namespace))
	if err != nil {
		return fmt.Errorf("creating the federation tickets' cache: %w", err)
	}
	// Started on every replica, with the manager's own cache: each serves the feed.
	if err := mgr.Add(everyReplica{fedSecrets}); err != nil {
		return err
	}
	if err := mgr.Add(&controllers.RecordPruner{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: o.Namespace, Skew: o.TicketSkew}); err != nil {
		return err
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
		return fmt.Errorf("setting up the federation controller: %w", err)
	}
	if o.FeedAddr != "0" && o.FeedAddr != "" {
		if o.FeedCertDir == "" {
			return errors.New("--feed-bind-address needs --feed-cert-dir (the feed is served over HTTPS only)")
		}
		if err := mgr.Add(&feedServer{addr: o.FeedAddr, certDir: o.FeedCertDir, handler: FeedHandler(mgr.GetClient(), fedSecrets, signer, o)}); err != nil {
			return err
		}
	}
	if o.FlowLookupAddr != "0" && o.FlowLookupAddr != "" {
		if err := setupFlowLookup(mgr, o); err != nil {
			return err
		}
	}
	return nil
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

// setupWebhooks registers the validating webhooks with the webhook server.
func setupWebhooks(mgr ctrl.Manager, o Options) error {
	if err := (&admission.SliceValidator{}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Slice webhook: %w", err)
	}
	if err := (&admission.TicketValidator{Reader: mgr.GetClient(), Authority: o.Authority, Own: ownSigner(mgr, o), DefaultTrust: cli.SplitList(o.DefaultTrust), Skew: o.TicketSkew}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Ticket webhook: %w", err)
	}
	if err := (&admission.ResourcePoolValidator{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ResourcePool webhook: %w", err)
	}
	return nil
}

// setupFlowLookup serves the cluster-wide flow lookup (FlowLookupHandler).
func setupFlowLookup(mgr ctrl.Manager, o Options) error {
	handler, err := FlowLookupHandler(mgr.GetAPIReader(), mgr.GetClient(), o)
	if err != nil {
		return err
	}
	if err := mgr.Add(&lookup.Server{Addr: o.FlowLookupAddr, Handler: handler}); err != nil {
		return fmt.Errorf("adding the flow lookup server: %w", err)
	}
	return nil
}

// FlowLookupHandler is the cluster-wide flow lookup: the node agents' page
// and API, answered by asking every agent and merging what they return. The
// agents are found by listing their pods through agents (the API, not the
// cache, which holds only slivers); slices resolves slice details.
func FlowLookupHandler(agents, slices client.Reader, o Options) (http.Handler, error) {
	sel, err := labels.Parse(o.AgentSelector)
	if err != nil {
		return nil, fmt.Errorf("--agent-selector: %w", err)
	}
	if o.AgentPort < 1 || o.AgentPort > 65535 {
		return nil, fmt.Errorf("--agent-port must be in 1..65535, got %d", o.AgentPort)
	}
	if err := o.Operator.Validate(); err != nil {
		return nil, err
	}
	proxies, err := cli.ParseCIDRs("--lookup-trusted-proxies", o.LookupTrustedProxies, "10.244.0.0/16")
	if err != nil {
		return nil, err
	}
	// The agents are listed at most every 10 s, not on every lookup.
	targets := fanout.CachedTargets(fanout.PodTargets(agents, o.AgentNamespace, sel, o.AgentPort), 10*time.Second, nil)
	if o.ArchiveURL != "" {
		if u, err := url.Parse(o.ArchiveURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--archive-url: %q is not an http(s) URL such as http://planetkube-archiver.planetkube-system.svc:9470", o.ArchiveURL)
		}
	}
	fanout := fanout.New(targets, fanout.Options{Archive: o.ArchiveURL})
	dir := &slicedir.Directory{Reader: slices, Authority: o.Authority}
	return lookup.NewHandler(fanout, dir, lookup.Options{Operator: o.Operator, TrustedProxies: proxies}), nil
}
