// Package pull is federation by pull (PlanetLab's direct method): an
// install reads the feeds of the peers it knows, every poll interval plus
// jitter, and makes the Tickets of each feed follow it (Plan says how),
// ticket by ticket; and it checks that the push kubeconfigs of its peers
// still reach them. The Authority controller calls the Poller when a poll
// is due.
package pull

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/federation/peerclient"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
	"github.com/planetkube/planetkube/internal/trust"
)

// defaultFeedTimeout bounds one poll of a feed: connecting, the answer and reading
// it (a slow feed is Unreachable, and nothing is touched).
const defaultFeedTimeout = 30 * time.Second

// wholeFeedEvery is how often at most a feed is read whole even when the
// home says it is unchanged: a guard against a home that would say so
// wrongly, at the cost of one whole answer in six at the default interval.
const wholeFeedEvery = time.Hour

// +kubebuilder:rbac:groups=planetkube.io,resources=tickets,verbs=create;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;create

// Poller reads the feeds of peer authorities (pull federation) and checks
// that their push kubeconfigs reach them. The Authority controller calls
// it when a poll is due.
type Poller struct {
	// Authority is this install's name: the audience of the feeds.
	Authority string
	// Signer signs the requests.
	Signer *authority.SignerSource
	// Peers gives the push clients.
	Peers *peerclient.Clients
	// Skew is the clock skew allowed.
	Skew time.Duration
	// DefaultTrust is whom a site that sets no trustedAuthorities trusts
	// (empty: Authority alone): a feed's ticket no site trusts is refused.
	DefaultTrust []string
	// Timeout bounds one poll of a feed (default 30 s): a slower feed is
	// Unreachable.
	Timeout time.Duration
	// HTTPClient, when set, replaces the client made from feedCABundle
	// (tests).
	HTTPClient func(a *planetv1.Authority) (*http.Client, error)

	mu  sync.Mutex
	rnd *rand.Rand
	// followed remembers, per Authority (by UID), the last feed followed
	// whole with no failure: a home that says it is unchanged is followed
	// again from it, with no ticket fetched nor verified again. It is
	// held in memory only: a new manager reads each feed whole first.
	followed map[string]followedFeed
}

// followedFeed is a feed followed whole with every ticket applied.
type followedFeed struct {
	// version is the feed's, url where it was read, generation the
	// Authority's then (its keys or URL changed: read it whole again).
	version, url string
	generation   int64
	// at is when it was read whole.
	at time.Time
	// pulled is what its tickets made.
	pulled []pulledTicket
	// listed is how many tickets it listed.
	listed int
}

// have returns the version of a's feed to send, HaveNone when none can be
// followed again, and what it made.
func (p *Poller) have(a *planetv1.Authority, now time.Time) (string, *followedFeed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.followed[string(a.UID)]
	if !ok || f.url != a.Spec.FeedURL || f.generation != a.Generation || now.Sub(f.at) >= wholeFeedEvery || now.Before(f.at) {
		return feed.HaveNone, nil
	}
	return f.version, &f
}

// remember records a feed followed whole, or forgets a's when f is nil.
func (p *Poller) remember(a *planetv1.Authority, f *followedFeed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f == nil {
		delete(p.followed, string(a.UID))
		return
	}
	if p.followed == nil {
		p.followed = map[string]followedFeed{}
	}
	p.followed[string(a.UID)] = *f
}

// Due says whether an Authority's feed or push should be checked now.
func (p *Poller) Due(a *planetv1.Authority, now time.Time) bool {
	if a.Name == p.Authority || (a.Spec.FeedURL == "" && a.Spec.Push == nil) {
		return false
	}
	st := &a.Status
	return st.NextPollTime == nil || !now.Before(st.NextPollTime.Time) || feedGeneration(a) != a.Generation
}

// feedGeneration is the generation the last poll saw.
func feedGeneration(a *planetv1.Authority) int64 {
	for _, t := range []string{planetv1.ConditionFeedSynced, planetv1.ConditionPushReady} {
		if c := meta.FindStatusCondition(a.Status.Conditions, t); c != nil {
			return c.ObservedGeneration
		}
	}
	return -1
}

// nextPoll returns when to poll after now.
func (p *Poller) nextPoll(a *planetv1.Authority, now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rnd == nil {
		p.rnd = rand.New(rand.NewPCG(uint64(now.UnixNano()), uint64(len(p.Authority))))
	}
	return federation.NextPoll(now, time.Duration(a.Spec.PollIntervalSeconds)*time.Second, p.rnd)
}

// Poll reads the feed and checks the push kubeconfig of a, recording the
// outcome in its status. c reads and writes this cluster.
func (p *Poller) Poll(ctx context.Context, c client.Client, a *planetv1.Authority, now time.Time) {
	st := &a.Status
	st.NextPollTime = &metav1.Time{Time: p.nextPoll(a, now)}
	if a.Spec.FeedURL == "" {
		meta.RemoveStatusCondition(&st.Conditions, planetv1.ConditionFeedSynced)
		st.FeedTickets = 0
	} else {
		res := p.pull(ctx, c, a, now)
		cond := metav1.Condition{Type: planetv1.ConditionFeedSynced, Status: metav1.ConditionTrue, Reason: planetv1.ReasonFeedSynced, Message: res.message, ObservedGeneration: a.Generation}
		if res.applied {
			st.LastPollTime, st.FeedTickets = &metav1.Time{Time: now}, int32(res.tickets)
		}
		if res.reason != "" {
			cond.Status, cond.Reason = metav1.ConditionFalse, res.reason
			if !res.applied {
				cond.Message += "; nothing was changed: the slices it granted run until their tickets expire"
			}
			ctrl.LoggerFrom(ctx).Info("Feed poll failed", "authority", a.Name, "reason", res.reason, "message", cond.Message)
		}
		cond.Message = health.Truncate(cond.Message, 1024)
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	if a.Spec.Push == nil {
		meta.RemoveStatusCondition(&st.Conditions, planetv1.ConditionPushReady)
		return
	}
	cond := metav1.Condition{Type: planetv1.ConditionPushReady, Status: metav1.ConditionTrue, Reason: planetv1.ReasonPeerReachable, ObservedGeneration: a.Generation}
	if ns, reason, err := p.checkPush(ctx, a); err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, health.Truncate(err.Error(), 1024)
	} else {
		cond.Message = "tickets are applied in namespace " + ns + " of " + a.Name
	}
	meta.SetStatusCondition(&st.Conditions, cond)
}

// checkPush lists the Tickets of the push namespace at the peer (one
// item): it proves the kubeconfig, the network and the RBAC there.
func (p *Poller) checkPush(ctx context.Context, a *planetv1.Authority) (string, string, error) {
	pc, ns, err := p.Peers.Client(ctx, a)
	if err != nil {
		var bad *peerclient.ConfigError
		if errors.As(err, &bad) {
			return "", planetv1.ReasonInvalidKubeconfig, err
		}
		return "", planetv1.ReasonPeerUnreachable, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerclient.Timeout)
	defer cancel()
	if err := pc.List(ctx, &planetv1.TicketList{}, client.InNamespace(ns), client.Limit(1)); err != nil {
		return "", planetv1.ReasonPeerUnreachable, fmt.Errorf("listing tickets in namespace %s of %s: %w", ns, a.Name, err)
	}
	return ns, "", nil
}

// pull reads the feed, checks every ticket in it, and makes the pulled
// Tickets follow it. A feed that does not verify changes nothing; within a
// feed that does, each ticket succeeds or fails on its own: a refused one
// is not applied and leaves its slice as it is, and the slices the feed no
// longer lists are withdrawn whatever else fails. The reason returned is
// the first failure's, with every failure in the message.
func (p *Poller) pull(ctx context.Context, c client.Client, a *planetv1.Authority, now time.Time) pullResult {
	failed := func(reason string, err error) pullResult { return pullResult{reason: reason, message: err.Error()} }
	signer, err := p.Signer.Signer(ctx)
	if err != nil {
		return failed(planetv1.ReasonNoKey, err)
	}
	hc, err := p.httpClient(a)
	if err != nil {
		return failed(planetv1.ReasonInvalidFeedConfig, err)
	}
	defer hc.CloseIdleConnections()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultFeedTimeout
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	have, last := p.have(a, now)
	f, err := feed.Fetch(fctx, hc, a.Spec.FeedURL, signer, a.Name, authority.ValidKeys(a), have, p.Skew, func() time.Time { return now })
	if err != nil {
		p.remember(a, nil)
		switch reason := feed.ReasonOf(err); reason {
		case "":
			return failed(planetv1.ReasonInvalidFeedConfig, err) // not https, or the key cannot sign
		case feed.Unreachable:
			return failed(planetv1.ReasonFeedUnreachable, err)
		default:
			return failed(string(reason), err)
		}
	}
	var pulled []pulledTicket
	var failures []feedFailure
	listed := len(f.Tickets)
	if f.Unchanged {
		// The tickets followed last time, whose checks passed then: the
		// Ticket controller checks each Ticket again as trust and keys
		// change here.
		pulled, listed = last.pulled, last.listed
	} else if pulled, failures, err = p.checkFeed(ctx, c, a, f, now); err != nil {
		p.remember(a, nil)
		return failed(planetv1.ReasonRedeemFailed, err) // reading this cluster failed: retried at the next poll
	}
	ns := naming.AuthorityNamespace(a.Name)
	created, deleted, more, err := syncPulled(ctx, c, a.Name, ns, pulled)
	if err != nil {
		p.remember(a, nil)
		if reason := ticket.ReasonOf(err); reason != "" {
			return failed(string(reason), err)
		}
		return failed(planetv1.ReasonRedeemFailed, err)
	}
	failures = append(failures, more...)
	switch {
	case len(failures) > 0 || f.Version == "":
		p.remember(a, nil) // an older home, or failures to look at again with the whole feed
	case !f.Unchanged:
		p.remember(a, &followedFeed{version: f.Version, url: a.Spec.FeedURL, generation: a.Generation, at: now, pulled: pulled, listed: listed})
	}
	valid := 0
	for _, pt := range pulled {
		if !pt.Refused {
			valid++
		}
	}
	res := pullResult{applied: true, tickets: valid, message: fmt.Sprintf(
		"the feed listed %d tickets for this install: %d new, %d withdrawn or replaced", listed, created, deleted)}
	if f.Unchanged {
		res.message = fmt.Sprintf("the feed is unchanged since it was read whole at %s (%d tickets for this install): %d new, %d withdrawn or replaced",
			last.at.UTC().Format(time.RFC3339), listed, created, deleted)
	}
	if len(failures) > 0 {
		res.reason = failures[0].reason
		res.message += fmt.Sprintf("; %d not applied, their slices kept as they are: %s", len(failures), failureText(failures))
	}
	return res
}

// pullResult is the outcome of a poll of a feed.
type pullResult struct {
	// applied says the feed was read and followed (some of its tickets
	// may have failed); tickets counts those applied.
	applied bool
	tickets int
	// reason is "" when all went well, else the first failure's.
	reason, message string
}

// feedFailure is one ticket of a feed that was not applied, and why.
type feedFailure struct {
	reason, message string
}

// failureText lists the first failures (a condition message is bounded).
func failureText(failures []feedFailure) string {
	var b strings.Builder
	for i, f := range failures {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(failures)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.reason + ": " + f.message)
	}
	return b.String()
}

// pulledTicket is a ticket of a feed, checked, and its Ticket's name.
type pulledTicket struct {
	Pulled
	token, fullName string
}

// checkFeed checks every ticket of a feed as the Ticket controller will
// (signature, audience, times, scope), and that each is issued by the
// feed's authority or its delegates, grants slivers or withdraws a slice,
// names a slice some site here trusts (a withdrawal needs no trust),
// appears once, and is not older than the ticket its slice runs here (a
// replay). A ticket that fails is returned Refused, with its slice as its
// token names it, and a failure saying why; an error is a failure to read
// this cluster.
func (p *Poller) checkFeed(ctx context.Context, c client.Client, a *planetv1.Authority, f *feed.Feed, now time.Time) ([]pulledTicket, []feedFailure, error) {
	ring, err := authority.Keys{Reader: c, Own: p.Signer}.Keyring(ctx)
	if err != nil {
		return nil, nil, err
	}
	sites := &planetv1.SiteList{}
	if err := c.List(ctx, sites); err != nil {
		return nil, nil, err
	}
	v := &ticket.Verifier{Audience: p.Authority, Keys: ring, Skew: p.Skew}
	policy := trust.Policy{Local: p.Authority, Default: p.DefaultTrust}
	seen := map[string]bool{}
	var (
		out      = make([]pulledTicket, 0, len(f.Tickets))
		failures []feedFailure
	)
	for i, token := range f.Tickets {
		vt, err := p.checkPulled(ctx, c, a, v, policy, sites.Items, token, seen, now)
		if err == nil {
			seen[vt.SliceName()] = true
			out = append(out, pulledTicket{
				Pulled: Pulled{Name: federation.TicketName("feed", vt.SliceName(), vt.ID), SliceID: federation.SliceID(vt.SliceName())},
				token:  token, fullName: vt.SliceName(),
			})
			continue
		}
		var ref *ticket.Refusal
		if !errors.As(err, &ref) {
			return nil, nil, err
		}
		// What the token says, unverified: which slice to keep as it is.
		full := ""
		if claims, _, ierr := ticket.Inspect(token); ierr == nil {
			full = claims.SliceName()
		}
		failures = append(failures, feedFailure{reason: string(ref.Reason), message: fmt.Sprintf("ticket %d of the feed (slice %q): %s", i+1, full, ref.Message)})
		if full != "" {
			out = append(out, pulledTicket{Pulled: Pulled{SliceID: federation.SliceID(full), Refused: true}, fullName: full})
		}
	}
	return out, failures, nil
}

// checkPulled checks one ticket of a's feed; a refusal is a
// *ticket.Refusal.
func (p *Poller) checkPulled(ctx context.Context, c client.Client, a *planetv1.Authority, v *ticket.Verifier, policy trust.Policy,
	sites []planetv1.Site, token string, seen map[string]bool, now time.Time) (*ticket.Verified, error) {
	vt, err := v.Verify(token, now)
	if err != nil {
		return nil, err
	}
	refuse := func(reason ticket.Reason, format string, args ...any) error {
		return &ticket.Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	full := vt.SliceName()
	switch {
	case !naming.WithinAuthority(vt.Issuer, a.Name):
		return nil, refuse(ticket.OutOfScope, "issued by %s, not by %s or its delegates", vt.Issuer, a.Name)
	case vt.Pool != nil:
		return nil, refuse(ticket.InvalidGrant, "a feed carries sliver grants and withdrawals only")
	case seen[full]:
		return nil, refuse(ticket.Malformed, "slice %s is listed twice", full)
	}
	if vt.Sliver != nil {
		grantAuthority, _, _, _ := naming.ParseFullName(full)
		if err := policy.CheckGrant(sites, grantAuthority); err != nil {
			return nil, err
		}
	}
	ns, name, _ := ticket.ForeignSliceKey(full)
	have := &planetv1.Slice{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, have); err == nil && ticket.OrderOf(have).After(vt.Order()) {
		return nil, refuse(ticket.Replayed, "slice %s runs a ticket issued at %d; the feed offers an older one (issued at %d)", full, ticket.OrderOf(have).IssuedAt, vt.IssuedAt)
	} else if client.IgnoreNotFound(err) != nil {
		return nil, err
	}
	return vt, nil
}

// syncPulled creates the feed's new Tickets in the authority's namespace
// and deletes those the feed dropped (their slices go) or replaced. Each
// creation and deletion succeeds or fails on its own; the failures are
// returned. err is a failure that stops it all: the namespace cannot be
// had when there is a Ticket to make (a NamespaceConflict refusal when it
// is another's), or the held Tickets cannot be listed.
func syncPulled(ctx context.Context, c client.Client, authorityName, ns string, pulled []pulledTicket) (int, int, []feedFailure, error) {
	list := &planetv1.TicketList{}
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{planetv1.LabelTicketSource: "feed"}); err != nil {
		return 0, 0, nil, err
	}
	held := make([]Held, 0, len(list.Items))
	for i := range list.Items {
		t := &list.Items[i]
		held = append(held, Held{Name: t.Name, SliceID: t.Labels[planetv1.LabelSliceID], Redeemed: meta.IsStatusConditionTrue(t.Status.Conditions, planetv1.ConditionReady)})
	}
	feedList := make([]Pulled, len(pulled))
	byName := make(map[string]pulledTicket, len(pulled))
	for i, pt := range pulled {
		feedList[i] = pt.Pulled
		if !pt.Refused {
			byName[pt.Name] = pt
		}
	}
	plan := Compare(feedList, held)
	if len(plan.Create) > 0 {
		if err := authority.EnsureNamespace(ctx, c, authorityName, ns); err != nil {
			return 0, 0, nil, err
		}
	}
	var (
		failures         []feedFailure
		created, deleted int
	)
	for _, p := range plan.Create {
		pt := byName[p.Name]
		t := &planetv1.Ticket{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.Name, Labels: map[string]string{
				planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelTicketSource: "feed",
				planetv1.LabelAuthority: authorityName, planetv1.LabelSliceID: p.SliceID,
			}, Annotations: map[string]string{planetv1.AnnotationSliceFullName: pt.fullName}},
			Spec: planetv1.TicketSpec{Token: pt.token},
		}
		if err := c.Create(ctx, t); err != nil && !apierrors.IsAlreadyExists(err) {
			failures = append(failures, feedFailure{reason: planetv1.ReasonRedeemFailed, message: fmt.Sprintf("slice %s: creating ticket %s/%s: %v", pt.fullName, ns, p.Name, err)})
			continue
		}
		created++
	}
	for _, name := range plan.Delete {
		t := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := c.Delete(ctx, t); client.IgnoreNotFound(err) != nil {
			failures = append(failures, feedFailure{reason: planetv1.ReasonRedeemFailed, message: fmt.Sprintf("deleting ticket %s/%s: %v", ns, name, err)})
			continue
		}
		deleted++
	}
	return created, deleted, failures, nil
}

// httpClient is the client that reads a's feed: TLS 1.2 or later, verified
// against feedCABundle (or the system's roots); the poll's context bounds it.
func (p *Poller) httpClient(a *planetv1.Authority) (*http.Client, error) {
	if p.HTTPClient != nil {
		return p.HTTPClient(a)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.Spec.FeedCABundle != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(a.Spec.FeedCABundle)) {
			return nil, fmt.Errorf("spec.feedCABundle of %s holds no PEM certificate", a.Name)
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: cfg, Proxy: nil, MaxIdleConns: 1, IdleConnTimeout: time.Minute}
	// No redirects: the feed is read where its Authority says, over HTTPS.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}, nil
}
