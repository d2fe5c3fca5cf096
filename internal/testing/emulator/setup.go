package emulator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// SetUpOptions say what SetUp runs.
type SetUpOptions struct {
	// Manager is the manager binary ("" runs none); ManagerArgs its
	// arguments besides the webhook ones; ManagerAs the user it acts as
	// (ManagerUser: its generated RBAC applies).
	Manager     string
	ManagerArgs []string
	ManagerAs   string
	// Samples is a folder of manifests applied once the manager serves
	// its webhooks ("" or a missing folder: none).
	Samples string
}

// SetUp is what `make run` does on a started cluster: it installs
// PlanetKube (CRDs, RBAC, webhooks), starts the manager (if any) and applies
// the samples.
func (c *Cluster) SetUp(ctx context.Context, o SetUpOptions) (*Process, error) {
	if err := c.InstallPlanetKube(ctx); err != nil {
		return nil, err
	}
	c.logf("Installed the CRDs, RBAC and webhooks of config/")
	if o.Manager == "" {
		c.logf("No manager: Slices cannot be written until one serves the webhooks")
		return nil, nil
	}
	args := append(c.WebhookArgs(), o.ManagerArgs...)
	manager, err := c.StartManagerAs(ctx, o.ManagerAs, o.Manager, args...)
	if err != nil {
		return nil, fmt.Errorf("starting manager: %w", err)
	}
	if err := c.WaitWebhook(ctx, 30*time.Second); err != nil {
		return manager, err
	}
	return manager, c.ApplySamples(ctx, o.Samples)
}

// ApplySamples applies the manifests under path, or says it skips a missing path.
func (c *Cluster) ApplySamples(ctx context.Context, path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		c.logf("Skipping %s (not found)", path)
		return nil
	}
	// Slices live in the namespaces that the manager makes for their Sites:
	// apply again (server-side apply is idempotent) until those exist.
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		if err = c.Apply(ctx, path); !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("applying %s: %w", path, err)
	}
	c.logf("Applied %s", path)
	return nil
}
