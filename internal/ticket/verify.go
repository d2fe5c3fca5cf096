package ticket

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// Verifier checks tickets addressed to one authority.
type Verifier struct {
	// Audience is this install's authority: tickets for anyone else are
	// WrongAudience.
	Audience string
	// Keys are the authorities known here.
	Keys Keyring
	// Skew is the clock skew allowed on every time (default DefaultSkew,
	// at most MaxSkew).
	Skew time.Duration
}

func (v *Verifier) skew() time.Duration { return EffectiveSkew(v.Skew) }

// EffectiveSkew is the clock skew allowed when d is configured:
// DefaultSkew when d is not positive, never more than MaxSkew.
func EffectiveSkew(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return DefaultSkew
	case d > MaxSkew:
		return MaxSkew
	}
	return d
}

// Verify checks a ticket: its form, its signature (through its delegation
// chain when the issuer is a delegate), its times, its audience, the scope
// of its grant and the grant itself. A refusal is a *Refusal with the
// failed check's Reason.
func (v *Verifier) Verify(token string, now time.Time) (*Verified, error) {
	jws, kid, payload, err := parse(token, TypeTicket)
	if err != nil {
		return nil, err
	}
	c := &Claims{}
	if err := decode(payload, c); err != nil {
		return nil, err
	}
	if err := checkShape(c); err != nil {
		return nil, err
	}
	key, root, chainExp, err := v.issuerKey(c, kid, now)
	if err != nil {
		return nil, err
	}
	if !jws.verify(key) {
		return nil, refuse(BadSignature, fmt.Sprintf("the signature does not verify with %s's key %q", c.Issuer, kid))
	}
	if chainExp != 0 && c.Expiry > chainExp {
		return nil, refuse(BadDelegation, fmt.Sprintf("the ticket expires at %s, after its delegation (%s)", unix(c.Expiry), unix(chainExp)))
	}
	if err := v.checkTimes(c, now); err != nil {
		return nil, err
	}
	if c.Audience != v.Audience {
		return nil, refuse(WrongAudience, fmt.Sprintf("the ticket is addressed to %q, this is %q", c.Audience, v.Audience))
	}
	if err := checkScope(c); err != nil {
		return nil, err
	}
	if err := checkGrant(c); err != nil {
		return nil, err
	}
	return &Verified{Claims: *c, KeyID: kid, Root: root, Hash: jws.hash()}, nil
}

// Inspect decodes a ticket's claims without verifying anything but its
// form: for display only.
func Inspect(token string) (*Claims, string, error) {
	_, kid, payload, err := parse(token, TypeTicket)
	if err != nil {
		return nil, "", err
	}
	c := &Claims{}
	if err := decode(payload, c); err != nil {
		return nil, "", err
	}
	return c, kid, nil
}

// InspectDelegation decodes a delegation's claims without verifying
// anything but its form (as Verify reads them, strictly): for display, or
// for a signer to check that what it signs under a chain does not outlive
// it. Trust nothing in it.
func InspectDelegation(token string) (*DelegationClaims, error) {
	_, _, payload, err := parse(token, TypeDelegation)
	if err != nil {
		return nil, err
	}
	d := &DelegationClaims{}
	if err := decode(payload, d); err != nil {
		return nil, err
	}
	return d, nil
}

// signed is a parsed compact JWS: the token's bytes, what its signature
// covers (its first two parts, as sent) and the signature.
type signed struct {
	raw, input, signature []byte
}

// verify checks the signature with key. The signing input of a compact
// JWS is its first two parts exactly as sent, so they are verified as they
// are, with no re-encoding.
func (s signed) verify(key ed25519.PublicKey) bool {
	return len(key) == ed25519.PublicKeySize && ed25519.Verify(key, s.input, s.signature)
}

// hash is the hex SHA-256 of the whole token (Verified.Hash, the replay
// record's key).
func (s signed) hash() string { return hashOf(s.raw) }

// HashOf returns a token's hash as Verified.Hash has it: the hex SHA-256
// of the token as sent.
func HashOf(token string) string { return hashOf([]byte(token)) }

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

var b64 = base64.RawURLEncoding.Strict()

// parse checks a token's size and form: compact JWS (three base64url parts
// without padding), alg EdDSA (an allow-list: none and every other
// algorithm are refused before any key is looked at), an Ed25519-sized
// signature, no critical header, the expected typ and a kid. It returns the
// unverified payload.
//
// go-jose's ParseSignedCompact did this until the benchmark found it a
// sixth of a full verification (its header goes through a map of raw JSON
// members, each decoded again); this parser is smaller, copies the token
// once, and FuzzVerify checks that go-jose, with the same EdDSA allow-list,
// accepts every token it accepts, with the same header, payload and
// signature. go-jose still signs.
func parse(token, typ string) (signed, string, []byte, error) {
	return parseLimit(token, typ, MaxTokenBytes)
}

// parseLimit is parse for a token of at most limit bytes (signed messages
// other than tickets have their own bounds).
func parseLimit(token, typ string, limit int) (signed, string, []byte, error) {
	if len(token) > limit {
		return signed{}, "", nil, refuse(Malformed, fmt.Sprintf("the token has %d bytes, more than the %d allowed", len(token), limit))
	}
	raw := []byte(token)
	h64, rest, ok1 := bytes.Cut(raw, []byte{'.'})
	p64, s64, ok2 := bytes.Cut(rest, []byte{'.'})
	if !ok1 || !ok2 || bytes.IndexByte(s64, '.') >= 0 {
		return signed{}, "", nil, refuse(Malformed, "not a compact JWS: want three parts separated by dots")
	}
	// One buffer for the three decoded parts.
	buf := make([]byte, b64.DecodedLen(len(h64))+b64.DecodedLen(len(p64))+b64.DecodedLen(len(s64)))
	head, buf, err := unbase64("header", h64, buf)
	if err != nil {
		return signed{}, "", nil, err
	}
	// A map, not a struct: member names match exactly, as RFC 7515 says
	// (encoding/json would fill a struct field from "ALG" too), and
	// decodeHeader refuses a duplicate member and a case variant of a
	// registered one ("ALG"), which other readers may read otherwise
	// (strictjson.go). Other members are allowed and ignored, except crit,
	// which names extensions a verifier must understand: none is.
	h, err := decodeHeader(head)
	if err != nil {
		return signed{}, "", nil, err
	}
	alg, _ := h["alg"].(string)
	got, _ := h["typ"].(string)
	kid, _ := h["kid"].(string)
	_, crit := h["crit"]
	switch {
	case alg != "EdDSA":
		return signed{}, "", nil, refuse(Malformed, fmt.Sprintf("the token's alg is %q: only EdDSA is accepted", alg))
	case crit:
		return signed{}, "", nil, refuse(Malformed, "the token's header has crit: no extension is understood here")
	case got != typ:
		return signed{}, "", nil, refuse(Malformed, fmt.Sprintf("the token's typ is %q, want %q", got, typ))
	case kid == "" || len(kid) > 128:
		return signed{}, "", nil, refuse(Malformed, "the token's header has no kid naming its key (or one over 128 characters)")
	}
	payload, buf, err := unbase64("payload", p64, buf)
	if err != nil {
		return signed{}, "", nil, err
	}
	sig, _, err := unbase64("signature", s64, buf)
	if err != nil {
		return signed{}, "", nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return signed{}, "", nil, refuse(Malformed, fmt.Sprintf("the signature has %d bytes; an Ed25519 signature has %d", len(sig), ed25519.SignatureSize))
	}
	return signed{raw: raw, input: raw[:len(h64)+1+len(p64)], signature: sig}, kid, payload, nil
}

// unbase64 decodes one part of a compact JWS into the front of buf and
// returns it and the rest of buf: base64url without padding, strictly (no
// stray bits, no line breaks, which the decoder would skip).
func unbase64(part string, src, buf []byte) ([]byte, []byte, error) {
	n, err := b64.Decode(buf, src)
	if err != nil || bytes.IndexByte(src, '\r') >= 0 || bytes.IndexByte(src, '\n') >= 0 {
		return nil, nil, refuse(Malformed, fmt.Sprintf("the token's %s is not base64url without padding", part))
	}
	return buf[:n:n], buf[n:], nil
}

// decode reads a JSON payload into out; anything but one JSON object
// (trailing data included), a duplicate member name at any depth and a
// member named like a claim in another case are Malformed (DecodeStrict).
func decode(payload []byte, out any) error {
	if err := DecodeStrict(payload, out); err != nil {
		return refuse(Malformed, "the payload is not the expected JSON object: "+err.Error())
	}
	return nil
}

// validJTI: 1 to 128 characters of A-Z a-z 0-9 . _ ~ - (URL-safe, no
// escaping anywhere it is shown).
func validJTI(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}

// checkShape checks the claims every ticket has.
func checkShape(c *Claims) error {
	switch {
	case !naming.ValidAuthority(c.Issuer):
		return refuse(Malformed, fmt.Sprintf("iss %q is not an authority's name", c.Issuer))
	case !naming.ValidAuthority(c.Audience):
		return refuse(Malformed, fmt.Sprintf("aud %q is not an authority's name", c.Audience))
	case !validJTI(c.ID):
		return refuse(Malformed, "jti must be 1 to 128 letters, digits, '.', '_', '~' or '-'")
	case !validTimes(c.IssuedAt, c.NotBefore, c.Expiry):
		return refuse(Malformed, fmt.Sprintf("iat and exp are required, nbf is optional: Unix seconds from 1 to %d (%s), exp after iat", MaxUnixTime, unix(MaxUnixTime)))
	case len(c.Chain) > MaxChain:
		return refuse(Malformed, fmt.Sprintf("the delegation chain has %d links, more than %d", len(c.Chain), MaxChain))
	case grants(c) != 1:
		return refuse(InvalidGrant, "a ticket grants exactly one of sliver, pool or withdraw")
	// Both are in [1, MaxUnixTime]: the difference cannot overflow, and is
	// compared in seconds, never as a Duration.
	case c.Expiry-c.IssuedAt > MaxLifetimeSeconds:
		return refuse(InvalidGrant, fmt.Sprintf("the ticket is valid for more than %s (exp - iat); issue a shorter one and renew it", MaxLifetime))
	}
	return nil
}

// validTimes checks a token's iat, nbf and exp as integers, before anything
// converts them: iat and exp in [1, MaxUnixTime] with exp after iat, nbf 0
// (unset) or in that range too.
func validTimes(iat, nbf, exp int64) bool {
	in := func(t int64) bool { return t >= 1 && t <= MaxUnixTime }
	return in(iat) && in(exp) && exp > iat && (nbf == 0 || in(nbf))
}

// grants counts the grants the claims hold.
func grants(c *Claims) int {
	n := 0
	for _, set := range []bool{c.Sliver != nil, c.Pool != nil, c.Withdraw != nil} {
		if set {
			n++
		}
	}
	return n
}

// issuerKey finds the key that must have signed the ticket: the issuer's
// own when the issuer is known here, else the last key of its delegation
// chain, every link verified from a known root. It returns the root and the
// chain's expiry (0 without a chain).
func (v *Verifier) issuerKey(c *Claims, kid string, now time.Time) (ed25519.PublicKey, string, int64, error) {
	if key, known, ok := v.Keys.find(c.Issuer, kid); known {
		if !ok {
			return nil, "", 0, refuse(BadSignature, fmt.Sprintf("authority %s has no key %q here (rotated out, or not yet published)", c.Issuer, kid))
		}
		return key, c.Issuer, 0, nil
	}
	if len(c.Chain) == 0 {
		return nil, "", 0, refuse(UnknownIssuer, fmt.Sprintf("no Authority %q is known here, and the ticket carries no delegation from one that is", c.Issuer))
	}
	var (
		root, name, keyID string
		key               ed25519.PublicKey
		exp               int64
	)
	for i, link := range c.Chain {
		d, err := v.verifyLink(i, link, name, keyID, key, exp, now)
		if err != nil {
			return nil, "", 0, err
		}
		if i == 0 {
			root = d.Issuer
		}
		pub, err := DecodePublicKey(d.Key)
		if err != nil || KeyID(pub) != d.KeyID {
			return nil, "", 0, refuse(BadDelegation, fmt.Sprintf("delegation %d (%s → %s): its key is not a base64 Ed25519 key with kid %q", i+1, d.Issuer, d.Subject, d.KeyID))
		}
		name, keyID, key, exp = d.Subject, d.KeyID, pub, d.Expiry
	}
	if name != c.Issuer {
		return nil, "", 0, refuse(BadDelegation, fmt.Sprintf("the delegation chain ends at %s, but the ticket is issued by %s", name, c.Issuer))
	}
	if kid != keyID {
		return nil, "", 0, refuse(BadDelegation, fmt.Sprintf("the ticket is signed with key %q, its delegation gives %s key %q", kid, name, keyID))
	}
	return key, root, exp, nil
}

// verifyLink checks delegation i of a chain: signed by the parent (for the
// first, by a known root), one label under it, valid now and not outliving
// the parent's own delegation.
func (v *Verifier) verifyLink(i int, link, parent, parentKID string, parentKey ed25519.PublicKey, parentExp int64, now time.Time) (*DelegationClaims, error) {
	bad := func(format string, a ...any) error {
		return refuse(BadDelegation, fmt.Sprintf("delegation %d: ", i+1)+fmt.Sprintf(format, a...))
	}
	jws, kid, payload, err := parse(link, TypeDelegation)
	if err != nil {
		return nil, bad("%s", err.(*Refusal).Message)
	}
	d := &DelegationClaims{}
	if err := decode(payload, d); err != nil {
		return nil, bad("%s", err.(*Refusal).Message)
	}
	if i == 0 {
		pub, known, ok := v.Keys.find(d.Issuer, kid)
		switch {
		case !known:
			return nil, refuse(UnknownIssuer, fmt.Sprintf("the delegation chain starts at %q, which is not known here", d.Issuer))
		case !ok:
			return nil, bad("authority %s has no key %q here", d.Issuer, kid)
		}
		parent, parentKID, parentKey = d.Issuer, kid, pub
	}
	switch {
	case d.Issuer != parent:
		return nil, bad("signed by %q, but the previous link delegates to %q", d.Issuer, parent)
	case kid != parentKID:
		return nil, bad("signed with key %q, but %s's key is %q", kid, parent, parentKID)
	}
	if !jws.verify(parentKey) {
		return nil, bad("the signature does not verify with %s's key %q", parent, kid)
	}
	skew := int64(v.skew() / time.Second)
	switch {
	case !isChild(d.Subject, d.Issuer):
		return nil, bad("%q is not one label under %q", d.Subject, d.Issuer)
	case !validTimes(d.IssuedAt, d.NotBefore, d.Expiry):
		return nil, bad("iat and exp are required, nbf is optional: Unix seconds from 1 to %d, exp after iat", MaxUnixTime)
	case d.IssuedAt > now.Unix()+skew || d.NotBefore > now.Unix()+skew:
		return nil, bad("%s → %s is not valid yet", d.Issuer, d.Subject)
	case d.Expiry+skew <= now.Unix():
		return nil, bad("%s → %s expired at %s", d.Issuer, d.Subject, unix(d.Expiry))
	case parentExp != 0 && d.Expiry > parentExp:
		return nil, bad("%s → %s expires at %s, after its parent's delegation (%s)", d.Issuer, d.Subject, unix(d.Expiry), unix(parentExp))
	}
	return d, nil
}

// checkTimes checks nbf, iat and exp against now, with the skew.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	skew := int64(v.skew() / time.Second)
	switch {
	case c.NotBefore > now.Unix()+skew:
		return refuse(NotYetValid, fmt.Sprintf("the ticket is valid from %s (nbf)", unix(c.NotBefore)))
	case c.IssuedAt > now.Unix()+skew:
		return refuse(NotYetValid, fmt.Sprintf("the ticket is issued in the future (iat %s); check the issuer's clock", unix(c.IssuedAt)))
	case c.Expiry+skew <= now.Unix():
		return refuse(Expired, fmt.Sprintf("the ticket expired at %s", unix(c.Expiry)))
	}
	return nil
}

// checkScope checks that the grant names only what is under the issuer's
// name: plc grants plc.* slices, plc.japan only plc.japan.* ones.
func checkScope(c *Claims) error {
	full := c.SliceName()
	authority, _, _, ok := naming.ParseFullName(full)
	if !ok {
		return refuse(InvalidGrant, fmt.Sprintf("slice %q is not a full name <authority>.<site>.<slice>", full))
	}
	if !naming.WithinAuthority(authority, c.Issuer) {
		return refuse(OutOfScope, fmt.Sprintf("%s may grant only slices under its own name (%s.*), not %s", c.Issuer, c.Issuer, full))
	}
	return nil
}

var poolRefRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// checkGrant checks the grant's own fields; the API server's validation of
// the objects it makes checks the rest (and that is reported as
// InvalidGrant too).
func checkGrant(c *Claims) error {
	bad := func(format string, a ...any) error { return refuse(InvalidGrant, fmt.Sprintf(format, a...)) }
	if c.Withdraw != nil {
		return nil // its slice is checked with the scope
	}
	if s := c.Sliver; s != nil {
		switch {
		case s.Template.Image == "" || len(s.Template.Image) > 512:
			return bad("sliver.template.image must be 1 to 512 characters")
		case s.CPUShare < 0 || s.CPUShare > 100:
			return bad("sliver.cpuShare must be 1 to 100")
		case s.PodSecurity != "" && s.PodSecurity != planetv1.PodSecurityBaseline && s.PodSecurity != planetv1.PodSecurityRestricted:
			return bad("sliver.podSecurity must be Baseline or Restricted")
		case len(s.Description) > 1024 || len(s.URL) > 2048:
			return bad("sliver.description is at most 1024 characters, sliver.url at most 2048")
		case s.URL != "" && !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://"):
			return bad("sliver.url must start with http:// or https://")
		case len(s.Users) > 256:
			return bad("sliver.users has more than 256 users")
		case s.ExpiresAt < 0 || s.ExpiresAt > c.Expiry:
			return bad("sliver.expiresAt must not be after the ticket's expiry (%s)", unix(c.Expiry))
		}
		return nil
	}
	p := c.Pool
	switch {
	case !poolRefRE.MatchString(p.Pool):
		return bad("pool.pool %q is not <namespace>/<name>", p.Pool)
	case len(p.PerNode) == 0 || len(p.PerNode) > 5:
		return bad("pool.perNode must name 1 to 5 resources")
	case p.Until < 0 || p.Until > c.Expiry:
		return bad("pool.until must not be after the ticket's expiry (%s)", unix(c.Expiry))
	}
	for name, q := range p.PerNode {
		if q.Sign() <= 0 {
			return bad("pool.perNode[%s] must be positive", name)
		}
	}
	return nil
}

func unix(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }
