// Package peerclient makes and keeps the clients of the peers' clusters
// that PlanetKube pushes tickets to, from the kubeconfigs in the push
// Secrets of their Authorities (checked by internal/federation/kubeconfig).
package peerclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/federation/kubeconfig"
)

// KubeconfigKey is the key of a push Secret's data that holds the
// peer's kubeconfig.
const KubeconfigKey = "kubeconfig"

// clientTTL is how long a peer's client is used before its Secret is
// read again (a rotated token is picked up within it).
const clientTTL = time.Minute

// Clients makes and keeps the clients of the peers' clusters, from the
// push Secrets of their Authorities (in the manager's namespace).
type Clients struct {
	// Reader reads the Secrets (uncached).
	Reader client.Reader
	// Namespace holds the push Secrets.
	Namespace string
	// Scheme has the PlanetKube kinds.
	Scheme *runtime.Scheme
	// Now returns the current time.
	Now func() time.Time

	mu    sync.Mutex
	peers map[string]*peerClient
}

// peerClient is one peer's client and where its tickets go, or why there
// is none (a Secret that must be fixed: kept for the TTL too, so that many
// slices naming a broken peer do not each read the Secret).
type peerClient struct {
	client    client.Client
	namespace string
	err       error
	secretRV  string
	madeAt    time.Time
}

// ConfigError is a push Secret that is missing or refused: nothing to
// retry until someone fixes it.
type ConfigError struct{ err error }

func (e *ConfigError) Error() string { return e.err.Error() }
func (e *ConfigError) Unwrap() error { return e.err }

// Client returns the client of an Authority's cluster and the namespace its
// tickets are applied in. An error that is a *ConfigError says the
// Secret must be fixed.
func (p *Clients) Client(ctx context.Context, a *planetv1.Authority) (client.Client, string, error) {
	if a.Spec.Push == nil {
		return nil, "", &ConfigError{fmt.Errorf("authority %s has no spec.push", a.Name)}
	}
	key := a.Name + "/" + a.Spec.Push.SecretName
	p.mu.Lock()
	cached := p.peers[key]
	p.mu.Unlock()
	if cached != nil && p.Now().Sub(cached.madeAt) < clientTTL {
		return cached.client, cached.namespace, cached.err
	}
	// The Secret is read without the lock: one slow read holds no other peer.
	secret := &corev1.Secret{}
	if err := p.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: a.Spec.Push.SecretName}, secret); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return nil, "", fmt.Errorf("reading secret %s/%s: %w", p.Namespace, a.Spec.Push.SecretName, err)
		}
		return p.keep(key, &peerClient{err: &ConfigError{fmt.Errorf("secret %s/%s (spec.push.secretName) is not found", p.Namespace, a.Spec.Push.SecretName)}})
	}
	if cached != nil && cached.secretRV == secret.ResourceVersion {
		return p.keep(key, cached)
	}
	entry := &peerClient{secretRV: secret.ResourceVersion}
	peer, err := kubeconfig.Parse(secret.Data[KubeconfigKey])
	if err != nil {
		entry.err = &ConfigError{fmt.Errorf("secret %s/%s, key %s: %w", p.Namespace, a.Spec.Push.SecretName, KubeconfigKey, err)}
		return p.keep(key, entry)
	}
	c, err := client.New(peer.Config, client.Options{Scheme: p.Scheme})
	if err != nil {
		return nil, "", fmt.Errorf("making a client for %s: %w", peer.Server, err)
	}
	entry.client, entry.namespace = c, peer.Namespace
	return p.keep(key, entry)
}

// keep stores an entry, stamped now, and returns what it holds.
func (p *Clients) keep(key string, e *peerClient) (client.Client, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.peers == nil {
		p.peers = map[string]*peerClient{}
	}
	stamped := *e
	stamped.madeAt = p.Now()
	p.peers[key] = &stamped
	return stamped.client, stamped.namespace, stamped.err
}

// Timeout bounds the calls to one peer in one look at it.
const Timeout = 15 * time.Second
