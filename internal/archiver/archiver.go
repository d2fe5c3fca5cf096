// Package archiver is the `planetkube archiver` command: one replica (the
// chart's StatefulSet, with a PersistentVolume) that downloads every node
// agent's sealed flow segments into the install's archive and applies the
// archive's own retention (internal/flow/archive).
package archiver

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/flow/archive"
	"github.com/planetkube/planetkube/internal/flow/archive/archivetls"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/httpserver"
	"github.com/planetkube/planetkube/internal/scheme"
)

// The archiver lists the node agents' pods, and requests tokens of its own
// ServiceAccount for the agents' segment servers (audience
// planetkube-archive, worthless to the API server). `make manifests` turns
// these markers into config/archiver/role.yaml.
// +kubebuilder:rbac:groups="",namespace=planetkube-agent,resources=pods,verbs=list
// It lists the nodes to tell what the archive lacks of those that left.
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list
// It makes and renews the TLS Secret the agents serve segments with.
// +kubebuilder:rbac:groups="",namespace=planetkube-agent,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=planetkube-agent,resources=secrets,verbs=get;update,resourceNames=planetkube-archive-tls
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=serviceaccounts/token,verbs=create,resourceNames=planetkube-archiver

// Options are the command's flags.
type Options struct {
	Dir            string
	Interval       time.Duration
	Retention      time.Duration
	MaxBytes       int64
	AgentNamespace string
	AgentSelector  string
	AgentPort      int
	Namespace      string
	ServiceAccount string
	MetricsAddr    string
	ProbeAddr      string
	ListenAddr     string
	AgentTLS       string
	Unlimited      string
}

// BindFlags registers the flags with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Dir, "archive-dir", "/var/lib/planetkube/archive", "The archive's folder (a PersistentVolume): one folder per node of its sealed store segments.")
	fs.DurationVar(&o.Interval, "interval", archive.DefaultInterval, "How often every agent's new segments are downloaded.")
	fs.DurationVar(&o.Retention, "retention", archive.DefaultRetention, "How long an archived segment is kept after its last record.")
	fs.Int64Var(&o.MaxBytes, "max-bytes", 0, "Cap on the archive's size in bytes (the oldest segments go first); 0: none.")
	fs.StringVar(&o.AgentNamespace, "agent-namespace", "planetkube-agent", "Namespace of the node agents' pods.")
	fs.StringVar(&o.AgentSelector, "agent-selector", "app.kubernetes.io/component=node-agent", "Label selector of the node agents' pods.")
	fs.StringVar(&o.AgentTLS, "agent-tls", "secret", "How the agents' segment servers are reached: secret (HTTPS, with a CA the archiver keeps in the Secret "+archivetls.SecretName+" of --agent-namespace, whose certificate the agents serve: their --archive-tls-dir) or plain (HTTP: tokens and segments cross the node network in the clear).")
	fs.IntVar(&o.AgentPort, "agent-port", 9473, "Port of the agents' segment servers (their --archive-listen-address).")
	fs.StringVar(&o.Namespace, "namespace", cli.EnvOr("POD_NAMESPACE", "planetkube-system"), "The archiver's namespace (default: $POD_NAMESPACE, else planetkube-system).")
	fs.StringVar(&o.ServiceAccount, "service-account", "planetkube-archiver", "The archiver's ServiceAccount (in --namespace), whose tokens for audience planetkube-archive the agents accept (their --archive-readers).")
	fs.StringVar(&o.ListenAddr, "listen-address", ":9470", "Address of the archive's flow lookup (the agents' API, /api/v1/flows, over every archived node), which the manager's cluster-wide lookup asks (its --archive-url); 0 disables it.")
	fs.StringVar(&o.Unlimited, "lookup-unlimited", "", "Client networks (CIDRs, comma-separated) the archive's lookup does not rate-limit, such as the manager's pod network.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":9474", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":9475", "Address of the /healthz and /readyz endpoints; 0 disables them.")
}

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("--archive-dir must not be empty"))
	}
	if o.Interval <= 0 || o.Retention <= 0 {
		errs = append(errs, errors.New("--interval and --retention must be positive"))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("--max-bytes must not be negative, got %d", o.MaxBytes))
	}
	if o.AgentPort < 1 || o.AgentPort > 65535 {
		errs = append(errs, fmt.Errorf("--agent-port must be in 1..65535, got %d", o.AgentPort))
	}
	if _, err := labels.Parse(o.AgentSelector); err != nil {
		errs = append(errs, fmt.Errorf("--agent-selector: %w", err))
	}
	if _, err := cli.ParseCIDRs("--lookup-unlimited", o.Unlimited, "10.244.0.0/16"); err != nil {
		errs = append(errs, err)
	}
	if o.AgentTLS != "secret" && o.AgentTLS != "plain" {
		errs = append(errs, fmt.Errorf("--agent-tls must be secret or plain, got %q", o.AgentTLS))
	}
	if o.ServiceAccount == "" || o.Namespace == "" || o.AgentNamespace == "" {
		errs = append(errs, errors.New("--service-account, --namespace and --agent-namespace must not be empty"))
	}
	return errors.Join(errs...)
}

// Main parses the flags and archives until SIGTERM or SIGINT.
func Main(args []string) error {
	var o Options
	if err := cli.Parse("archiver", args, o.BindFlags); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return fmt.Errorf("--archive-dir: %w", err)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.ProbeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the archiver's manager: %w", err)
	}
	if err := Setup(mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctx := signals.SetupSignalHandler()
	ctrl.Log.WithName("archiver").Info("Starting the archiver", "dir", o.Dir, "interval", o.Interval, "retention", o.Retention)
	return mgr.Start(ctx)
}

// Setup adds the archiver to mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	sel, err := labels.Parse(o.AgentSelector)
	if err != nil {
		return fmt.Errorf("--agent-selector: %w", err)
	}
	m := archive.NewMetrics()
	metrics.Registry.MustRegister(m.Collectors()...)
	if o.ListenAddr != "0" && o.ListenAddr != "" {
		unlimited, err := cli.ParseCIDRs("--lookup-unlimited", o.Unlimited, "10.244.0.0/16")
		if err != nil {
			return err
		}
		reader := &archive.Reader{Dir: o.Dir, Retention: o.Retention}
		if err := mgr.Add(reader); err != nil { // refreshes it in the background
			return err
		}
		h := lookup.NewHandler(reader, nil, lookup.Options{Unlimited: unlimited})
		if err := mgr.Add(&httpserver.Server{Addr: o.ListenAddr, Handler: h, What: "archive lookups"}); err != nil {
			return err
		}
	}
	a := &archive.Archiver{
		Fetcher:  &archive.Fetcher{Dir: o.Dir, Tokens: &archive.ServiceAccountTokens{Client: mgr.GetClient(), Namespace: o.Namespace, Name: o.ServiceAccount}},
		Targets:  fanout.PodTargets(mgr.GetAPIReader(), o.AgentNamespace, sel, o.AgentPort),
		Nodes:    archive.ClusterNodes(mgr.GetAPIReader()),
		Interval: o.Interval, Retention: o.Retention, MaxBytes: o.MaxBytes,
		Metrics: m, Log: ctrl.Log.WithName("archiver"),
	}
	if o.AgentTLS == "secret" {
		// The Secret is read and written directly: no cache of Secrets.
		c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
		if err != nil {
			return err
		}
		a.TLS = func(ctx context.Context) (*tls.Config, error) {
			cas, err := archivetls.Ensure(ctx, c, o.AgentNamespace, time.Now())
			if err != nil {
				return nil, err
			}
			return archivetls.ClientConfig(cas), nil
		}
	}
	return mgr.Add(a)
}
