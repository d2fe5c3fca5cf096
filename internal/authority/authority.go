// Package authority gives an install its slice authority: the Ed25519 key in
// a Secret of the manager's namespace (made at first start when absent, or
// brought by the Helm release), and the install's own Authority object that
// publishes the key's public half. It also reads the known Authorities into
// the keyring that tickets are verified against.
//
// The private key is never logged, printed or put in an error.
package authority

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Keys of the authority key Secret's data.
const (
	// SecretKeyPrivate holds the PEM PKCS #8 private key.
	SecretKeyPrivate = "ed25519.pem"
	// SecretKeyAuthority holds the authority's name, so that a Secret is
	// never used for another authority by mistake.
	SecretKeyAuthority = "authority"
)

// fieldOwner is the server-side apply field manager of the install's own
// Authority: it owns the entry of its current key only, so that an operator
// may list older keys beside it while a rotation rolls out.
const fieldOwner = "planetkube-authority"

// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=secrets,verbs=get;create
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=get;list;watch;create;patch

// Bootstrap makes the authority's key when absent and publishes its own
// Authority. It runs once on the leader.
type Bootstrap struct {
	// Client writes; Reader reads the Secret without a cache (the manager
	// caches no Secrets).
	Client client.Client
	Reader client.Reader
	// Authority is the install's name (--authority).
	Authority string
	// Namespace and SecretName locate the key.
	Namespace, SecretName string
	// DisplayName is shown on the Authority.
	DisplayName string
}

// NeedLeaderElection: only the leader makes the key, so that two replicas
// starting together cannot make two.
func (b *Bootstrap) NeedLeaderElection() bool { return true }

// Start makes sure the key and the Authority exist, retrying with back-off
// until it succeeds or ctx ends.
func (b *Bootstrap) Start(ctx context.Context) error {
	return retry(ctx, "Setting up the authority; retrying", b.Run, "authority", b.Authority, "secret", b.Namespace+"/"+b.SecretName)
}

// retry runs run until it succeeds or ctx ends, backing off from 1 s to a
// minute and logging each failure with msg and keysAndValues.
func retry(ctx context.Context, msg string, run func(context.Context) error, keysAndValues ...any) error {
	log := ctrl.LoggerFrom(ctx).WithName("authority")
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Cap: time.Minute, Steps: 1 << 30}
	return wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := run(ctx); err != nil {
			log.Error(err, msg, keysAndValues...)
			return false, nil
		}
		return true, nil
	})
}

// Run makes the key when absent and publishes the Authority once.
func (b *Bootstrap) Run(ctx context.Context) error {
	pub, created, err := EnsureKey(ctx, b.Client, b.Reader, b.Namespace, b.SecretName, b.Authority)
	if err != nil {
		return err
	}
	log := ctrl.LoggerFrom(ctx).WithName("authority")
	if created {
		log.Info("Made the authority's key", "authority", b.Authority, "secret", b.Namespace+"/"+b.SecretName, "keyID", ticket.KeyID(pub))
	}
	if err := Publish(ctx, b.Client, b.Reader, b.Authority, b.DisplayName, pub); err != nil {
		return err
	}
	log.Info("Authority published", "authority", b.Authority, "keyID", ticket.KeyID(pub))
	return nil
}

// EnsureKey returns the public half of the authority's key, making the
// Secret (immutable) when there is none. created says whether it made it.
func EnsureKey(ctx context.Context, c client.Client, r client.Reader, namespace, name, authority string) (ed25519.PublicKey, bool, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		priv, genErr := ticket.GenerateKey()
		if genErr != nil {
			return nil, false, genErr
		}
		pemKey, encErr := ticket.EncodePrivateKey(priv)
		if encErr != nil {
			return nil, false, encErr
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: name,
				Labels: map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelAuthority: authority},
			},
			Type:      corev1.SecretTypeOpaque,
			Immutable: ptr.To(true),
			Data:      map[string][]byte{SecretKeyPrivate: pemKey, SecretKeyAuthority: []byte(authority)},
		}
		err = c.Create(ctx, secret)
		if err == nil {
			return priv.Public().(ed25519.PublicKey), true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, false, fmt.Errorf("creating the authority key secret %s: %w", key, err)
		}
		err = r.Get(ctx, key, secret) // another replica made it first
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the authority key secret %s: %w", key, err)
	}
	priv, err := KeyFromSecret(secret, authority)
	if err != nil {
		return nil, false, err
	}
	return priv.Public().(ed25519.PublicKey), false, nil
}

// KeyFromSecret reads the authority's private key from its Secret. Its
// errors name the Secret, never its content.
func KeyFromSecret(secret *corev1.Secret, authority string) (ed25519.PrivateKey, error) {
	if got := string(secret.Data[SecretKeyAuthority]); got != "" && got != authority {
		return nil, fmt.Errorf("secret %s/%s holds the key of authority %q, not %q", secret.Namespace, secret.Name, got, authority)
	}
	priv, err := ticket.DecodePrivateKey(secret.Data[SecretKeyPrivate])
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s, key %s: %w", secret.Namespace, secret.Name, SecretKeyPrivate, err)
	}
	return priv, nil
}

// Publish applies the install's own Authority with its key, owning only
// that key's entry. It writes nothing when the Authority already lists the
// key (a restart of a converged manager makes no writes).
func Publish(ctx context.Context, c client.Client, r client.Reader, name, displayName string, pub ed25519.PublicKey) error {
	have := &planetv1.Authority{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, have); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading Authority %s: %w", name, err)
	}
	if hasKey(have, pub) && (displayName == "" || have.Spec.DisplayName == displayName) {
		return nil
	}
	spec := map[string]any{
		"keys": []any{map[string]any{"id": ticket.KeyID(pub), "publicKey": ticket.EncodePublicKey(pub)}},
	}
	if displayName != "" {
		spec["displayName"] = displayName
	}
	obj := map[string]any{
		"apiVersion": planetv1.GroupVersion.String(),
		"kind":       "Authority",
		"metadata": map[string]any{
			"name":   name,
			"labels": map[string]any{planetv1.LabelManagedBy: planetv1.ManagedByValue},
		},
		"spec": spec,
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj}), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("publishing Authority %s: %w", name, err)
	}
	return nil
}

// Keyring reads Authorities into the keyring tickets are verified against.
// A key that does not decode, or whose id is not its own, is left out.
func Keyring(list []planetv1.Authority) ticket.Keyring {
	ring := make(ticket.Keyring, len(list))
	for i := range list {
		a := &list[i]
		if !a.DeletionTimestamp.IsZero() {
			continue
		}
		keys := ValidKeys(a)
		if len(keys) > 0 {
			ring[a.Name] = keys
		}
	}
	return ring
}

// ValidKeys returns an Authority's keys that decode as Ed25519 public keys
// with their own id.
func ValidKeys(a *planetv1.Authority) []ticket.Key {
	var out []ticket.Key
	for _, k := range a.Spec.Keys {
		pub, err := ticket.DecodePublicKey(k.PublicKey)
		if err != nil || ticket.KeyID(pub) != k.ID {
			continue
		}
		out = append(out, ticket.Key{ID: k.ID, Public: pub})
	}
	return out
}

// hasKey says whether an Authority lists the key under its own id.
func hasKey(a *planetv1.Authority, pub ed25519.PublicKey) bool {
	for _, k := range a.Spec.Keys {
		if k.ID == ticket.KeyID(pub) && k.PublicKey == ticket.EncodePublicKey(pub) {
			return true
		}
	}
	return false
}

// Keys reads the keyring tickets are verified against: the known
// Authorities' valid keys, except for this install's own authority, whose
// one key is the public half of its key Secret whatever its Authority
// object lists (a key someone added there is never trusted, even before
// the Authority controller removes it, and a deleted own Authority takes
// no delegation rooted at it down with it).
type Keys struct {
	// Reader reads the Authorities (the manager's cache).
	Reader client.Reader
	// Own gives this install's key; unset, or while it cannot be read,
	// the own Authority is read like the others.
	Own *SignerSource
}

// Keyring returns the keyring; an error is a failure to read the
// Authorities.
func (k Keys) Keyring(ctx context.Context) (ticket.Keyring, error) {
	list := &planetv1.AuthorityList{}
	if err := k.Reader.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing Authorities: %w", err)
	}
	ring := Keyring(list.Items)
	if name, keys, ok := k.own(ctx); ok {
		ring[name] = keys
	}
	return ring, nil
}

// own returns this install's authority and key, when Own gives them.
func (k Keys) own(ctx context.Context) (string, []ticket.Key, bool) {
	if k.Own == nil {
		return "", nil, false
	}
	s, err := k.Own.Signer(ctx)
	if err != nil {
		return "", nil, false
	}
	return s.Authority, []ticket.Key{{ID: s.KeyID, Public: s.Key.Public().(ed25519.PublicKey)}}, true
}

// Of returns the keys of one authority: this install's own, or those of
// its Authority (none when there is none, or it is being deleted), read
// alone: a feed request needs only its requester's keys, and a keyring of
// 1,000 peers built for each poll cost more than the rest of the request.
// An error is a failure to read the Authority.
func (k Keys) Of(ctx context.Context, name string) ([]ticket.Key, error) {
	if own, keys, ok := k.own(ctx); ok && own == name {
		return keys, nil
	}
	a := &planetv1.Authority{}
	if err := k.Reader.Get(ctx, client.ObjectKey{Name: name}, a); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Authority %s: %w", name, err)
	}
	if !a.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return ValidKeys(a), nil
}

// Verify checks a ticket addressed to audience against the keyring. A
// refusal is a *ticket.Refusal; any other error is a failure to read the
// Authorities.
func (k Keys) Verify(ctx context.Context, audience string, skew time.Duration, token string, now time.Time) (*ticket.Verified, error) {
	ring, err := k.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	v := &ticket.Verifier{Audience: audience, Keys: ring, Skew: skew}
	return v.Verify(token, now)
}
