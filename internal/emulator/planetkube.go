package emulator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ManagerUser is the identity the manager runs as in the emulated cluster:
// its ServiceAccount, so that the RBAC generated from the markers applies.
const ManagerUser = "system:serviceaccount:planetkube-system:planetkube-manager"

// DefaultManagerArgs turn off the manager's fixed ports, so that several
// managers and clusters can run side by side.
var DefaultManagerArgs = []string{"--metrics-bind-address=0", "--health-probe-bind-address=0"}

// RepoRoot returns the repository root: the folder above BinDir.
func (c *Cluster) RepoRoot() string { return filepath.Dir(c.BinDir) }

// InstallPlanetKube applies the CRDs and the RBAC of config/ from the
// repository root.
func (c *Cluster) InstallPlanetKube(ctx context.Context) error {
	for _, dir := range []string{"config/crd/bases", "config/rbac"} {
		if err := c.Apply(ctx, filepath.Join(c.RepoRoot(), dir)); err != nil {
			return fmt.Errorf("applying %s: %w", dir, err)
		}
	}
	return nil
}

// StartPlanetKube starts bin/planetkube as ManagerUser with DefaultManagerArgs
// followed by args.
func (c *Cluster) StartPlanetKube(ctx context.Context, args ...string) (*Process, error) {
	binary := filepath.Join(c.BinDir, "planetkube")
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s is missing: run make build: %w", binary, err)
	}
	return c.StartManagerAs(ctx, ManagerUser, binary, append(append([]string(nil), DefaultManagerArgs...), args...)...)
}
