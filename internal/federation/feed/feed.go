// Package feed is PlanetKube's pull federation protocol. PlanetLab's nodes
// polled PLC for the slices they should run; here an install polls the feed
// of a peer authority, its home, for the tickets addressed to it.
//
// The requester proves who it is by signing its request with its authority
// key: a short-lived JWS of type RequestType naming the requester (iss) and
// the home (aud), with a random id (jti). It is sent as
//
//	GET <feed URL>
//	Authorization: PlanetKube-Signed <request>
//
// to the home's https URL, whose path is Path. The home checks the request
// against the keys of the Authorities it knows (no delegates: only an
// authority's own key) and answers 200 with a JWS of type FeedType signed by
// its own key, addressed to the requester and naming the request's id (req),
// that lists the compact tickets addressed to the requester. The requester
// checks the feed's signature against the home's keys, its audience, that it
// answers this request (a replayed earlier feed names another id) and its
// time; the tickets it carries are verified one by one as any ticket is.
//
// A requester that sends HaveHeader (the Version of the last feed it
// followed, or HaveNone) is answered with a feed of type VersionedType,
// which names its tickets' Version; while they are the ones the requester
// has, the answer says Unchanged and lists none, so that a home serving
// many peers signs and sends a few hundred bytes a poll rather than every
// ticket. The header is not signed: a changed one only makes the home send
// what it would send anyway, and the requester accepts Unchanged only for
// the version it holds. A requester that sends no HaveHeader (an older
// install) gets a feed of type FeedType, as before; a home that does not
// know the header (an older install) answers FeedType, which the requester
// accepts as a whole feed.
//
// A request the home cannot verify is answered 401 with a short text
// reason, a method other than GET 405, and a failure to list the tickets 500.
package feed

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// The protocol's JWS types, path and bounds.
const (
	// RequestType is the JWS type of a feed request.
	RequestType = "planetkube-feed-request+jwt"
	// FeedType is the JWS type of a feed.
	FeedType = "planetkube-feed+jwt"
	// VersionedType is the JWS type of a feed that names its version,
	// the answer to a request with HaveHeader.
	VersionedType = "planetkube-feed-v2+jwt"
	// HaveHeader carries the version of the feed the requester has
	// followed (or HaveNone): it asks for a VersionedType answer.
	HaveHeader = "PlanetKube-Feed-Have"
	// HaveNone is HaveHeader's value from a requester that holds no
	// version yet.
	HaveNone = "none"
	// Path is where a home serves its feed.
	Path = "/federation/v1/feed"
	// AuthScheme is the Authorization scheme that carries a request.
	AuthScheme = "PlanetKube-Signed"
	// MaxFeedBytes bounds a feed's body, read before it is parsed.
	MaxFeedBytes = 16 << 20
	// MaxTickets bounds the tickets one feed carries.
	MaxTickets = 20000
	// MaxRequestBytes bounds a request token (one is some 400 bytes).
	MaxRequestBytes = 4096
	// MaxRequestLifetime bounds a request's lifetime (exp - iat).
	MaxRequestLifetime = 2 * time.Minute
)

// requestLifetime is the lifetime NewRequest gives a request: a request is
// sent at once, and the verifier's skew covers the clocks' difference.
const requestLifetime = time.Minute

// Request is a feed request's payload.
type Request struct {
	// Issuer is the requester's authority (iss).
	Issuer string `json:"iss"`
	// Audience is the home's authority (aud).
	Audience string `json:"aud"`
	// IssuedAt and Expiry are Unix seconds (iat, exp).
	IssuedAt int64 `json:"iat"`
	Expiry   int64 `json:"exp"`
	// ID is the request's random id (jti): 128 bits in lowercase hex.
	ID string `json:"jti"`
}

// Feed is a feed's payload.
type Feed struct {
	// Issuer is the home's authority (iss).
	Issuer string `json:"iss"`
	// Audience is the requester's authority (aud).
	Audience string `json:"aud"`
	// IssuedAt is when the home answered, in Unix seconds (iat).
	IssuedAt int64 `json:"iat"`
	// Request is the id of the request the feed answers (req).
	Request string `json:"req"`
	// Tickets are the compact tickets addressed to the requester.
	Tickets []string `json:"tickets"`
	// Version names the tickets (VersionedType only): the same tickets
	// have the same version.
	Version string `json:"ver,omitempty"`
	// Unchanged says the tickets are those of Version, which the request
	// said it has, and Tickets is empty (VersionedType only).
	Unchanged bool `json:"unchanged,omitempty"`
}

// Reason classifies a failed poll, or a refused request; Unreachable
// failures are the network's, the others the answer's. A feed's refusals
// and a ticket's are one kind of error, ticket.Refusal, each with its own
// reasons.
type Reason = ticket.Reason

// Reasons of failure.
const (
	// Unreachable: the home did not answer (a network error, a timeout, a
	// 5xx status).
	Unreachable Reason = "Unreachable"
	// Malformed: not a JWS of the expected type, or not its claims.
	Malformed Reason = "Malformed"
	// Oversized: the body, the number of tickets or a ticket is over its
	// bound.
	Oversized Reason = "Oversized"
	// BadSignature: not signed by a key of the expected authority.
	BadSignature Reason = "BadSignature"
	// WrongAudience: addressed to another authority.
	WrongAudience Reason = "WrongAudience"
	// Stale: issued in the future, expired, or a feed issued before its
	// request.
	Stale Reason = "Stale"
	// Mismatch: the feed answers another request (a replayed earlier feed)
	// or comes from another authority.
	Mismatch Reason = "Mismatch"
	// Refused: the home answered 401 or another non-200, non-5xx status.
	Refused Reason = "Refused"
	// Replayed: a request answered already (the handler remembers request
	// ids until they expire).
	Replayed Reason = "Replayed"
	// UnknownIssuer: the requester is not an authority known to the home
	// (VerifyRequest only).
	UnknownIssuer Reason = "UnknownIssuer"
)

// Error is why a poll failed or a request was refused.
type Error = ticket.Refusal

func fail(reason Reason, format string, a ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the reason of an *Error, or "" for any other error.
func ReasonOf(err error) Reason { return ticket.ReasonOf(err) }

// NewRequest signs a request for home's feed, valid for a minute from now.
func NewRequest(s ticket.Signer, home string, now time.Time) (token string, req Request, err error) {
	if !naming.ValidAuthority(s.Authority) || !naming.ValidAuthority(home) {
		return "", Request{}, fmt.Errorf("%q and %q must be authorities' names", s.Authority, home)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Request{}, err
	}
	req = Request{
		Issuer: s.Authority, Audience: home, ID: hex.EncodeToString(id[:]),
		IssuedAt: now.Unix(), Expiry: now.Add(requestLifetime).Unix(),
	}
	token, err = s.SignMessage(RequestType, req, MaxRequestBytes)
	if err != nil {
		return "", Request{}, err
	}
	return token, req, nil
}

// VerifyRequest checks a request addressed to local: signed by a key that
// keys lists under the requester's name (its iss; a delegate's key does not
// do), issued no later than now+skew, expiring after now-skew and valid for
// at most MaxRequestLifetime. A refusal is an *Error.
func VerifyRequest(token string, keys ticket.Keyring, local string, skew time.Duration, now time.Time) (*Request, error) {
	return verifyRequest(token, func(a string) ([]ticket.Key, error) { return keys[a], nil }, local, skew, now)
}

// verifyRequest is VerifyRequest with the requester's keys read by keysOf
// once its name is checked (none: an unknown requester). An error of
// keysOf is returned as it is: not a refusal, a failure to read the keys.
func verifyRequest(token string, keysOf func(authority string) ([]ticket.Key, error), local string, skew time.Duration, now time.Time) (*Request, error) {
	// The requester's name, unverified, says whose keys to verify with.
	payload, _, err := ticket.InspectMessage(token, RequestType, MaxRequestBytes)
	if err != nil {
		return nil, fromRefusal(err, Malformed, "the request")
	}
	req := &Request{}
	if err := ticket.DecodeStrict(payload, req); err != nil {
		return nil, fail(Malformed, "the request's payload is not its JSON object: %v", err)
	}
	iat, exp := req.IssuedAt, req.Expiry
	switch {
	case !naming.ValidAuthority(req.Issuer) || !naming.ValidAuthority(req.Audience):
		return nil, fail(Malformed, "the request's iss and aud must be authorities' names")
	case !validID(req.ID):
		return nil, fail(Malformed, "the request's jti must be 32 lowercase hex digits")
	case iat <= 0 || exp <= iat:
		return nil, fail(Malformed, "the request's iat and exp are required (Unix seconds), exp after iat")
	case exp-iat > int64(MaxRequestLifetime/time.Second):
		return nil, fail(Malformed, "the request is valid for more than %s", MaxRequestLifetime)
	}
	authorityKeys, err := keysOf(req.Issuer)
	if err != nil {
		return nil, err
	}
	if len(authorityKeys) == 0 {
		return nil, fail(UnknownIssuer, "no Authority %q is known here", req.Issuer)
	}
	if _, _, err := ticket.VerifyMessage(token, RequestType, MaxRequestBytes, authorityKeys); err != nil {
		// The verified payload is the inspected one: the same token,
		// parsed the same way.
		return nil, fromRefusal(err, BadSignature, fmt.Sprintf("the request of %s", req.Issuer))
	}
	if req.Audience != local {
		return nil, fail(WrongAudience, "the request is addressed to %q, this is %q", req.Audience, local)
	}
	s, n := seconds(skew), now.Unix()
	switch {
	case iat > n+s:
		return nil, fail(Stale, "the request is issued in the future (iat %s); check the requester's clock", unix(iat))
	case exp <= n-s:
		return nil, fail(Stale, "the request expired at %s", unix(exp))
	}
	return req, nil
}

// SignFeed signs a feed; its issuer is set from the signer. A feed with a
// Version is signed as VersionedType, one without as FeedType.
func SignFeed(s ticket.Signer, f Feed) (string, error) {
	f.Issuer = s.Authority
	switch {
	case !naming.ValidAuthority(f.Audience):
		return "", fmt.Errorf("the feed's audience %q is not an authority's name", f.Audience)
	case !validID(f.Request):
		return "", errors.New("the feed must name its request's id")
	case f.IssuedAt <= 0:
		return "", errors.New("the feed's iat is required")
	case f.Version != "" && !ValidVersion(f.Version):
		return "", fmt.Errorf("the feed's version %q is not 32 lowercase hex digits", f.Version)
	case f.Version == "" && f.Unchanged:
		return "", errors.New("an unchanged feed must name its version")
	case f.Unchanged && len(f.Tickets) > 0:
		return "", errors.New("an unchanged feed lists no tickets")
	}
	if err := checkTickets(f.Tickets); err != nil {
		return "", err
	}
	if f.Tickets == nil {
		f.Tickets = []string{}
	}
	typ := FeedType
	if f.Version != "" {
		typ = VersionedType
	}
	return s.SignMessage(typ, f, MaxFeedBytes)
}

// VerifyFeed checks the body of home's answer to req: a feed signed by one
// of homeKeys, issued by home, addressed to local, answering req (not an
// earlier request), issued between req's iat and now (each with the skew)
// and holding at most MaxTickets tickets of at most ticket.MaxTokenBytes
// each. have is what the request sent in HaveHeader ("" for none): with
// it, a VersionedType feed is accepted too, and says Unchanged only for
// that version; without it, only a FeedType feed is. The tickets
// themselves are not verified here. A refusal is an *Error.
func VerifyFeed(body []byte, homeKeys []ticket.Key, home, local string, req Request, have string, skew time.Duration, now time.Time) (*Feed, error) {
	if len(body) > MaxFeedBytes {
		return nil, fail(Oversized, "the feed has more than %d bytes", MaxFeedBytes)
	}
	typ := FeedType
	if have != "" && ticket.MessageType(string(body)) == VersionedType {
		typ = VersionedType
	}
	payload, _, err := ticket.VerifyMessage(string(body), typ, MaxFeedBytes, homeKeys)
	if err != nil {
		return nil, fromRefusal(err, BadSignature, fmt.Sprintf("the feed of %s", home))
	}
	f := &Feed{}
	if err := ticket.DecodeStrict(payload, f); err != nil {
		return nil, fail(Malformed, "the feed's payload is not its JSON object: %v", err)
	}
	s := seconds(skew)
	switch {
	case f.Issuer != home:
		return nil, fail(Mismatch, "the feed is issued by %q, not by the home %q", f.Issuer, home)
	case f.Audience != local:
		return nil, fail(WrongAudience, "the feed is addressed to %q, this is %q", f.Audience, local)
	case f.Request != req.ID:
		return nil, fail(Mismatch, "the feed answers request %q, not this one (%q): a replayed feed", f.Request, req.ID)
	case f.IssuedAt < req.IssuedAt-s:
		return nil, fail(Stale, "the feed is issued at %s, before its request (%s)", unix(f.IssuedAt), unix(req.IssuedAt))
	case f.IssuedAt > now.Unix()+s:
		return nil, fail(Stale, "the feed is issued in the future (iat %s); check the home's clock", unix(f.IssuedAt))
	case typ == FeedType && (f.Version != "" || f.Unchanged):
		return nil, fail(Malformed, "a %s feed names no version", FeedType)
	case typ == VersionedType && !ValidVersion(f.Version):
		return nil, fail(Malformed, "the feed's version %q is not 32 lowercase hex digits", f.Version)
	case f.Unchanged && f.Version != have:
		return nil, fail(Mismatch, "the feed says version %s is unchanged, but this install has %q", f.Version, have)
	case f.Unchanged && len(f.Tickets) > 0:
		return nil, fail(Malformed, "an unchanged feed lists no tickets")
	}
	if err := checkTickets(f.Tickets); err != nil {
		return nil, fail(Oversized, "%v", err)
	}
	return f, nil
}

// Version names a list of tickets, as the home sends it in a VersionedType
// feed: the first 128 bits of the SHA-256 of the tickets, sorted, each
// ended by a newline, in lowercase hex.
func Version(sortedTickets []string) string {
	h := sha256.New()
	for _, t := range sortedTickets {
		_, _ = io.WriteString(h, t)
		_, _ = h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ValidVersion says whether v is a feed version: 32 lowercase hex digits.
func ValidVersion(v string) bool { return validID(v) }

// checkTickets bounds a feed's tickets.
func checkTickets(tickets []string) error {
	if len(tickets) > MaxTickets {
		return fmt.Errorf("the feed has %d tickets, more than %d", len(tickets), MaxTickets)
	}
	for i, t := range tickets {
		if len(t) > ticket.MaxTokenBytes {
			return fmt.Errorf("ticket %d has %d bytes, more than %d", i+1, len(t), ticket.MaxTokenBytes)
		}
	}
	return nil
}

// fromRefusal turns a ticket refusal of what into an *Error: Malformed
// stays Malformed, an unknown key or a bad signature is bad.
func fromRefusal(err error, bad Reason, what string) *Error {
	var r *ticket.Refusal
	if !errors.As(err, &r) {
		return fail(Malformed, "%s: %v", what, err)
	}
	if r.Reason == ticket.Malformed {
		return fail(Malformed, "%s: %s", what, r.Message)
	}
	return fail(bad, "%s: %s", what, r.Message)
}

// validID says whether id is 128 bits in lowercase hex, as NewRequest
// makes them.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// seconds returns a skew in whole seconds, a negative one as none.
func seconds(skew time.Duration) int64 {
	if skew < 0 {
		return 0
	}
	return int64(skew / time.Second)
}

func unix(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }
