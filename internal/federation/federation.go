// Package federation holds the pure decisions of PlanetKube's federation
// (PlanetLab §3.4): which peers a home slice spans and what it grants them,
// when a peer's feed is read next, and how the Tickets pulled from a feed
// follow it. The controllers read the cluster, call these, and write.
package federation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"time"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Peers returns the peer authorities a home slice names
// (spec.nodes.authorities), sorted, without the local one.
func Peers(s *planetv1.Slice, local string) []string {
	var out []string
	for _, a := range s.Spec.Nodes.Authorities {
		if a != local && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Grant is what a home slice grants each of its peers: its description,
// users, node choice (without the authorities: a peer does not pass it on),
// template, share, pod security, state and expiry in force.
func Grant(s *planetv1.Slice, fullName string, expiresAt time.Time) ticket.SliverGrant {
	nodes := *s.Spec.Nodes.DeepCopy()
	nodes.Authorities = nil
	state := s.Spec.State
	if state == planetv1.SliceActive {
		state = "" // the default: a grant says only Suspended
	}
	return ticket.SliverGrant{
		Slice:       fullName,
		Description: s.Spec.Description,
		URL:         s.Spec.URL,
		Users:       s.Spec.Users,
		Nodes:       nodes,
		Template:    s.Spec.Template,
		CPUShare:    s.Spec.CPUShare,
		PodSecurity: s.Spec.PodSecurity,
		ExpiresAt:   expiresAt.Unix(),
		State:       state,
	}
}

// GrantHash identifies a grant for a peer: a new ticket is signed when it
// changes.
func GrantHash(peer string, g ticket.SliverGrant) string {
	body, _ := json.Marshal(struct {
		Peer  string             `json:"peer"`
		Grant ticket.SliverGrant `json:"grant"`
	}{peer, g}) // plain data: it cannot fail
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:16])
}

// Claims returns the ticket for a peer: issued now, expiring with the slice
// (never more than ticket.MaxLifetime ahead), with a fresh jti.
func Claims(peer string, g ticket.SliverGrant, now time.Time, jti string) ticket.Claims {
	exp := min(g.ExpiresAt, now.Add(ticket.MaxLifetime).Unix())
	g.ExpiresAt = exp
	return ticket.Claims{Audience: peer, IssuedAt: now.Unix(), Expiry: exp, ID: jti, Sliver: &g}
}

// WithdrawClaims returns the withdrawal of a slice for a peer: issued at
// iat (after every ticket the peer was given for the slice), valid for as
// long as any of them could be (ticket.MaxLifetime), with a fresh jti. The
// peer refuses every older ticket of the slice until it expires.
func WithdrawClaims(peer, fullName string, iat time.Time, jti string) ticket.Claims {
	return ticket.Claims{Audience: peer, IssuedAt: iat.Unix(), Expiry: iat.Unix() + ticket.MaxLifetimeSeconds, ID: jti,
		Withdraw: &ticket.WithdrawGrant{Slice: fullName}}
}

// SliceID is the label value that identifies a slice's pushed and pulled
// Tickets: 20 hex characters of the SHA-256 of its full name.
func SliceID(fullName string) string {
	sum := sha256.Sum256([]byte(fullName))
	return hex.EncodeToString(sum[:10])
}

// TicketName is the deterministic name of the Ticket that carries a slice's
// ticket with a given jti at a peer: "<prefix>-<slice id>-<8 hex of the
// jti's hash>". A renewal (new jti) gets a new name, so the old Ticket
// keeps the slice until the new one is redeemed.
func TicketName(prefix, fullName, jti string) string {
	sum := sha256.Sum256([]byte(jti))
	return prefix + "-" + SliceID(fullName) + "-" + hex.EncodeToString(sum[:4])
}

// DefaultPollInterval is PlanetLab's: nodes polled PLC every 600 s plus a
// random 0–301 s.
const DefaultPollInterval = 600 * time.Second

// NextPoll returns when a feed is read next after an attempt at now: the
// interval plus a random jitter of up to half of it, plus one second (600 s
// + 0–301 s by default).
func NextPoll(now time.Time, interval time.Duration, rnd *rand.Rand) time.Time {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	jitter := time.Duration(rnd.Int64N(int64(interval/2+time.Second) + 1))
	return now.Add(interval + jitter).Truncate(time.Second)
}
