// Package ticket signs and verifies PlanetKube's tickets and delegations:
// compact JWS tokens signed with Ed25519 (alg EdDSA, nothing else) by a
// slice authority.
//
// A ticket grants either slivers (a slice of the issuer, to run on the
// audience's nodes) or a part of one of the audience's resource pools. A
// delegation lets a child authority (plc.japan) issue tickets that a
// verifier knowing only the root (plc) accepts: the child's tickets carry the
// chain of delegations from the root, each signed by its parent.
//
// Verification is a pure function of the token, the known keys, the
// audience and the time: the receiver never calls the issuer back. Every
// refusal carries one Reason (Malformed, BadSignature, ...) and a message
// that says which check failed.
package ticket

import (
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// Limits of what a verifier reads.
const (
	// MaxTokenBytes bounds a token before it is parsed (the Ticket CRD's
	// bound on spec.token).
	MaxTokenBytes = 16384
	// MaxChain bounds the delegations a ticket may carry (root → ... →
	// issuer).
	MaxChain = 4
	// DefaultSkew is the clock skew allowed between issuer and verifier on
	// iat, nbf and exp, as Kubernetes' own token checks allow a little.
	DefaultSkew = time.Minute
	// MaxSkew bounds the skew a verifier may be configured with.
	MaxSkew = 5 * time.Minute
	// MaxLifetime bounds a ticket's lifetime (exp - iat): a slice lives
	// at most 8 weeks before it must be renewed, and so does its ticket.
	MaxLifetime = 8 * 7 * 24 * time.Hour
	// MaxLifetimeSeconds is MaxLifetime in the seconds a token counts in:
	// lifetimes are compared in integer seconds, before any conversion to
	// a time.Duration (which would wrap past 292 years).
	MaxLifetimeSeconds = int64(MaxLifetime / time.Second)
	// MaxUnixTime is the latest time a token may name (iat, nbf, exp, a
	// slice's expiresAt, a pool's until): 9999-12-31T23:59:59Z, the last
	// second RFC 3339 (and so a Kubernetes timestamp) can write.
	MaxUnixTime int64 = 253402300799
)

// JWS header types: a delegation cannot pass for a ticket, nor the reverse.
const (
	TypeTicket     = "planetkube-ticket+jwt"
	TypeDelegation = "planetkube-delegation+jwt"
)

// Reason says which check refused a ticket. The Ticket's Ready condition
// shows it.
type Reason string

// Reasons of refusal. The verifier decides the first nine; the Ticket
// controller decides Replayed, NotTrusted, Overcommitted and Revoked, which
// need the cluster's state.
const (
	Malformed     Reason = "Malformed"
	BadSignature  Reason = "BadSignature"
	UnknownIssuer Reason = "UnknownIssuer"
	BadDelegation Reason = "BadDelegation"
	OutOfScope    Reason = "OutOfScope"
	WrongAudience Reason = "WrongAudience"
	NotYetValid   Reason = "NotYetValid"
	Expired       Reason = "Expired"
	InvalidGrant  Reason = "InvalidGrant"
	// Revoked: the slice's issuer withdrew it with a newer ticket (a
	// withdrawal), which revokes this one and every older one of the
	// slice, wherever they were applied.
	Revoked       Reason = "Revoked"
	Replayed      Reason = "Replayed"
	NotTrusted    Reason = "NotTrusted"
	Overcommitted Reason = "Overcommitted"
)

// Refusal is why a ticket was refused.
type Refusal struct {
	Reason  Reason
	Message string
}

func (r *Refusal) Error() string { return string(r.Reason) + ": " + r.Message }

func refuse(reason Reason, msg string) *Refusal { return &Refusal{Reason: reason, Message: msg} }

// ReasonOf returns the reason of a refusal, or "" for any other error.
func ReasonOf(err error) Reason {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Claims are a ticket's payload.
type Claims struct {
	// Issuer is the authority that signed the ticket (iss).
	Issuer string `json:"iss"`
	// Audience is the authority the ticket is addressed to (aud): only the
	// install of that name redeems it.
	Audience string `json:"aud"`
	// IssuedAt, NotBefore and Expiry are Unix seconds (iat, nbf, exp).
	IssuedAt  int64 `json:"iat"`
	NotBefore int64 `json:"nbf,omitempty"`
	Expiry    int64 `json:"exp"`
	// ID is the ticket's unique id (jti): redeemed once, for one grant.
	ID string `json:"jti"`
	// Chain holds the delegations from a root authority to the issuer,
	// root first, when the issuer is a delegate.
	Chain []string `json:"chain,omitempty"`
	// Sliver, Pool or Withdraw is the grant; exactly one is set.
	Sliver   *SliverGrant   `json:"sliver,omitempty"`
	Pool     *PoolGrant     `json:"pool,omitempty"`
	Withdraw *WithdrawGrant `json:"withdraw,omitempty"`
}

// WithdrawGrant takes a slice back: redeemed where it is addressed, it
// revokes every ticket of the slice older than itself (by Order), wherever
// and however often they were applied, until it expires. An issuer
// withdraws a slice from a peer by sending it a withdrawal, newer than
// every ticket it gave the peer for that slice and valid for as long as
// any of them could be (MaxLifetime).
type WithdrawGrant struct {
	// Slice is the slice's full name, under the issuer's name.
	Slice string `json:"slice"`
}

// SliverGrant grants a slice of the issuer slivers on the audience's nodes.
type SliverGrant struct {
	// Slice is the slice's full name, <authority>.<site>.<slice>, under the
	// issuer's name.
	Slice       string                    `json:"slice"`
	Description string                    `json:"description,omitempty"`
	URL         string                    `json:"url,omitempty"`
	Users       []planetv1.SliceUser      `json:"users,omitempty"`
	Nodes       planetv1.SliceNodes       `json:"nodes,omitzero"`
	Template    planetv1.SliverTemplate   `json:"template"`
	CPUShare    int32                     `json:"cpuShare,omitempty"`
	PodSecurity planetv1.PodSecurityLevel `json:"podSecurity,omitempty"`
	// State is the slice's state at its home: Suspended stops its slivers
	// here too. Unset is Active.
	State planetv1.SliceState `json:"state,omitempty"`
	// ExpiresAt is the slice's expiry (Unix seconds); unset, the ticket's.
	// It is never after the ticket's expiry.
	ExpiresAt int64 `json:"expiresAt,omitempty"`
}

// PoolGrant grants a part of one of the audience's pools to a slice.
type PoolGrant struct {
	// Pool is the pool to split, <namespace>/<name>.
	Pool string `json:"pool"`
	// PerNode is the amount the part holds on each node.
	PerNode corev1.ResourceList `json:"perNode"`
	// Nodes chooses the part's nodes among the pool's (unset: all).
	Nodes *planetv1.NodeSelection `json:"nodes,omitempty"`
	// Until is when the binding ends (Unix seconds); unset, the ticket's
	// expiry. It is never after the ticket's expiry.
	Until int64 `json:"until,omitempty"`
	// Slice is the full name of the slice the part is bound to, under the
	// issuer's name.
	Slice string `json:"slice"`
}

// DelegationClaims are a delegation's payload: the parent (iss) lets the
// child (sub) issue tickets for names under the child's, signed with the
// child's key, until exp.
type DelegationClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Key       string `json:"key"`
	KeyID     string `json:"kid"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	Expiry    int64  `json:"exp"`
}

// Verified is a ticket that passed every check of Verify.
type Verified struct {
	Claims
	// KeyID names the key that signed the ticket.
	KeyID string
	// Root is the known authority the issuer's key was found under: the
	// issuer itself, or the root of its delegation chain.
	Root string
	// Hash identifies the token (hex SHA-256): the same jti with another
	// hash is a second grant, refused as Replayed.
	Hash string
}

// Expires returns the ticket's expiry.
func (c *Claims) Expires() time.Time { return time.Unix(c.Expiry, 0).UTC() }

// Kind names the grant: "sliver", "pool" or "withdraw".
func (c *Claims) Kind() string {
	switch {
	case c.Pool != nil:
		return "pool"
	case c.Withdraw != nil:
		return "withdraw"
	}
	return "sliver"
}

// SliceName returns the full name of the slice the grant is for, whatever
// its kind; "" when the claims hold no grant.
func (c *Claims) SliceName() string {
	switch {
	case c.Sliver != nil:
		return c.Sliver.Slice
	case c.Pool != nil:
		return c.Pool.Slice
	case c.Withdraw != nil:
		return c.Withdraw.Slice
	}
	return ""
}

// Order places a ticket among the tickets of one slice: the one issued
// later is newer, and of two issued in the same second, the one whose
// token hash (hex SHA-256) is greater. Two different tokens are never
// equal, so every install that sees the same tickets picks the same one,
// in any order of arrival: the order is total and stable.
type Order struct {
	IssuedAt int64
	Hash     string
}

// After says whether o is newer than p.
func (o Order) After(p Order) bool {
	return o.IssuedAt > p.IssuedAt || (o.IssuedAt == p.IssuedAt && o.Hash > p.Hash)
}

// Order returns the verified ticket's place among its slice's.
func (v *Verified) Order() Order { return Order{IssuedAt: v.IssuedAt, Hash: v.Hash} }
