package ticket

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/planetkube/planetkube/internal/naming"
)

// sign serialises payload as a compact JWS of the given type, signed by s,
// at most MaxTokenBytes long.
func (s Signer) sign(typ string, payload any) (string, error) {
	return s.signLimit(typ, payload, MaxTokenBytes)
}

// signLimit serialises payload as a compact JWS of the given type, signed
// by s, and refuses a token over limit bytes (which a verifier would not
// read).
func (s Signer) signLimit(typ string, payload any, limit int) (string, error) {
	if len(s.Key) != ed25519.PrivateKeySize {
		return "", errors.New("signer has no Ed25519 private key")
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader(jose.HeaderKey("kid"), s.KeyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: s.Key}, opts)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(body)
	if err != nil {
		return "", err
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		return "", err
	}
	if len(token) > limit {
		return "", fmt.Errorf("the token has %d bytes, more than the %d a verifier reads", len(token), limit)
	}
	return token, nil
}

// Issue signs a ticket. Issuer is set from the signer; the caller sets the
// rest, and chain when the signer is a delegate. It refuses what a verifier
// would refuse as malformed or out of scope, so that a mistake shows where
// the ticket is made.
func (s Signer) Issue(c Claims) (string, error) {
	c.Issuer = s.Authority
	if err := checkShape(&c); err != nil {
		return "", err
	}
	if err := checkScope(&c); err != nil {
		return "", err
	}
	if err := checkGrant(&c); err != nil {
		return "", err
	}
	return s.sign(TypeTicket, c)
}

// Delegate signs a delegation that lets child (one label under the signer's
// name) issue tickets with the key pub until expiry.
func (s Signer) Delegate(child string, pub ed25519.PublicKey, now, expiry time.Time) (string, error) {
	if !isChild(child, s.Authority) {
		return "", fmt.Errorf("%q is not one label under %q (say %s.japan)", child, s.Authority, s.Authority)
	}
	if len(pub) != ed25519.PublicKeySize {
		return "", errors.New("the child's key is not an Ed25519 public key")
	}
	if !expiry.After(now) {
		return "", errors.New("the delegation's expiry is not in the future")
	}
	return s.sign(TypeDelegation, DelegationClaims{
		Issuer: s.Authority, Subject: child, Key: EncodePublicKey(pub), KeyID: KeyID(pub),
		IssuedAt: now.Unix(), Expiry: expiry.Unix(),
	})
}

// isChild says whether child is parent plus exactly one label.
func isChild(child, parent string) bool {
	if !naming.ValidAuthority(child) || len(child) <= len(parent)+1 || child[:len(parent)+1] != parent+"." {
		return false
	}
	for _, c := range child[len(parent)+1:] {
		if c == '.' {
			return false
		}
	}
	return true
}
