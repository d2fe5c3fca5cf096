package feed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/planetkube/planetkube/internal/ticket"
)

// home is plc's feed: ple's tickets and ppk's, each served to its own
// audience only.
type home struct {
	tickets map[string][]string
	// asked records the requesters the handler listed tickets for.
	mu    sync.Mutex
	asked []string
}

func newHome(t testing.TB) *home {
	return &home{tickets: map[string][]string{
		"ple": {sliverTicket(t, plc, "ple", "t-1"), sliverTicket(t, plc, "ple", "t-2")},
		"ppk": {sliverTicket(t, plc, "ppk", "t-3")},
	}}
}

// handler serves the home's feed signed by signer, knowing keys.
func (h *home) handler(signer ticket.Signer, keys ticket.Keyring) *Handler {
	return &Handler{
		Local:  "plc",
		Signer: func(context.Context) (ticket.Signer, error) { return signer, nil },
		Keys:   func(_ context.Context, a string) ([]ticket.Key, error) { return keys[a], nil },
		Tickets: func(_ context.Context, requester, have string) (Answer, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.asked = append(h.asked, requester)
			tickets := slices.Sorted(slices.Values(h.tickets[requester]))
			if have == "" {
				return Answer{Tickets: tickets}, nil
			}
			v := Version(tickets)
			if v == have {
				return Answer{Version: v, Unchanged: true}, nil
			}
			return Answer{Tickets: tickets, Version: v}, nil
		},
		Now: func() time.Time { return now },
	}
}

// serve starts a TLS server with h at Path and returns its feed URL and a
// client that trusts it.
func serve(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = 5 * time.Second
	return srv.URL + Path, client
}

func fetch(url string, client *http.Client) (*Feed, error) {
	return fetchHaving(url, client, "")
}

func fetchHaving(url string, client *http.Client, have string) (*Feed, error) {
	return Fetch(context.Background(), client, url, ple, "plc", plcKeys, have, skew, func() time.Time { return now })
}

func TestFetchEndToEnd(t *testing.T) {
	home := newHome(t)
	url, client := serve(t, home.handler(plc, homeKeyring()))
	f, err := fetch(url, client)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if f.Issuer != "plc" || f.Audience != "ple" || !slices.Equal(f.Tickets, home.tickets["ple"]) {
		t.Fatalf("fetched %+v", f)
	}
	if f.Version != "" || f.Unchanged {
		t.Fatalf("a feed asked with no version names one: %+v", f)
	}
	if !slices.Equal(home.asked, []string{"ple"}) {
		t.Fatalf("the handler listed the tickets of %q", home.asked)
	}
	// Each ticket verifies as the requester's.
	v := &ticket.Verifier{Audience: "ple", Keys: ticket.Keyring{"plc": plcKeys}}
	for _, tok := range f.Tickets {
		if _, err := v.Verify(tok, now); err != nil {
			t.Fatalf("a fetched ticket: %v", err)
		}
	}
	// A requester with no tickets gets an empty feed.
	delete(home.tickets, "ple")
	if f, err := fetch(url, client); err != nil || len(f.Tickets) != 0 {
		t.Fatalf("an empty feed: %+v, %v", f, err)
	}
}

func TestFetchFails(t *testing.T) {
	// replay serves the home's feed once, then that same body again.
	replay := func() http.Handler {
		var (
			mu    sync.Mutex
			saved []byte
		)
		h := newHome(t).handler(plc, homeKeyring())
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if saved == nil {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				saved = rec.Body.Bytes()
			}
			_, _ = w.Write(saved)
		})
	}()
	failing := newHome(t).handler(plc, homeKeyring())
	failing.Tickets = func(context.Context, string, string) (Answer, error) {
		return Answer{}, errors.New("the cache is not synced")
	}

	for _, tc := range []struct {
		name    string
		handler http.Handler
		timeout time.Duration
		path    string
		reason  Reason
		message string
	}{
		{name: "slow", timeout: 200 * time.Millisecond, reason: Unreachable, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		})},
		{name: "oversized", reason: Oversized, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(MaxFeedBytes+1))
			_, _ = w.Write(make([]byte, MaxFeedBytes+1))
		})},
		{name: "oversized without a length", reason: Oversized, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			chunk := bytes.Repeat([]byte("a"), 1<<20)
			for range MaxFeedBytes/len(chunk) + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})},
		{name: "garbage", reason: Malformed, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html>It works!</html>"))
		})},
		{name: "unknown requester", reason: Refused, message: "UnknownIssuer",
			handler: newHome(t).handler(plc, ticket.Keyring{"plc": plcKeys})},
		{name: "401", reason: Refused, message: "go away", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "go away\n\x1b[31mnow", http.StatusUnauthorized)
		})},
		{name: "403", reason: Refused, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
		})},
		{name: "wrong path", path: "/elsewhere", reason: Refused, message: "404", handler: newHome(t).handler(plc, homeKeyring())},
		{name: "500", reason: Unreachable, message: "not available", handler: failing},
		{name: "answered by another key", reason: BadSignature, handler: newHome(t).handler(ppk, homeKeyring())},
		{name: "replayed earlier feed", reason: Mismatch, handler: replay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, client := serve(t, tc.handler)
			if tc.timeout != 0 {
				client.Timeout = tc.timeout
			}
			if tc.path != "" {
				url = strings.TrimSuffix(url, Path) + tc.path
			}
			if tc.name == "replayed earlier feed" {
				if _, err := fetch(url, client); err != nil {
					t.Fatalf("the first fetch: %v", err)
				}
			}
			f, err := fetch(url, client)
			if got := ReasonOf(err); got != tc.reason || f != nil {
				t.Fatalf("got %+v, %v; want a failure for %s", f, err, tc.reason)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.message) || strings.ContainsAny(err.Error(), "\n\x1b") {
				t.Fatalf("the error %q does not say %q on one line", err, tc.message)
			}
		})
	}
}

func TestFetchUnreachable(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url, client := srv.URL+Path, srv.Client()
	srv.Close()
	if _, err := fetch(url, client); ReasonOf(err) != Unreachable {
		t.Fatalf("got %v, want Unreachable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	url, client = serve(t, newHome(t).handler(plc, homeKeyring()))
	if _, err := Fetch(ctx, client, url, ple, "plc", plcKeys, "", skew, nil); ReasonOf(err) != Unreachable {
		t.Fatalf("a cancelled fetch: got %v, want Unreachable", err)
	}
}

func TestFetchRefusesHTTP(t *testing.T) {
	for _, url := range []string{"http://plc.example" + Path, "plc.example" + Path, "https://" + Path, "::"} {
		if _, err := fetch(url, nil); err == nil || ReasonOf(err) != "" {
			t.Fatalf("Fetch(%q): got %v, want a plain error", url, err)
		}
	}
}

// logs returns a context whose logger writes to the returned buffer.
func logs() (context.Context, *bytes.Buffer) {
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(&buf, prefix, args)
	}, funcr.Options{Verbosity: 1})
	return ctrl.LoggerInto(context.Background(), logr.Logger(log)), &buf
}

func TestHandler(t *testing.T) {
	good, _ := mustRequest(t, ple, "plc", now)
	expired, _ := mustRequest(t, ple, "plc", now.Add(-time.Hour))
	broken := func(edit func(*Handler)) *Handler {
		h := newHome(t).handler(plc, homeKeyring())
		edit(h)
		return h
	}
	fails := errors.New("it fails")
	for _, tc := range []struct {
		name    string
		handler *Handler
		method  string
		auth    []string
		status  int
		body    string
	}{
		{"good", newHome(t).handler(plc, homeKeyring()), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusOK, ""},
		{"scheme in lowercase", newHome(t).handler(plc, homeKeyring()), http.MethodGet, []string{"planetkube-signed " + good}, http.StatusOK, ""},
		{"POST", newHome(t).handler(plc, homeKeyring()), http.MethodPost, []string{AuthScheme + " " + good}, http.StatusMethodNotAllowed, ""},
		{"HEAD", newHome(t).handler(plc, homeKeyring()), http.MethodHead, []string{AuthScheme + " " + good}, http.StatusMethodNotAllowed, ""},
		{"no authorization", newHome(t).handler(plc, homeKeyring()), http.MethodGet, nil, http.StatusUnauthorized, "no PlanetKube-Signed"},
		{"a bearer token", newHome(t).handler(plc, homeKeyring()), http.MethodGet, []string{"Bearer " + good}, http.StatusUnauthorized, "no PlanetKube-Signed"},
		{"two authorizations", newHome(t).handler(plc, homeKeyring()), http.MethodGet, []string{AuthScheme + " " + good, AuthScheme + " " + good}, http.StatusUnauthorized, ""},
		{"expired", newHome(t).handler(plc, homeKeyring()), http.MethodGet, []string{AuthScheme + " " + expired}, http.StatusUnauthorized, "Stale"},
		{"addressed elsewhere", broken(func(h *Handler) { h.Local = "ppk" }), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusUnauthorized, "WrongAudience"},
		{"no keys", broken(func(h *Handler) { h.Keys = func(context.Context, string) ([]ticket.Key, error) { return nil, fails } }), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusInternalServerError, ""},
		{"no signer", broken(func(h *Handler) {
			h.Signer = func(context.Context) (ticket.Signer, error) { return ticket.Signer{}, fails }
		}), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusInternalServerError, ""},
		{"no tickets", broken(func(h *Handler) {
			h.Tickets = func(context.Context, string, string) (Answer, error) { return Answer{}, fails }
		}), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusInternalServerError, ""},
		{"too many tickets", broken(func(h *Handler) {
			h.Tickets = func(context.Context, string, string) (Answer, error) {
				return Answer{Tickets: make([]string, MaxTickets+1)}, nil
			}
		}), http.MethodGet, []string{AuthScheme + " " + good}, http.StatusInternalServerError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, logged := logs()
			r := httptest.NewRequestWithContext(ctx, tc.method, Path, nil)
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			tc.handler.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
				t.Fatalf("answered %d %q, want %d with %q", w.Code, w.Body, tc.status, tc.body)
			}
			switch w.Code {
			case http.StatusOK:
				if ct := w.Header().Get("Content-Type"); ct != "application/jose" {
					t.Fatalf("Content-Type %q", ct)
				}
			case http.StatusUnauthorized:
				if w.Header().Get("WWW-Authenticate") != AuthScheme {
					t.Fatalf("401 without WWW-Authenticate: %v", w.Header())
				}
			case http.StatusMethodNotAllowed:
				if w.Header().Get("Allow") != http.MethodGet {
					t.Fatalf("405 without Allow: %v", w.Header())
				}
			}
			if strings.Contains(logged.String(), good) || strings.Contains(logged.String(), expired) {
				t.Fatalf("the log shows the request token: %s", logged)
			}
			if tc.status != http.StatusMethodNotAllowed && logged.Len() == 0 {
				t.Fatal("nothing logged")
			}
		})
	}
}

// TestHandlerAnswersARequestOnce: a captured request sent again is refused,
// and a new request of the same peer is answered.
func TestHandlerAnswersARequestOnce(t *testing.T) {
	h := newHome(t).handler(plc, homeKeyring())
	ask := func(token string) *httptest.ResponseRecorder {
		ctx, _ := logs()
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, Path, nil)
		r.Header.Set("Authorization", AuthScheme+" "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	first, _ := mustRequest(t, ple, "plc", now)
	if w := ask(first); w.Code != http.StatusOK {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	if w := ask(first); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), string(Replayed)) {
		t.Fatalf("the same request again: %d %s; want 401 Replayed", w.Code, w.Body)
	}
	second, _ := mustRequest(t, ple, "plc", now)
	if w := ask(second); w.Code != http.StatusOK {
		t.Fatalf("a new request: %d %s", w.Code, w.Body)
	}
}

// TestFetchVersioned: a requester that sends the version it has is told
// Unchanged while its tickets are the same, with none listed, and gets the
// whole feed with its new version once they change; the version is the
// tickets' (Version), so any home computes the same.
func TestFetchVersioned(t *testing.T) {
	home := newHome(t)
	url, client := serve(t, home.handler(plc, homeKeyring()))
	first, err := fetchHaving(url, client, HaveNone)
	if err != nil {
		t.Fatalf("a first versioned fetch: %v", err)
	}
	want := slices.Sorted(slices.Values(home.tickets["ple"]))
	if first.Unchanged || !slices.Equal(first.Tickets, want) || first.Version != Version(want) {
		t.Fatalf("the first versioned feed: %+v", first)
	}
	again, err := fetchHaving(url, client, first.Version)
	if err != nil || !again.Unchanged || len(again.Tickets) != 0 || again.Version != first.Version {
		t.Fatalf("the same tickets again: %+v, %v; want Unchanged with none listed", again, err)
	}
	home.mu.Lock()
	home.tickets["ple"] = home.tickets["ple"][:1]
	home.mu.Unlock()
	changed, err := fetchHaving(url, client, first.Version)
	if err != nil || changed.Unchanged || len(changed.Tickets) != 1 || changed.Version == first.Version || changed.Version != Version(changed.Tickets) {
		t.Fatalf("after a change: %+v, %v; want the whole feed with a new version", changed, err)
	}
	// A version the home never sent, or garbage, gets the whole feed.
	for _, have := range []string{strings.Repeat("0", 32), "not-a-version"} {
		if f, err := fetchHaving(url, client, have); err != nil || f.Unchanged || len(f.Tickets) != 1 {
			t.Fatalf("having %q: %+v, %v", have, f, err)
		}
	}
}

// TestFetchVersionedFromAnOlderHome: a home that knows no versions answers
// a whole FeedType feed, which a requester that sent its version accepts.
func TestFetchVersionedFromAnOlderHome(t *testing.T) {
	home := newHome(t)
	h := home.handler(plc, homeKeyring())
	h.Tickets = func(_ context.Context, requester, _ string) (Answer, error) {
		return Answer{Tickets: home.tickets[requester]}, nil // ignores the header
	}
	url, client := serve(t, h)
	f, err := fetchHaving(url, client, strings.Repeat("ab", 16))
	if err != nil || f.Unchanged || f.Version != "" || len(f.Tickets) != 2 {
		t.Fatalf("an older home's feed: %+v, %v", f, err)
	}
}

// TestVersionedFeedRefusals: an Unchanged answer for another version than
// the requester has is a Mismatch (a changed header cannot make it keep
// stale tickets), a versioned feed to a request that asked for none is
// Malformed (an older requester could not read it), and so is a FeedType
// feed that names a version.
func TestVersionedFeedRefusals(t *testing.T) {
	req := Request{Issuer: "ple", Audience: "plc", IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: strings.Repeat("cd", 16)}
	have, other := strings.Repeat("1", 32), strings.Repeat("2", 32)
	sign := func(typ string, f Feed) []byte {
		f.Issuer, f.Audience, f.IssuedAt, f.Request = "plc", "ple", now.Unix(), req.ID
		if f.Tickets == nil {
			f.Tickets = []string{}
		}
		tok, err := plc.SignMessage(typ, f, MaxFeedBytes)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(tok)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		have   string
		reason Reason
	}{
		{"unchanged for another version", sign(VersionedType, Feed{Version: other, Unchanged: true}), have, Mismatch},
		{"unchanged to a requester with none", sign(VersionedType, Feed{Version: other, Unchanged: true}), HaveNone, Mismatch},
		{"unchanged with tickets", sign(VersionedType, Feed{Version: have, Unchanged: true, Tickets: []string{"x"}}), have, Malformed},
		{"versioned to an older requester", sign(VersionedType, Feed{Version: have}), "", Malformed},
		{"versioned with no version", sign(VersionedType, Feed{}), have, Malformed},
		{"a FeedType feed naming a version", sign(FeedType, Feed{Version: have}), have, Malformed},
		{"a FeedType feed saying unchanged", sign(FeedType, Feed{Unchanged: true}), have, Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := VerifyFeed(tc.body, plcKeys, "plc", "ple", req, tc.have, skew, now)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("got %+v, %v; want %s", f, err, tc.reason)
			}
		})
	}
	ok, err := VerifyFeed(sign(VersionedType, Feed{Version: have, Unchanged: true}), plcKeys, "plc", "ple", req, have, skew, now)
	if err != nil || !ok.Unchanged {
		t.Fatalf("an unchanged answer for the version held: %+v, %v", ok, err)
	}
}
