package ticket

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// Key is one public key of an authority. An authority may have several
// (rotation: the new key is published before the old one is dropped); a
// token names its key by ID (the JWS kid).
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// Keyring is the public keys of the authorities a verifier knows, by
// authority name.
type Keyring map[string][]Key

// find returns the authority's key with the given ID.
func (k Keyring) find(authority, id string) (ed25519.PublicKey, bool, bool) {
	keys, known := k[authority]
	for _, key := range keys {
		if key.ID == id {
			return key.Public, true, true
		}
	}
	return nil, known, false
}

// Signer signs tickets and delegations for an authority.
type Signer struct {
	// Authority is the signer's name (the tokens' iss).
	Authority string
	// KeyID names the key; verifiers find it by this ID.
	KeyID string
	Key   ed25519.PrivateKey
}

// KeyID derives a key's ID from its public half: the first 16 hex
// characters of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new Ed25519 key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// EncodePublicKey encodes a public key as an Authority lists it: standard
// base64 of its 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// DecodePublicKey decodes a public key as an Authority lists it.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("public key is not base64: %w", err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key has %d bytes, want %d", len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// pemType is the PEM block type of a PKCS #8 private key.
const pemType = "PRIVATE KEY"

// EncodePrivateKey encodes a private key as PEM PKCS #8 (what `openssl
// genpkey -algorithm ed25519` writes).
func EncodePrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// DecodePrivateKey decodes a PEM PKCS #8 Ed25519 private key. Its errors
// never quote the key.
func DecodePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, want Ed25519", key)
	}
	return priv, nil
}

// NewSigner returns a signer for an authority's private key, its key ID
// derived from the public half.
func NewSigner(authority string, priv ed25519.PrivateKey) Signer {
	return Signer{Authority: authority, KeyID: KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
}
