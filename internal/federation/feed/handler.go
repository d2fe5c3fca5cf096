package feed

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/planetkube/planetkube/internal/ticket"
)

// Handler serves this install's feed at Path: to each requester whose
// signed request it verifies, the tickets addressed to it.
type Handler struct {
	// Local is this install's authority: requests must be addressed to it.
	Local string
	// Signer returns this install's key, which signs the feeds.
	Signer func(context.Context) (ticket.Signer, error)
	// Keys returns an authority's keys (none for an unknown one), which
	// its requests are verified with; an error is a failure to read them.
	Keys func(ctx context.Context, authority string) ([]ticket.Key, error)
	// Tickets returns the tickets addressed to requester. have is the
	// version the request says it has (a version, or HaveNone), or ""
	// when it asks for none (an older requester): then the answer needs
	// no Version.
	Tickets func(ctx context.Context, requester, have string) (Answer, error)
	// Skew is the clock skew allowed on a request's times (default
	// ticket.DefaultSkew, at most ticket.MaxSkew).
	Skew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	// seen holds the ids of the requests answered, until they expire: a
	// captured request is answered once.
	seen replays
}

// Answer is what the home sends one requester.
type Answer struct {
	// Tickets are the requester's tickets, sorted; none when Unchanged.
	Tickets []string
	// Version is their version (see Version); "" when none was asked for.
	Version string
	// Unchanged says they are the version the request said it has.
	Unchanged bool
}

// maxSeen bounds the request ids remembered; past it (after the expired
// ones are dropped) requests are refused rather than forgotten.
const maxSeen = 100000

// replays remembers request ids until their expiry.
type replays struct {
	mu  sync.Mutex
	ids map[string]int64 // id -> Unix second after which it is dropped
}

// first records id, kept until until, and says whether it is new; ok is
// false when the memory is full.
func (r *replays) first(id string, until, now int64) (isNew, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]int64{}
	}
	if _, dup := r.ids[id]; dup {
		return false, true
	}
	if len(r.ids) >= maxSeen {
		for k, t := range r.ids {
			if t < now {
				delete(r.ids, k)
			}
		}
		if len(r.ids) >= maxSeen {
			return false, false
		}
	}
	r.ids[id] = until
	return true, true
}

func (h *Handler) skew() time.Duration { return ticket.EffectiveSkew(h.Skew) }

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// ServeHTTP answers a GET carrying a signed request with the requester's
// feed: 401 with a short text reason when the request does not verify, 405
// for another method, 500 when the feed cannot be made. The request token
// is never logged.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := ctrl.LoggerFrom(ctx).WithValues("remote", r.RemoteAddr)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "only GET is served here", http.StatusMethodNotAllowed)
		return
	}
	token, ok := authorization(r)
	if !ok {
		log.Info("Refused a feed request without a signed authorization")
		unauthorized(w, "the request carries no "+AuthScheme+" authorization")
		return
	}
	req, err := verifyRequest(token, func(a string) ([]ticket.Key, error) { return h.Keys(ctx, a) }, h.Local, h.skew(), h.now())
	var refusal *Error
	if err != nil && !errors.As(err, &refusal) {
		log.Error(err, "Could not read the requester's keys")
		http.Error(w, "the feed is not available now", http.StatusInternalServerError)
		return
	}
	if err != nil {
		log.Info("Refused a feed request", "reason", ReasonOf(err), "message", err.Error())
		unauthorized(w, err.Error())
		return
	}
	log = log.WithValues("requester", req.Issuer, "request", req.ID)
	switch isNew, ok := h.seen.first(req.ID, req.Expiry+int64(h.skew()/time.Second), h.now().Unix()); {
	case !ok:
		log.Info("Refused a feed request: too many requests remembered")
		http.Error(w, "too many feed requests; try again later", http.StatusServiceUnavailable)
		return
	case !isNew:
		log.Info("Refused a replayed feed request")
		unauthorized(w, string(Replayed)+": this request was answered already; sign a new one")
		return
	}
	have := haveOf(r)
	ans, err := h.Tickets(ctx, req.Issuer, have)
	if err != nil {
		log.Error(err, "Could not list the requester's tickets")
		http.Error(w, "the feed is not available now", http.StatusInternalServerError)
		return
	}
	signer, err := h.Signer(ctx)
	if err != nil {
		log.Error(err, "Could not read this install's key")
		http.Error(w, "the feed is not available now", http.StatusInternalServerError)
		return
	}
	f := Feed{Audience: req.Issuer, IssuedAt: h.now().Unix(), Request: req.ID, Tickets: ans.Tickets}
	if have != "" {
		f.Version, f.Unchanged = ans.Version, ans.Unchanged
		if f.Unchanged {
			f.Tickets = nil
		}
	}
	body, err := SignFeed(signer, f)
	if err != nil {
		log.Error(err, "Could not sign the feed", "tickets", len(f.Tickets))
		http.Error(w, "the feed is not available now", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte(body)); err != nil {
		log.Info("Could not send the feed", "error", err.Error())
		return
	}
	log.V(1).Info("Served a feed", "tickets", len(f.Tickets), "unchanged", f.Unchanged)
}

// haveOf returns what the request's HaveHeader says it has: "" when it
// sends none, the version when it sends one, else HaveNone (it asks for a
// versioned feed, but names no version this home could have sent).
func haveOf(r *http.Request) string {
	values := r.Header.Values(HaveHeader)
	switch {
	case len(values) == 0:
		return ""
	case len(values) == 1 && ValidVersion(values[0]):
		return values[0]
	}
	return HaveNone
}

// authorization returns the request token of the request's one
// Authorization header (its scheme matched without regard to case).
func authorization(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, AuthScheme) || token == "" {
		return "", false
	}
	return token, true
}

// unauthorized answers 401 with a reason and the scheme to use.
func unauthorized(w http.ResponseWriter, reason string) {
	w.Header().Set("WWW-Authenticate", AuthScheme)
	http.Error(w, reason, http.StatusUnauthorized)
}
