package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/planetkube/planetkube/internal/admission"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/trust"
	"github.com/planetkube/planetkube/internal/webhookcert"
)

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
// previewer answers the Slice webhook's dry runs (nil: no preview).
func serveWebhooks(ctx context.Context, mgr ctrl.Manager, o Options, previewer admission.Previewer) (healthz.Checker, error) {
	dir := o.WebhookCertDir
	if dir == "" {
		dir = defaultCertDir()
	}
	w := &webhookStarter{mgr: mgr, o: o, dir: dir, previewer: previewer}
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
	mgr       ctrl.Manager
	o         Options
	dir       string
	previewer admission.Previewer
	certs     <-chan struct{} // mode self: closed when ready; nil: wait for the files
	started   atomic.Pointer[healthz.Checker]
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
	if err := setupWebhooks(w.mgr, w.o, w.previewer); err != nil {
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

// setupWebhooks registers the validating webhooks with the webhook server.
func setupWebhooks(mgr ctrl.Manager, o Options, previewer admission.Previewer) error {
	if err := (&admission.SliceValidator{Previewer: previewer}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Slice webhook: %w", err)
	}
	if err := (&admission.TicketValidator{Reader: mgr.GetClient(), Authority: o.Authority, Own: ownSigner(mgr, o), DefaultTrust: cli.SplitList(o.DefaultTrust), Skew: o.TicketSkew}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Ticket webhook: %w", err)
	}
	if err := (&admission.ResourcePoolValidator{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Trust:     trust.Policy{Local: o.Authority, Default: cli.SplitList(o.DefaultTrust)},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ResourcePool webhook: %w", err)
	}
	return nil
}
