// Package segments serves a node's sealed flow-store segments to the
// install's archiver, and to no one else. Raw segments hold every flow the
// node saw, unlike the public lookup's bounded answers, so each request
// carries a ServiceAccount token issued for Audience, which the agent checks
// with the API server (TokenReview) and whose user must be one of the
// allowed readers (the manager's ServiceAccount). A token issued for the
// API server itself is refused: the archiver never hands its API
// credentials to a node.
//
//	GET /archive/v1/segments                  the sealed segments (List)
//	GET /archive/v1/segments/<seq>.log|.idx   a segment's data or index file
//	                                          (byte ranges, to resume)
package segments

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/flow/store"
)

const (
	// ListPath lists the sealed segments; a file is ListPath/<name>.
	ListPath = "/archive/v1/segments"
	// Audience is the audience of the archiver's tokens.
	Audience = "planetkube-archive"
	// DefaultReader is the manager's ServiceAccount in the chart's
	// namespace.
	DefaultReader = "system:serviceaccount:planetkube-system:planetkube-manager"
)

// List is the answer of ListPath.
type List struct {
	// Node is the node whose segments these are.
	Node string `json:"node"`
	// Segments are the sealed segments, oldest first.
	Segments []store.SegmentInfo `json:"segments"`
	// Unsealed is the segment being written, if it holds records: served
	// once sealed, and lost with the node if the node goes first.
	Unsealed *store.SegmentInfo `json:"unsealed,omitempty"`
}

// Source is what is served (internal/flow/store implements it).
type Source interface {
	Sealed() []store.SegmentInfo
	Unsealed() (store.SegmentInfo, bool)
	OpenSealed(seq uint64) (data, index *os.File, err error)
}

// ErrUnauthenticated is an Authenticator's answer to a token it does not
// accept.
var ErrUnauthenticated = errors.New("token not valid for " + Audience)

// Authenticator says whose a bearer token is.
type Authenticator interface {
	// Authenticate returns the token's user name, ErrUnauthenticated, or
	// another error when it could not tell (the API server unreachable).
	Authenticate(ctx context.Context, token string) (string, error)
}

// TokenReviewer authenticates tokens with the API server's TokenReview,
// for Audience only.
type TokenReviewer struct{ Client client.Client }

// Authenticate implements Authenticator.
func (t TokenReviewer) Authenticate(ctx context.Context, token string) (string, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}}}
	if err := t.Client.Create(ctx, tr); err != nil {
		return "", fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.Audiences, Audience) {
		return "", ErrUnauthenticated
	}
	return tr.Status.User.Username, nil
}

// Handler serves Source to Readers.
type Handler struct {
	Source Source
	Auth   Authenticator
	// Readers are the user names allowed to download.
	Readers []string
	// Node is this node's name, told in the list.
	Node string

	mu    sync.Mutex
	cache map[[32]byte]verdict
	// reviews bounds the token reviews in flight: strangers' requests cost
	// the API server one each.
	reviews chan struct{}
}

// verdict is a cached authentication: the user, or "" for a refused token.
type verdict struct {
	user    string
	expires time.Time
}

const (
	cacheFor    = time.Minute
	maxCached   = 256
	maxReviews  = 4
	reviewLimit = 10 * time.Second
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != ListPath && !strings.HasPrefix(r.URL.Path, ListPath+"/") {
		http.NotFound(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Audience+`"`)
		http.Error(w, "a bearer token for audience "+Audience+" is required", http.StatusUnauthorized)
		return
	}
	user, err := h.authenticate(r.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Audience+`", error="invalid_token"`)
		http.Error(w, "token not valid for audience "+Audience, http.StatusUnauthorized)
		return
	case err != nil:
		http.Error(w, "cannot check the token now", http.StatusServiceUnavailable)
		return
	case !slices.Contains(h.Readers, user):
		http.Error(w, "only the archiver may download segments", http.StatusForbidden)
		return
	}
	if r.URL.Path == ListPath {
		w.Header().Set("Content-Type", "application/json")
		list := List{Node: h.Node, Segments: h.Source.Sealed()}
		if u, ok := h.Source.Unsealed(); ok {
			list.Unsealed = &u
		}
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	h.serveFile(w, r, strings.TrimPrefix(r.URL.Path, ListPath+"/"))
}

// serveFile serves a segment's file by its store name, with byte ranges.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	seq, ext, ok := store.ParseSegmentFileName(name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	data, index, err := h.Source.OpenSealed(seq)
	if errors.Is(err, store.ErrNoSegment) {
		http.Error(w, "no such sealed segment (pruned, or not sealed yet)", http.StatusNotFound)
		return
	} else if err != nil {
		http.Error(w, "cannot open the segment", http.StatusInternalServerError)
		return
	}
	defer data.Close()
	defer index.Close()
	f := data
	if ext == "idx" {
		f = index
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, time.Time{}, f)
}

// authenticate asks Auth, caching answers (refusals too) for a minute.
func (h *Handler) authenticate(ctx context.Context, token string) (string, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	h.mu.Lock()
	if h.cache == nil {
		h.cache, h.reviews = map[[32]byte]verdict{}, make(chan struct{}, maxReviews)
	}
	v, ok := h.cache[key]
	reviews := h.reviews
	h.mu.Unlock()
	if ok && now.Before(v.expires) {
		if v.user == "" {
			return "", ErrUnauthenticated
		}
		return v.user, nil
	}
	select {
	case reviews <- struct{}{}:
		defer func() { <-reviews }()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, reviewLimit)
	defer cancel()
	user, err := h.Auth.Authenticate(ctx, token)
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		return "", err // not cached: the API server may answer next time
	}
	h.mu.Lock()
	if len(h.cache) >= maxCached {
		clear(h.cache)
	}
	h.cache[key] = verdict{user: user, expires: now.Add(cacheFor)}
	h.mu.Unlock()
	return user, err
}
