package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ManagerUser is the identity the manager runs as in the emulated cluster:
// its ServiceAccount, so that the RBAC generated from the markers applies.
const ManagerUser = "system:serviceaccount:planetkube-system:planetkube-manager"

// DefaultManagerArgs turn off the manager's fixed ports, so that several
// managers and clusters can run side by side.
var DefaultManagerArgs = []string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--flow-lookup-address=0"}

// RepoRoot returns the repository root: the folder above BinDir.
func (c *Cluster) RepoRoot() string { return filepath.Dir(c.BinDir) }

// InstallPlanetKube applies the CRDs and the RBAC of config/ from the
// repository root, and registers the validating webhooks of config/webhook
// to call the manager on loopback (see WebhookArgs).
func (c *Cluster) InstallPlanetKube(ctx context.Context) error {
	for _, dir := range []string{"config/crd/bases", "config/rbac"} {
		if err := c.Apply(ctx, filepath.Join(c.RepoRoot(), dir)); err != nil {
			return fmt.Errorf("applying %s: %w", dir, err)
		}
	}
	return c.installWebhooks(ctx, filepath.Join(c.RepoRoot(), "config/webhook/manifests.yaml"))
}

// installWebhooks registers the webhook configuration of file with its
// clients pointed at https://127.0.0.1:<webhook port> and the cluster CA,
// and writes the manager's serving certificate.
func (c *Cluster) installWebhooks(ctx context.Context, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	vwc := &admissionregv1.ValidatingWebhookConfiguration{}
	if err := yaml.Unmarshal(raw, vwc); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	if err := c.ensureWebhookServing(); err != nil {
		return err
	}
	ca, err := os.ReadFile(c.pki.CACert)
	if err != nil {
		return err
	}
	vwc.Name = "planetkube-validating-webhooks"
	for i := range vwc.Webhooks {
		cc := &vwc.Webhooks[i].ClientConfig
		url := fmt.Sprintf("https://127.0.0.1:%d%s", c.webhookPort, *cc.Service.Path)
		cc.Service, cc.URL, cc.CABundle = nil, &url, ca
	}
	api := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if err := api.Delete(ctx, vwc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if _, err := api.Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("registering the webhooks: %w", err)
	}
	return nil
}

// ensureWebhookServing picks the webhook port and issues the serving
// certificate for 127.0.0.1, once.
func (c *Cluster) ensureWebhookServing() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.webhookPort != 0 {
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(c.WorkDir, "webhook-certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := issue(c.pki.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "planetkube-webhook"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		return fmt.Errorf("creating the webhook serving certificate: %w", err)
	}
	c.webhookPort, c.webhookCertDir = port, dir
	return nil
}

// WebhookArgs are the manager flags that serve the webhooks registered by
// InstallPlanetKube, with the serving certificate the emulator issued (as
// cert-manager would: --webhook-cert-mode=files). The manager's own
// certificates (mode self) need the kubelet's Secret volume, which a
// manager run as a local process does not have; internal/manager's
// TestSelfMadeWebhookCertificate covers that mode.
func (c *Cluster) WebhookArgs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.webhookPort == 0 {
		return []string{"--webhooks=false"}
	}
	return []string{"--webhook-cert-mode=files", "--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(c.webhookPort), "--webhook-cert-dir=" + c.webhookCertDir}
}

// WaitWebhook waits until the manager's webhook server answers TLS on its
// port, so that objects the webhooks check can be written.
func (c *Cluster) WaitWebhook(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	port := c.webhookPort
	c.mu.Unlock()
	if port == 0 {
		return nil
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(timeout)
	for {
		d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a liveness probe of our own server
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager's webhook server on %s did not come up in %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartPlanetKube starts bin/planetkube as ManagerUser with DefaultManagerArgs,
// the webhook flags and then args, and waits for its webhook server.
func (c *Cluster) StartPlanetKube(ctx context.Context, args ...string) (*Process, error) {
	binary := filepath.Join(c.BinDir, "planetkube")
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s is missing: run make build: %w", binary, err)
	}
	all := append(append(append([]string(nil), DefaultManagerArgs...), c.WebhookArgs()...), args...)
	p, err := c.StartManagerAs(ctx, ManagerUser, binary, all...)
	if err != nil {
		return nil, err
	}
	if err := c.WaitWebhook(ctx, 30*time.Second); err != nil {
		return p, fmt.Errorf("%w; manager log:\n%s", err, p.LogTail(20))
	}
	return p, nil
}
