package testenv

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// Started is an environment a test started: its config, a client and the
// scheme (core Kubernetes and PlanetKube's kinds).
type Started struct {
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
}

// Start starts an environment without webhooks for a test whose package lies
// at root and stops it when the test ends. If it cannot start, the test
// skips, or fails as root (where CI runs every suite: see skiplog).
func Start(t *testing.T, root string) Started {
	t.Helper()
	env := New(root, WithoutWebhooks)
	cfg, err := env.Start()
	if err != nil {
		skiplog.UnlessRoot(t, "envtest could not start (run make tools): "+err.Error())
	}
	t.Cleanup(func() { _ = env.Stop() })
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = planetv1.AddToScheme(s)
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return Started{Config: cfg, Client: c, Scheme: s}
}

// Recorder returns an event recorder writing to the environment (as
// component) until ctx ends.
func (e Started) Recorder(t *testing.T, ctx context.Context, component string) events.EventRecorder {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	b.StartRecordingToSink(ctx.Done())
	t.Cleanup(b.Shutdown)
	return b.NewRecorder(e.Scheme, component)
}
