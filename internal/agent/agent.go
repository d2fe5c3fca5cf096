// Package agent is the node agent (`planetkube node-agent`), PlanetKube's
// PlanetFlow: on every node it captures the host's conntrack flows, attributes
// each to the sliver (and slice) that sent it by (IP, time), stores the flows
// locally and serves a lookup page and JSON API that answer "who sent traffic
// to this IP at that time".
//
// It runs as a DaemonSet with host network and NET_ADMIN. It reads (never
// writes) the Pods of its node and the cluster's Slices and Sites.
package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/attr"
	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/agent/capture"
	"github.com/planetkube/planetkube/internal/agent/cpu"
	"github.com/planetkube/planetkube/internal/agent/memory"
	"github.com/planetkube/planetkube/internal/agent/memory/policy"
	agentusage "github.com/planetkube/planetkube/internal/agent/usage"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/flow/archive/archivetls"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/slicedir"
	"github.com/planetkube/planetkube/internal/flow/store"
	"github.com/planetkube/planetkube/internal/httpserver"
	"github.com/planetkube/planetkube/internal/usage"
)

// Options are the agent's settings, one flag each.
type Options struct {
	NodeName         string
	Authority        string
	DataDir          string
	Retention        time.Duration
	MaxBytes         int64
	SegmentAge       time.Duration
	ListenAddr       string
	PublicAddr       string
	ArchiveAddr      string
	ArchiveReaders   string
	ArchiveTLSDir    string
	MetricsAddr      string
	ProbeAddr        string
	PprofAddr        string
	NetNS            string
	DumpInterval     time.Duration
	ReadBuffer       int
	PruneInterval    time.Duration
	EnableAccounting bool
	MaxResults       int
	RatePerSecond    float64
	Burst            int
	Unlimited        string
	SetupOnly        bool
	CPUWeights       bool
	CgroupMountinfo  string
	CgroupRoot       string
	// KubeletCgroupRoot is the kubelet's cgroupRoot: where, in every
	// hierarchy, it lays out kubepods ("/" unless the kubelet sets one).
	KubeletCgroupRoot string
	CPUWeightEvery    time.Duration
	MemoryWatchdog    bool
	MemorySource      string
	MemoryWarnAt      float64
	MemoryResetAt     float64
	MemoryResetEvery  time.Duration
	MemoryCheckEvery  time.Duration
	UsageInterval     time.Duration
	Bandwidth         BandwidthOptions
	Export            ExportOptions
	Operator          lookup.Operator
}

// BandwidthOptions are the flags of bandwidth shaping (PlanetLab's bwmon).
type BandwidthOptions struct {
	Enabled      bool
	Uplink       string
	NodeCap      uint64
	MinRate      uint64
	Budget       uint64
	ExemptBudget uint64
	Threshold    float64
	Period       time.Duration
	Exempt       string
	ExemptCap    uint64
	Interval     time.Duration
	Ledger       string
}

// DefaultListenAddr is where the lookup page and API listen by default.
const DefaultListenAddr = ":9470"

// BindFlags registers the options on a flag set, with their defaults.
// NODE_NAME in the environment (the DaemonSet sets it from spec.nodeName)
// is the default node name.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node this agent runs on (default: $NODE_NAME).")
	fs.StringVar(&o.Authority, "authority", "plc", "Name of this install's slice authority: the first part of slice full names.")
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/planetkube/flows", "Folder of the flow store.")
	fs.DurationVar(&o.Retention, "retention", store.DefaultRetention, "How long flows are kept after they end.")
	fs.Int64Var(&o.MaxBytes, "max-bytes", 0, "Cap on the flow store's size on disk in bytes; 0 means no cap (retention by age only).")
	fs.DurationVar(&o.SegmentAge, "segment-age", store.DefaultSegmentAge, "How long the store appends to a segment before sealing it (then indexed, and offered to the archiver).")
	fs.StringVar(&o.ListenAddr, "listen-address", DefaultListenAddr, "Address of the lookup page (/) and JSON API (/api/v1/flows), and of the usage report ("+usage.Path+").")
	fs.StringVar(&o.ArchiveAddr, "archive-listen-address", "0", "Address serving the store's sealed segments to the install's archiver (GET "+segments.ListPath+"), to --archive-readers only; 0 disables it.")
	fs.StringVar(&o.ArchiveReaders, "archive-readers", segments.DefaultReader, "With --archive-listen-address: the users (ServiceAccounts, comma-separated) whose tokens for audience "+segments.Audience+" may download segments.")
	fs.StringVar(&o.ArchiveTLSDir, "archive-tls-dir", "", "With --archive-listen-address: serve HTTPS with the certificate and key in this folder ("+archivetls.KeyCert+", "+archivetls.KeyCertPK+": the archiver's Secret "+archivetls.SecretName+", mounted; read again as it is renewed); empty: plain HTTP.")
	fs.StringVar(&o.PublicAddr, "public-listen-address", "", "A second address serving the same lookup page and API, for strangers on the node's own address (such as :80); empty: none.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":9471", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":9472", "Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "Address of Go's pprof endpoints (/debug/pprof/), plain HTTP to anyone who reaches it: a loopback address, or reached with kubectl port-forward; 0 disables them.")
	fs.StringVar(&o.NetNS, "netns", "", "Network namespace to audit, as a path such as /run/netns/x (default: the agent's own, the host's in the DaemonSet).")
	fs.DurationVar(&o.DumpInterval, "dump-interval", time.Minute, "How often open flows are dumped, so that long-lived flows are recorded before they end.")
	fs.IntVar(&o.ReadBuffer, "read-buffer", 32<<20, "Receive buffer of the conntrack event socket, in bytes.")
	fs.DurationVar(&o.PruneInterval, "prune-interval", 10*time.Minute, "How often the store applies its retention.")
	fs.BoolVar(&o.EnableAccounting, "enable-accounting", true, "Turn on conntrack byte accounting and timestamps (net.netfilter.nf_conntrack_acct and _timestamp).")
	fs.IntVar(&o.MaxResults, "max-results", 1000, "Most flows one lookup returns.")
	fs.Float64Var(&o.RatePerSecond, "lookup-rate", 5, "Lookups per second allowed to each client IP.")
	fs.IntVar(&o.Burst, "lookup-burst", 10, "Lookups a client IP may make in a burst above its rate.")
	fs.BoolVar(&o.CPUWeights, "cpu-weights", false, "Keep each sliver pod's cgroup CPU weight (cpu.shares, or cpu.weight on cgroup v2) at its CPU request's, re-applied every --cpu-weight-interval; needs the host's cgroup tree.")
	fs.StringVar(&o.CgroupMountinfo, "cgroup-mountinfo", "/proc/self/mountinfo", "With --cpu-weights and no --cgroup-root: the mountinfo file the cpu cgroup hierarchy is found in.")
	fs.StringVar(&o.KubeletCgroupRoot, "kubelet-cgroup-root", "/", "The kubelet's cgroupRoot (KubeletConfiguration): the folder of every cgroup hierarchy under which it lays out the pods' cgroups (kubepods). A DaemonSet's args may name the node as $(NODE_NAME), which Kubernetes expands.")
	fs.StringVar(&o.CgroupRoot, "cgroup-root", "", "The host's cgroup folder as mounted into the agent (such as /host/sys/fs/cgroup): with --cpu-weights the cpu hierarchy is found in it (v2, or v1 at cpu/; empty: from --cgroup-mountinfo); the memory watchdog and the usage report read it too (empty: /sys/fs/cgroup).")
	fs.DurationVar(&o.CPUWeightEvery, "cpu-weight-interval", cpu.DefaultInterval, "With --cpu-weights: how often the weights are re-applied (the kubelet and systemd rewrite cgroups).")
	fs.BoolVar(&o.MemoryWatchdog, "memory-watchdog", false, "Watch the node's memory (PlanetLab's pl_mom): warn at --memory-warn-at, and at --memory-reset-at reset the sliver using the most memory (delete its pod, with an event on its Slice); reads the slivers' memory cgroups under --cgroup-root (default /sys/fs/cgroup).")
	fs.StringVar(&o.MemorySource, "memory-source", string(memory.SourceNode), "With --memory-watchdog: the memory the marks are fractions of: node (/proc/meminfo: the whole machine's) or pods (the working set of the kubelet's kubepods cgroup, under --kubelet-cgroup-root, against its limit: the node's allocatable when the kubelet's enforceNodeAllocatable includes pods).")
	fs.Float64Var(&o.MemoryWarnAt, "memory-warn-at", 0.85, "With --memory-watchdog: the fraction of node memory in use that warns (an event on the Node).")
	fs.Float64Var(&o.MemoryResetAt, "memory-reset-at", 0.90, "With --memory-watchdog: the fraction of node memory in use that resets the biggest sliver.")
	fs.DurationVar(&o.MemoryResetEvery, "memory-reset-interval", 5*time.Minute, "With --memory-watchdog: the least time between two resets.")
	fs.DurationVar(&o.MemoryCheckEvery, "memory-check-interval", 30*time.Second, "With --memory-watchdog: how often the node's memory is read (pl_mom: 30 s).")
	fs.DurationVar(&o.UsageInterval, "usage-interval", agentusage.DefaultInterval, "How often the slivers' CPU time is read (from their cgroups under --cgroup-root) for the usage report ("+usage.Path+" on --listen-address), which answers from the last reading.")
	o.Bandwidth.bindFlags(fs)
	o.Export.bindFlags(fs)
	o.Operator.BindFlags(fs)
	fs.BoolVar(&o.SetupOnly, "setup-only", false, "Turn on conntrack accounting and timestamps, then exit (the DaemonSet's privileged init container).")
	fs.StringVar(&o.Unlimited, "lookup-unlimited", "", "Comma-separated networks (CIDRs) whose clients are not rate-limited, such as the manager's pod network: its cluster-wide lookup asks every agent on behalf of all its own clients.")
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) is required"))
	}
	if o.Authority == "" {
		errs = append(errs, errors.New("--authority must not be empty"))
	}
	if o.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if o.Retention <= 0 {
		errs = append(errs, fmt.Errorf("--retention must be positive, got %v", o.Retention))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("--max-bytes must not be negative, got %d", o.MaxBytes))
	}
	if o.DumpInterval <= 0 || o.PruneInterval <= 0 || o.SegmentAge <= 0 {
		errs = append(errs, errors.New("--dump-interval, --prune-interval and --segment-age must be positive"))
	}
	if o.UsageInterval < 0 {
		errs = append(errs, fmt.Errorf("--usage-interval must not be negative, got %v", o.UsageInterval))
	}
	if _, err := o.unlimited(); err != nil {
		errs = append(errs, err)
	}
	if o.ArchiveAddr != "0" && o.ArchiveAddr != "" && len(cli.SplitList(o.ArchiveReaders)) == 0 {
		errs = append(errs, errors.New("--archive-readers: give the archiver's user (such as "+segments.DefaultReader+")"))
	}
	if o.ArchiveTLSDir != "" && (o.ArchiveAddr == "0" || o.ArchiveAddr == "") {
		errs = append(errs, errors.New("--archive-tls-dir is for the segment server: give --archive-listen-address too"))
	}
	if o.PublicAddr != "" && o.PublicAddr == o.ListenAddr {
		errs = append(errs, fmt.Errorf("--public-listen-address %s is --listen-address already; give another port, or none", o.PublicAddr))
	}
	if _, err := o.memorySource(); err != nil {
		errs = append(errs, fmt.Errorf("--memory-source: %w", err))
	}
	if o.Bandwidth.Enabled {
		errs = append(errs, o.Bandwidth.validate())
	}
	errs = append(errs, o.Operator.Validate(), o.Export.validate())
	if o.MaxResults < 1 || o.MaxResults > store.MaxLimit-1 {
		errs = append(errs, fmt.Errorf("--max-results must be in 1..%d, got %d", store.MaxLimit-1, o.MaxResults))
	}
	return errors.Join(errs...)
}

// memorySource parses --memory-source; empty (Options not from flags) is
// the default, node.
func (o *Options) memorySource() (memory.Source, error) {
	if o.MemorySource == "" {
		return memory.SourceNode, nil
	}
	return memory.ParseSource(o.MemorySource)
}

// unlimited parses --lookup-unlimited.
func (o *Options) unlimited() ([]netip.Prefix, error) {
	return cli.ParseCIDRs("--lookup-unlimited", o.Unlimited, "10.244.0.0/16")
}

// Main parses the flags and runs the agent until SIGTERM or SIGINT.
func Main(args []string) error {
	var o Options
	if err := cli.Parse("node-agent", args, o.BindFlags); err != nil {
		return err
	}
	if o.SetupOnly {
		if err := capture.EnableAccounting(o.NetNS); err != nil {
			return fmt.Errorf("turning on conntrack accounting: %w", err)
		}
		ctrl.Log.WithName("node-agent").Info("Turned on conntrack accounting and timestamps", "netns", o.NetNS)
		return nil
	}
	if err := o.Validate(); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return Run(ctrl.SetupSignalHandler(), cfg, o)
}

// Run runs the agent until ctx ends. Records committed to the store before
// it returns (or before the process is killed) are kept.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	log := ctrl.Log.WithName("node-agent")
	since := time.Now()
	if err := o.Validate(); err != nil {
		return err
	}
	if o.EnableAccounting {
		if err := capture.EnableAccounting(o.NetNS); err != nil {
			return fmt.Errorf("turning on conntrack accounting: %w", err)
		}
	}
	flows, err := store.Open(ctx, store.Options{Dir: o.DataDir, Retention: o.Retention, MaxBytes: o.MaxBytes, SegmentAge: o.SegmentAge})
	if err != nil {
		return err
	}
	defer func() {
		if err := flows.Close(); err != nil {
			log.Error(err, "Closing the flow store")
		}
	}()

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme(),
		Cache:                  cacheOptions(o.NodeName),
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.ProbeAddr,
		PprofBindAddress:       o.PprofAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the agent's manager: %w", err)
	}
	dir := &slicedir.Directory{Reader: mgr.GetCache(), Authority: o.Authority}
	tracker := &PodTracker{History: attr.NewHistory(), FullName: dir.FullName}
	podsSynced, err := watchPods(ctx, mgr.GetCache(), tracker)
	if err != nil {
		return err
	}
	use, err := usageCollector(ctx, mgr, o, since, tracker.sliceOf)
	if err != nil {
		return err
	}
	m, capMetrics := processMetrics(flows)
	exporter, err := o.Export.exporter()
	if err != nil {
		return err
	}
	pipe := &pipeline{store: flows, history: tracker.History, metrics: m, log: log, recorded: use.CountFlows}
	if exporter != nil {
		pipe.export = exporter.Export
		if err := mgr.Add(exporter); err != nil {
			return err
		}
	}
	capturer := &captureRunnable{o: o, podsSynced: podsSynced, pipe: pipe, metrics: capMetrics}
	if err := mgr.Add(capturer); err != nil {
		return err
	}
	if err := mgr.Add(&pruner{store: flows, history: tracker.History, every: o.PruneInterval, retention: o.Retention, metrics: m, log: log}); err != nil {
		return err
	}
	unlimited, _ := o.unlimited() // validated above
	handler := lookup.NewHandler(flows, dir, lookup.Options{
		MaxResults: o.MaxResults, RatePerSecond: o.RatePerSecond, Burst: o.Burst, NodeName: o.NodeName, Unlimited: unlimited,
		Operator: o.Operator, Retention: o.Retention, Oldest: func() time.Time { return flows.Stats().Oldest },
	})
	// The usage report on the API port only: the public page is for
	// strangers asking about traffic.
	if err := mgr.Add(&httpserver.Server{Addr: o.ListenAddr, Handler: withUsage(use, handler)}); err != nil {
		return err
	}
	if o.PublicAddr != "" {
		if err := mgr.Add(&httpserver.Server{Addr: o.PublicAddr, Handler: handler, What: "the public lookup page"}); err != nil {
			return err
		}
	}
	if o.ArchiveAddr != "0" && o.ArchiveAddr != "" {
		seg := &segments.Handler{Source: flows, Auth: segments.TokenReviewer{Client: mgr.GetClient()}, Readers: cli.SplitList(o.ArchiveReaders), Node: o.NodeName}
		srv := &httpserver.Server{Addr: o.ArchiveAddr, Handler: seg, What: "segment downloads"}
		if o.ArchiveTLSDir != "" {
			srv.TLS = archivetls.ServerConfig(o.ArchiveTLSDir)
		}
		if err := mgr.Add(srv); err != nil {
			return err
		}
	}
	if o.CPUWeights {
		if err := addCPUWeights(mgr, o); err != nil {
			return err
		}
	}
	if o.MemoryWatchdog {
		if err := addMemoryWatchdog(mgr, o); err != nil {
			return err
		}
	}
	if o.Bandwidth.Enabled {
		loop, err := addBandwidth(mgr, o, tracker.sliceOf)
		if err != nil {
			return err
		}
		use.Bandwidth = loop.Today
	} else if removed, err := bandwidth.RemoveLeftovers(o.NetNS, o.Bandwidth.Uplink); err != nil {
		log.Error(err, "Removing the bandwidth shaping an earlier agent left")
	} else if removed {
		log.Info("Removed the bandwidth shaping an earlier agent left: --bandwidth is off")
	}
	if err := mgr.Add(use); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("capture", capturer.ready); err != nil {
		return err
	}
	log.Info("Starting node agent", "node", o.NodeName, "dataDir", o.DataDir, "listen", o.ListenAddr, "netns", o.NetNS)
	return mgr.Start(ctx)
}

// cacheOptions caches the Pods of this node only, and Slices and Sites, with
// managed fields dropped.
func cacheOptions(node string) cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", node)},
		},
	}
}

// watchPods feeds the tracker from the Pod informer; the returned function
// says when the informer's first list has been delivered.
func watchPods(ctx context.Context, c cache.Cache, t *PodTracker) (func() bool, error) {
	return onPods(ctx, c, t.Update, t.Delete)
}

// onPods hands the Pod informer's pods to update (added or changed) and
// remove (deleted); the returned function says when the informer's first
// list has been delivered.
func onPods(ctx context.Context, c cache.Cache, update, remove func(*corev1.Pod)) (func() bool, error) {
	inf, err := c.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("getting the Pod informer: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				update(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				update(p)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				remove(p)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching Pods: %w", err)
	}
	return reg.HasSynced, nil
}

// scheme has the kinds the agent reads: core Kubernetes and PlanetKube's.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(planetv1.AddToScheme(s))
	return s
}

// addCPUWeights adds the loop that keeps the sliver pods' CPU weights.
func addCPUWeights(mgr ctrl.Manager, o Options) error {
	h, err := cpuHierarchy(o)
	if err != nil {
		return fmt.Errorf("--cpu-weights: %w", err)
	}
	h.Root = filepath.Join(h.Root, o.KubeletCgroupRoot)
	m := cpu.NewMetrics()
	metrics.Registry.MustRegister(m.Fixed, m.Errors)
	ctrl.Log.WithName("node-agent").Info("Keeping sliver CPU weights", "hierarchy", h.Root, "file", h.File(), "every", o.CPUWeightEvery)
	return mgr.Add(&cpu.Loop{Enforcer: &cpu.Enforcer{Hierarchy: h}, Pods: sliverPods(mgr), Interval: o.CPUWeightEvery, Metrics: m})
}

// hostCgroupRoot is the host's cgroup folder: --cgroup-root, or
// /sys/fs/cgroup.
func (o *Options) hostCgroupRoot() string {
	if o.CgroupRoot == "" {
		return "/sys/fs/cgroup"
	}
	return o.CgroupRoot
}

// usageCollector makes the collector of the usage report, fed by the Pod
// informer (sliceOf names a pod's slice as flows are attributed); Run adds
// it to the manager. Without a cgroup hierarchy to read CPU time in, the
// report has none.
func usageCollector(ctx context.Context, mgr ctrl.Manager, o Options, since time.Time, sliceOf func(*corev1.Pod) string) (*agentusage.Collector, error) {
	log := ctrl.Log.WithName("node-agent")
	h, err := agentusage.DetectAt(o.hostCgroupRoot())
	if err != nil {
		log.Error(err, "Reporting usage without CPU time")
	} else {
		h.Root = filepath.Join(h.Root, o.KubeletCgroupRoot)
		log.Info("Reporting usage", "hierarchy", h.Root, "v2", h.V2, "every", o.UsageInterval)
	}
	c := agentusage.NewCollector(o.NodeName, h, since)
	c.Interval = o.UsageInterval
	_, err = onPods(ctx, mgr.GetCache(), func(pod *corev1.Pod) {
		if s, ok := agentusage.SliverOf(pod, sliceOf(pod)); ok {
			c.Update(s)
		}
	}, func(pod *corev1.Pod) { c.Delete(string(pod.UID)) })
	return c, err
}

// withUsage serves the usage report at usage.Path and the rest with next.
func withUsage(report, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == usage.Path {
			report.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// addMemoryWatchdog adds the memory watchdog (pl_mom).
func addMemoryWatchdog(mgr ctrl.Manager, o Options) error {
	h, err := memory.DetectAt(o.hostCgroupRoot())
	if err != nil {
		return fmt.Errorf("--memory-watchdog: %w", err)
	}
	h.Root = filepath.Join(h.Root, o.KubeletCgroupRoot)
	cfg := policy.DefaultConfig()
	cfg.WarnAt, cfg.ResetAt, cfg.MinResetInterval, cfg.Interval = o.MemoryWarnAt, o.MemoryResetAt, o.MemoryResetEvery, o.MemoryCheckEvery
	wd, err := policy.New(cfg)
	if err != nil {
		return fmt.Errorf("--memory-watchdog: %w", err)
	}
	source, _ := o.memorySource() // validated
	g := &memory.Guard{
		Watchdog: wd, Hierarchy: h, Node: o.NodeName, Pods: sliverPods(mgr), Source: source,
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("planetkube-node-agent"), Metrics: memory.NewMetrics(),
	}
	log := ctrl.Log.WithName("node-agent").WithValues("source", source, "hierarchy", h.Root, "warnAt", cfg.WarnAt, "resetAt", cfg.ResetAt)
	if source == memory.SourcePods {
		g.MemInfo = func() (policy.MemInfo, error) { return h.PodsMemInfo(memory.NodeMemInfo) }
		// The kubepods cgroup is there before any pod (the agent's own):
		// not finding it is a wrong --kubelet-cgroup-root.
		mem, err := g.MemInfo()
		if err != nil {
			return fmt.Errorf("--memory-source=pods: %w", err)
		}
		log = log.WithValues("totalMiB", mem.Total>>20)
	}
	metrics.Registry.MustRegister(g.Metrics.InUse, g.Metrics.Some10, g.Metrics.Resets)
	log.Info("Watching the node's memory")
	return mgr.Add(g)
}

// sliverPods lists the node's sliver pods from the cache.
func sliverPods(mgr ctrl.Manager) func() []*corev1.Pod {
	c := mgr.GetCache()
	return func() []*corev1.Pod {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list := &corev1.PodList{}
		if err := c.List(ctx, list, client.HasLabels{planetv1.LabelSlice}); err != nil {
			return nil
		}
		out := make([]*corev1.Pod, 0, len(list.Items))
		for i := range list.Items {
			out = append(out, &list.Items[i])
		}
		return out
	}
}

// cpuHierarchy finds the cpu cgroup hierarchy: at --cgroup-root, or from
// --cgroup-mountinfo.
func cpuHierarchy(o Options) (cpu.Hierarchy, error) {
	if o.CgroupRoot != "" {
		return cpu.DetectAt(o.CgroupRoot)
	}
	f, err := os.Open(o.CgroupMountinfo)
	if err != nil {
		return cpu.Hierarchy{}, err
	}
	defer f.Close()
	return cpu.FindHierarchy(f, nil)
}
