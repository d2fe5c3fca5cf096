// Package testenv builds the envtest environments of PlanetKube's suites: a
// real kube-apiserver and etcd from bin/ (or $KUBEBUILDER_ASSETS) with the
// CRDs of config/crd/bases and, if asked, the webhooks of config/webhook.
package testenv

import (
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Webhooks says whether an environment installs the validating webhooks.
type Webhooks bool

// With and Without the webhooks of config/webhook.
const (
	WithWebhooks    Webhooks = true
	WithoutWebhooks Webhooks = false
)

// New returns an environment for a suite whose package lies at root (the
// relative path of the repository root, such as ".." or "../..").
func New(root string, webhooks Webhooks) *envtest.Environment {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if webhooks {
		env.WebhookInstallOptions.Paths = []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}
	}
	return env
}
