package authority

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/ticket"
)

// SignerSource gives this install's signer (its authority key), read once
// from the key Secret, which is immutable, and kept in memory. The key is
// never logged.
type SignerSource struct {
	// Reader reads the Secret (uncached: the manager caches no Secrets).
	Reader client.Reader
	// Namespace and SecretName locate the key; Authority is its name.
	Namespace, SecretName, Authority string

	mu     sync.Mutex
	signer *ticket.Signer
}

// Signer returns the signer, reading the key on first use (the Bootstrap
// makes it at first start: until then this fails and callers retry).
func (s *SignerSource) Signer(ctx context.Context) (ticket.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signer != nil {
		return *s.signer, nil
	}
	secret := &corev1.Secret{}
	if err := s.Reader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.SecretName}, secret); err != nil {
		return ticket.Signer{}, fmt.Errorf("reading the authority key secret %s/%s: %w", s.Namespace, s.SecretName, err)
	}
	priv, err := KeyFromSecret(secret, s.Authority)
	if err != nil {
		return ticket.Signer{}, err
	}
	s.signer = &ticket.Signer{Authority: s.Authority, KeyID: ticket.KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
	return *s.signer, nil
}
