package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
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
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// defaultFeedTimeout bounds one poll of a feed: connecting, the answer and reading
// it (a slow feed is Unreachable, and nothing is touched).
const defaultFeedTimeout = 30 * time.Second

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
	Peers *PeerClients
	// Skew is the clock skew allowed.
	Skew time.Duration
	// Timeout bounds one poll of a feed (default 30 s): a slower feed is
	// Unreachable.
	Timeout time.Duration
	// HTTPClient, when set, replaces the client made from feedCABundle
	// (tests).
	HTTPClient func(a *planetv1.Authority) (*http.Client, error)

	mu  sync.Mutex
	rnd *rand.Rand
}

// due says whether an Authority's feed or push should be checked now.
func (p *Poller) due(a *planetv1.Authority, now time.Time) bool {
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
		n, msg, reason, err := p.pull(ctx, c, a, now)
		cond := metav1.Condition{Type: planetv1.ConditionFeedSynced, Status: metav1.ConditionTrue, Reason: planetv1.ReasonFeedSynced, Message: msg, ObservedGeneration: a.Generation}
		if err != nil {
			cond.Status, cond.Reason = metav1.ConditionFalse, reason
			cond.Message = truncate(err.Error()+"; nothing was changed: the slices it granted run until their tickets expire", 1024)
			ctrl.LoggerFrom(ctx).Info("Feed poll failed", "authority", a.Name, "reason", reason, "error", err.Error())
		} else {
			st.LastPollTime, st.FeedTickets = &metav1.Time{Time: now}, int32(n)
		}
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	if a.Spec.Push == nil {
		meta.RemoveStatusCondition(&st.Conditions, planetv1.ConditionPushReady)
		return
	}
	cond := metav1.Condition{Type: planetv1.ConditionPushReady, Status: metav1.ConditionTrue, Reason: planetv1.ReasonPeerReachable, ObservedGeneration: a.Generation}
	if ns, reason, err := p.checkPush(ctx, a); err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, truncate(err.Error(), 1024)
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
		var bad *kubeconfigError
		if errors.As(err, &bad) {
			return "", planetv1.ReasonInvalidKubeconfig, err
		}
		return "", planetv1.ReasonPeerUnreachable, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	if err := pc.List(ctx, &planetv1.TicketList{}, client.InNamespace(ns), client.Limit(1)); err != nil {
		return "", planetv1.ReasonPeerUnreachable, fmt.Errorf("listing tickets in namespace %s of %s: %w", ns, a.Name, err)
	}
	return ns, "", nil
}

// pull reads the feed, checks every ticket in it, and makes the pulled
// Tickets follow it. A feed that fails any check changes nothing.
func (p *Poller) pull(ctx context.Context, c client.Client, a *planetv1.Authority, now time.Time) (int, string, string, error) {
	signer, err := p.Signer.Signer(ctx)
	if err != nil {
		return 0, "", planetv1.ReasonNoKey, err
	}
	hc, err := p.httpClient(a)
	if err != nil {
		return 0, "", planetv1.ReasonInvalidFeedConfig, err
	}
	defer hc.CloseIdleConnections()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultFeedTimeout
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := feed.Fetch(fctx, hc, a.Spec.FeedURL, signer, a.Name, authority.ValidKeys(a), p.Skew, func() time.Time { return now })
	if err != nil {
		switch reason := feed.ReasonOf(err); reason {
		case "":
			return 0, "", planetv1.ReasonInvalidFeedConfig, err // not https, or the key cannot sign
		case feed.Unreachable:
			return 0, "", planetv1.ReasonFeedUnreachable, err
		default:
			return 0, "", string(reason), err
		}
	}
	pulled, err := p.checkFeed(ctx, c, a, f, now)
	if err != nil {
		if reason := ticket.ReasonOf(err); reason != "" {
			return 0, "", string(reason), err
		}
		return 0, "", planetv1.ReasonRedeemFailed, err // reading this cluster failed: retried at the next poll
	}
	ns := naming.AuthorityNamespace(a.Name)
	created, deleted, err := syncPulled(ctx, c, a.Name, ns, pulled)
	if err != nil {
		return 0, "", planetv1.ReasonRedeemFailed, err
	}
	return len(pulled), fmt.Sprintf("the feed listed %d tickets for this install: %d new, %d withdrawn or replaced", len(pulled), created, deleted), "", nil
}

// pulledTicket is a verified ticket of a feed and its Ticket's name.
type pulledTicket struct {
	federation.Pulled
	token, fullName string
}

// checkFeed verifies every ticket of a feed as the Ticket controller will
// (signature, audience, times, scope) and checks that each is issued by
// the feed's authority or its delegates, grants slivers, appears once, and
// is not older than the ticket its slice runs here (a replay).
func (p *Poller) checkFeed(ctx context.Context, c client.Client, a *planetv1.Authority, f *feed.Feed, now time.Time) ([]pulledTicket, error) {
	list := &planetv1.AuthorityList{}
	if err := c.List(ctx, list); err != nil {
		return nil, err
	}
	v := &ticket.Verifier{Audience: p.Authority, Keys: authority.Keyring(list.Items), Skew: p.Skew}
	seen := map[string]bool{}
	out := make([]pulledTicket, 0, len(f.Tickets))
	for i, token := range f.Tickets {
		refuse := func(reason ticket.Reason, format string, args ...any) error {
			return &ticket.Refusal{Reason: reason, Message: fmt.Sprintf("ticket %d of the feed: ", i+1) + fmt.Sprintf(format, args...)}
		}
		vt, err := v.Verify(token, now)
		if err != nil {
			var ref *ticket.Refusal
			if errors.As(err, &ref) {
				return nil, refuse(ref.Reason, "%s", ref.Message)
			}
			return nil, err
		}
		switch {
		case !naming.WithinAuthority(vt.Issuer, a.Name):
			return nil, refuse(ticket.OutOfScope, "issued by %s, not by %s or its delegates", vt.Issuer, a.Name)
		case vt.Sliver == nil:
			return nil, refuse(ticket.InvalidGrant, "a feed carries sliver grants only")
		case seen[vt.Sliver.Slice]:
			return nil, refuse(ticket.Malformed, "slice %s is listed twice", vt.Sliver.Slice)
		}
		seen[vt.Sliver.Slice] = true
		want := vt.ForeignSlice()
		have := &planetv1.Slice{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(want), have); err == nil && ticket.IssuedAtOf(have) > vt.IssuedAt {
			return nil, refuse(ticket.Replayed, "slice %s runs a ticket issued at %d; the feed offers an older one (issued at %d)", vt.Sliver.Slice, ticket.IssuedAtOf(have), vt.IssuedAt)
		} else if client.IgnoreNotFound(err) != nil {
			return nil, err
		}
		out = append(out, pulledTicket{
			Pulled: federation.Pulled{Name: federation.TicketName("feed", vt.Sliver.Slice, vt.ID), SliceID: federation.SliceID(vt.Sliver.Slice), IssuedAt: vt.IssuedAt},
			token:  token, fullName: vt.Sliver.Slice,
		})
	}
	return out, nil
}

// syncPulled creates the feed's new Tickets in the authority's namespace
// and deletes those the feed dropped (their slices go) or replaced.
func syncPulled(ctx context.Context, c client.Client, authorityName, ns string, pulled []pulledTicket) (int, int, error) {
	if err := ensureAuthorityNamespace(ctx, c, authorityName, ns); err != nil {
		return 0, 0, err
	}
	list := &planetv1.TicketList{}
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{planetv1.LabelTicketSource: "feed"}); err != nil {
		return 0, 0, err
	}
	held := make([]federation.Held, 0, len(list.Items))
	for i := range list.Items {
		t := &list.Items[i]
		held = append(held, federation.Held{Name: t.Name, SliceID: t.Labels[planetv1.LabelSliceID], Redeemed: meta.IsStatusConditionTrue(t.Status.Conditions, planetv1.ConditionReady)})
	}
	feedList := make([]federation.Pulled, len(pulled))
	byName := make(map[string]pulledTicket, len(pulled))
	for i, pt := range pulled {
		feedList[i], byName[pt.Name] = pt.Pulled, pt
	}
	plan := federation.PlanPull(feedList, held)
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
			return 0, 0, fmt.Errorf("creating ticket %s/%s: %w", ns, p.Name, err)
		}
	}
	for _, name := range plan.Delete {
		t := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := c.Delete(ctx, t); client.IgnoreNotFound(err) != nil {
			return 0, 0, fmt.Errorf("deleting ticket %s/%s: %w", ns, name, err)
		}
	}
	return len(plan.Create), len(plan.Delete), nil
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
