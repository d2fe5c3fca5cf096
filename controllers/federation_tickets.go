package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/ticket"
)

// The tickets a home slice was given for its peers live in a Secret of the
// manager's namespace, one per slice, one key per peer: what the peer
// holds now (the slice's latest sliver ticket for it, or its withdrawal).
// The feed serves them and the push applies them from there; they are
// never in the Slice's status, which the slice's site can read and a
// bearer token must not sit in. The Secret outlives its slice until the
// withdrawals in it expire.

// FederationTicketsSecret names the Secret that holds a home slice's
// tickets: "planetkube-federation-" and the slice's id (federation.SliceID).
func FederationTicketsSecret(fullName string) string {
	return "planetkube-federation-" + federation.SliceID(fullName)
}

// grantHashPrefix prefixes the annotations of a tickets' Secret that say,
// per peer, what the sliver ticket it holds grants (federation.GrantHash):
// a new ticket is signed when the slice's grant no longer hashes to it.
// The Secret, not the slice's status (which a cache may serve late), is
// what the peers were given.
const grantHashPrefix = "grant.planetkube.io/"

// errForeignSecret is a Secret with a tickets' Secret's name that is not
// the slice's: nothing is read from it or written to it.
var errForeignSecret = errors.New("the Secret is not this slice's tickets")

// ticketStore is a slice's tickets, read from its Secret, changed in
// memory, and written back once.
type ticketStore struct {
	full    string
	secret  *corev1.Secret // nil: none yet
	tokens  map[string]string
	grants  map[string]string // peer -> grant hash of its sliver ticket
	changed bool
	// parsed holds the claims of the tokens read so far (a reconcile
	// looks at each peer's several times).
	parsed map[string]*ticket.Claims
}

// loadTickets reads a slice's tickets (without a cache: what was written
// must be read back).
func (r *FederationReconciler) loadTickets(ctx context.Context, full string) (*ticketStore, error) {
	st := &ticketStore{full: full, tokens: map[string]string{}, grants: map[string]string{}}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: FederationTicketsSecret(full)}, s)
	if apierrors.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the tickets of slice %s: %w", full, err)
	}
	if s.Annotations[planetv1.AnnotationSliceFullName] != full || s.Labels[planetv1.LabelFederationTickets] != "true" {
		return nil, fmt.Errorf("secret %s/%s (annotation %s=%q): %w", s.Namespace, s.Name,
			planetv1.AnnotationSliceFullName, s.Annotations[planetv1.AnnotationSliceFullName], errForeignSecret)
	}
	st.secret = s
	for peer, token := range s.Data {
		st.tokens[peer] = string(token)
		st.grants[peer] = s.Annotations[grantHashPrefix+peer]
	}
	return st, nil
}

// set records what a peer holds now: a sliver ticket, with the hash of
// what it grants, or a withdrawal (grant "").
func (st *ticketStore) set(peer, token, grant string) {
	if st.tokens[peer] != token || st.grants[peer] != grant {
		st.tokens[peer], st.grants[peer], st.changed = token, grant, true
		delete(st.parsed, peer)
	}
}

// drop forgets a peer.
func (st *ticketStore) drop(peer string) {
	if _, ok := st.tokens[peer]; ok {
		delete(st.tokens, peer)
		delete(st.grants, peer)
		delete(st.parsed, peer)
		st.changed = true
	}
}

// claims reads the claims of a peer's token (issued here: trusted).
func (st *ticketStore) claims(peer string) *ticket.Claims {
	if c, ok := st.parsed[peer]; ok {
		return c
	}
	c, _, err := ticket.Inspect(st.tokens[peer])
	if err != nil {
		c = nil
	}
	if st.parsed == nil {
		st.parsed = map[string]*ticket.Claims{}
	}
	st.parsed[peer] = c
	return c
}

// peers returns the peers the store holds a ticket for, sorted.
func (st *ticketStore) peers() []string { return slices.Sorted(maps.Keys(st.tokens)) }

// pruneExpired forgets the tickets that expired (with the skew: a peer
// refuses them already), and returns the peers it forgot and when the
// next ticket expires (0: none).
func (st *ticketStore) pruneExpired(now time.Time) ([]string, time.Duration) {
	var (
		next    time.Duration
		dropped []string
	)
	for _, peer := range st.peers() {
		c := st.claims(peer)
		if c == nil || !c.Expires().Add(ticket.MaxSkew).After(now) {
			st.drop(peer)
			dropped = append(dropped, peer)
			continue
		}
		next = soonest(next, c.Expires().Add(ticket.MaxSkew).Sub(now)+time.Second)
	}
	return dropped, next
}

// saveTickets writes the store back when it changed: the Secret is made,
// updated (optimistically: a conflict is retried) or, empty, deleted.
func (r *FederationReconciler) saveTickets(ctx context.Context, st *ticketStore) error {
	if !st.changed {
		return nil
	}
	data := make(map[string][]byte, len(st.tokens))
	annotations := map[string]string{planetv1.AnnotationSliceFullName: st.full}
	for peer, token := range st.tokens {
		data[peer] = []byte(token)
		if g := st.grants[peer]; g != "" {
			annotations[grantHashPrefix+peer] = g
		}
	}
	var err error
	switch {
	case st.secret == nil && len(data) == 0:
	case st.secret == nil:
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: r.Namespace, Name: FederationTicketsSecret(st.full),
				Labels:      map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelFederationTickets: "true"},
				Annotations: annotations,
			},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if err = r.Create(ctx, s); err == nil {
			st.secret = s
		}
	case len(data) == 0:
		err = client.IgnoreNotFound(r.Delete(ctx, st.secret, client.Preconditions{UID: &st.secret.UID, ResourceVersion: &st.secret.ResourceVersion}))
		st.secret = nil
	default:
		st.secret.Data, st.secret.Annotations = data, annotations
		err = r.Update(ctx, st.secret)
	}
	if err != nil {
		return fmt.Errorf("writing the tickets of slice %s: %w", st.full, err)
	}
	st.changed = false
	return nil
}

// FeedTickets reads, for the feed, the unexpired tickets the home slices
// hold for a peer (sliver tickets and withdrawals) from their Secrets. It
// remembers each ticket's expiry per Secret version, so that a poll parses
// only the tickets written since the last one: a feed of 1,000 slices
// parsed 1,000 tickets on every poll.
type FeedTickets struct {
	// Reader reads the Secrets (the manager's cache of them).
	Reader client.Reader
	// Namespace is the manager's, which holds them.
	Namespace string

	// generation counts the changes to the Secrets (Changed); a version
	// computed at one generation holds until the next.
	generation atomic.Uint64

	mu     sync.Mutex
	expiry map[types.UID]*secretExpiry
	// versions remembers, per requester, the version of its last answer.
	versions map[string]versionMemo
}

// versionMemo is the version of a requester's tickets as computed at a
// generation of the Secrets; it holds until then, or until the first of
// its tickets expires (until, Unix seconds).
type versionMemo struct {
	generation uint64
	version    string
	until      int64
}

// Changed says that a tickets' Secret was added, changed or deleted: the
// versions computed before are computed again. The informer of the
// Secrets calls it once it has stored the change.
func (f *FeedTickets) Changed() { f.generation.Add(1) }

// Answer returns what the feed sends requester: its unexpired tickets,
// sorted, and when have is not "" (the request asks for a versioned feed)
// their version, and Unchanged when it is the one have names. An answer
// that is unchanged since the last one (the same generation of the
// Secrets, no ticket of it expired) reads no Secret.
func (f *FeedTickets) Answer(ctx context.Context, requester, have string, now time.Time) (feed.Answer, error) {
	gen := f.generation.Load() // before the read: a change after it is seen next time
	if have != "" && have != feed.HaveNone {
		f.mu.Lock()
		m, ok := f.versions[requester]
		f.mu.Unlock()
		if ok && m.generation == gen && now.Unix() < m.until && m.version == have {
			return feed.Answer{Version: have, Unchanged: true}, nil
		}
	}
	tickets, until, err := f.read(ctx, requester, now)
	if err != nil || have == "" {
		return feed.Answer{Tickets: tickets}, err
	}
	v := feed.Version(tickets)
	f.mu.Lock()
	if f.versions == nil {
		f.versions = map[string]versionMemo{}
	}
	f.versions[requester] = versionMemo{generation: gen, version: v, until: until}
	f.mu.Unlock()
	if v == have {
		return feed.Answer{Version: v, Unchanged: true}, nil
	}
	return feed.Answer{Tickets: tickets, Version: v}, nil
}

// secretExpiry holds the expiries (Unix seconds; 0 for a ticket that does
// not parse) of the tickets of one version of a Secret, by peer, as they
// are asked for.
type secretExpiry struct {
	version string
	peers   map[string]int64
}

// read returns the requester's unexpired tickets, sorted, and when the
// first of them expires (Unix seconds; math.MaxInt64 for none).
func (f *FeedTickets) read(ctx context.Context, requester string, now time.Time) ([]string, int64, error) {
	list := &corev1.SecretList{}
	if err := f.Reader.List(ctx, list, client.InNamespace(f.Namespace), client.MatchingLabels{planetv1.LabelFederationTickets: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, 0, err
	}
	until := int64(math.MaxInt64)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.expiry == nil {
		f.expiry = map[types.UID]*secretExpiry{}
	}
	var out []string
	for i := range list.Items {
		s := &list.Items[i]
		token, ok := s.Data[requester]
		if !ok {
			continue
		}
		e := f.expiry[s.UID]
		if e == nil || e.version != s.ResourceVersion {
			e = &secretExpiry{version: s.ResourceVersion, peers: map[string]int64{}}
			f.expiry[s.UID] = e
		}
		exp, ok := e.peers[requester]
		if !ok {
			if c, _, err := ticket.Inspect(string(token)); err == nil {
				exp = c.Expiry
			}
			e.peers[requester] = exp
		}
		if exp == 0 || !time.Unix(exp, 0).After(now) {
			continue // expired since: pruned at the slice's next look
		}
		out = append(out, string(token))
		until = min(until, exp)
	}
	if len(f.expiry) > len(list.Items) {
		// Forget the Secrets that are gone.
		live := make(map[types.UID]bool, len(list.Items))
		for i := range list.Items {
			live[list.Items[i].UID] = true
		}
		maps.DeleteFunc(f.expiry, func(uid types.UID, _ *secretExpiry) bool { return !live[uid] })
	}
	slices.Sort(out) // the same feed for the same tickets
	return out, until, nil
}

// remembered is how many Secrets' expiries f holds (for tests).
func (f *FeedTickets) remembered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.expiry)
}
