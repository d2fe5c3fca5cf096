package manager

import (
	"flag"
	"fmt"
	"time"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/cpushare"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/ticket"
)

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
	PprofAddr            string
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
	UsageInterval        time.Duration
	StatusCoalesce       time.Duration
	KeysRecheck          time.Duration
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
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "Address of Go's pprof endpoints (/debug/pprof/), plain HTTP to anyone who reaches it: a loopback address, or reached with kubectl port-forward; 0 disables them.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	fs.StringVar(&o.LeaderElectNamespace, "leader-elect-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	// client-go's default of 20 QPS / 30 burst would make a 1,000-node slice
	// take 50 s to roll out; the API server takes far more.
	fs.Float64Var(&o.QPS, "kube-api-qps", 1000, "Queries per second the manager's API client may make.")
	fs.IntVar(&o.Burst, "kube-api-burst", 2000, "Burst of the manager's API client above its QPS.")
	fs.IntVar(&o.SliceWorkers, "slice-workers", 4, "Slices reconciled at the same time.")
	fs.IntVar(&o.TicketWorkers, "ticket-workers", 16, "Tickets redeemed at the same time.")
	fs.IntVar(&o.SliverWriters, "sliver-writers", 256, "Parallel API writes (sliver creations and deletions) of all slice reconciles together.")
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
	fs.DurationVar(&o.StatusCoalesce, "status-coalesce", 2*time.Second, fmt.Sprintf("How long a change to a Slice's status may wait to be written with the changes after it, while only its slivers' counts, placement and messages move (a node joining costs a slice one status write, not one per sliver transition); the first status, a new generation or an error is written at once (at most %s; 0 writes every change at once).", maxStatusCoalesce))
	fs.DurationVar(&o.KeysRecheck, "keys-recheck", 10*time.Minute, "How often at most new slivers write their slice's users' keys Secret again when nothing says it changed (the manager does not watch Secrets: the write brings back one deleted by hand); changed keys are written at once. 0: with every new sliver.")
	fs.DurationVar(&o.UsageInterval, "usage-interval", 5*time.Minute, "How often the leader asks every node agent what the slices used (their usage report) and writes Slices' status.usage and Sites' status.contribution, where they changed (at least 10s; 0 disables it).")
}
