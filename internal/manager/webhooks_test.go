package manager

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/testing/secretvolume"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

// startAPIServer starts a real API server (envtest, the CRDs installed) for
// the test and returns its config, a context ended with the test and a client.
func startAPIServer(t *testing.T) (*rest.Config, context.Context, client.Client) {
	t.Helper()
	env := testenv.New(filepath.Join("..", ".."), testenv.WithoutWebhooks)
	if _, err := os.Stat(filepath.Join(env.BinaryAssetsDirectory, "kube-apiserver")); err != nil {
		t.Fatalf("no kube-apiserver in %s: run `make tools`", env.BinaryAssetsDirectory)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, ctx, c
}

// TestSelfMadeWebhookCertificate starts the manager's webhooks with
// --webhook-cert-mode=self against a real API server: the manager makes the
// certificate Secret, writes the CA into the webhook configuration, turns
// ready, and the API server then calls the webhook over TLS (the
// configuration fails closed here, so a TLS failure would show).
func TestSelfMadeWebhookCertificate(t *testing.T) {
	cfg, ctx, c := startAPIServer(t)

	port := ports.Free(t)
	o := Options{
		Authority: "plc", Namespace: "planetkube-system", Webhooks: true,
		WebhookCertMode: WebhookCertsSelf, WebhookCertSecret: "planetkube-webhook-cert", WebhookService: "planetkube-webhook",
		WebhookConfiguration: "planetkube-validating-webhooks", WebhookExtraDNSNames: "localhost", WebhookCertDir: t.TempDir(),
	}
	fail, none := admissionregv1.Fail, admissionregv1.SideEffectClassNone
	url := "https://localhost:" + strconv.Itoa(port) + "/validate-planetkube-io-v1alpha1-slice"
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}},
		&admissionregv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: o.WebhookConfiguration},
			Webhooks: []admissionregv1.ValidatingWebhook{{
				Name: "vslice.planetkube.io", ClientConfig: admissionregv1.WebhookClientConfig{URL: &url},
				Rules: []admissionregv1.RuleWithOperations{{
					Operations: []admissionregv1.OperationType{admissionregv1.Create},
					Rule:       admissionregv1.Rule{APIGroups: []string{"planetkube.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"slices"}},
				}},
				FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			}},
		},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: o.WebhookCertDir}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := serveWebhooks(ctx, mgr, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ready(nil); err == nil {
		t.Fatal("ready before the certificate exists")
	}
	go func() {
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("manager: %v", err)
		}
	}()
	go secretvolume.Mount(ctx, c, client.ObjectKey{Namespace: o.Namespace, Name: o.WebhookCertSecret}, o.WebhookCertDir, 100*time.Millisecond)

	poll.Until(t, "the manager turns ready", 90*time.Second, 100*time.Millisecond, func() error { return ready(nil) })
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.WebhookCertSecret}, secret); err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: o.WebhookConfiguration}, vwc); err != nil {
		t.Fatal(err)
	}
	if ca := vwc.Webhooks[0].ClientConfig.CABundle; len(ca) == 0 || !bytes.Equal(ca, secret.Data["ca.crt"]) {
		t.Fatalf("the webhook configuration's caBundle is not the Secret's CA (%d bytes)", len(ca))
	}

	// The API server reaches the webhook over TLS: a slice whose expiry is a
	// year ahead is refused by the webhook itself (CEL has no clock).
	far := metav1.NewTime(time.Now().Add(365 * 24 * time.Hour))
	slice := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "far"},
		Spec: planetv1.SliceSpec{
			Description: "a slice a year long", ExpiresAt: &far,
			Nodes:    planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Sites: []string{"princeton"}}},
			Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"},
		},
	}
	poll.Until(t, "the webhook refuses a slice a year long", 30*time.Second, 100*time.Millisecond, func() error {
		err := c.Create(ctx, slice.DeepCopy())
		if err == nil {
			t.Fatal("a slice a year long was admitted")
		}
		if !bytes.Contains([]byte(err.Error()), []byte(`admission webhook "vslice.planetkube.io" denied the request`)) {
			return err // not yet served (the configuration fails closed)
		}
		return nil
	})
}
