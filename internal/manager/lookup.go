package manager

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/flow/slicedir"
	"github.com/planetkube/planetkube/internal/httpserver"
)

// setupFlowLookup serves the cluster-wide flow lookup (FlowLookupHandler).
func setupFlowLookup(mgr ctrl.Manager, o Options) error {
	handler, err := FlowLookupHandler(mgr.GetAPIReader(), mgr.GetClient(), o)
	if err != nil {
		return err
	}
	if err := mgr.Add(&httpserver.Server{Addr: o.FlowLookupAddr, Handler: handler}); err != nil {
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
