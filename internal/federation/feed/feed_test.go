package feed

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

const skew = time.Minute

// key returns a deterministic Ed25519 key for a test authority.
func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), ed25519.SeedSize)))
}

// The home (plc), the requester (ple), an authority the home does not know
// (ppk) and a stranger's key.
var (
	plcKey     = key(0)
	pleKey     = key(1)
	ppkKey     = key(2)
	strangeKey = key(3)
	plc        = ticket.NewSigner("plc", plcKey)
	ple        = ticket.NewSigner("ple", pleKey)
	ppk        = ticket.NewSigner("ppk", ppkKey)
)

func keyOf(s ticket.Signer) ticket.Key {
	return ticket.Key{ID: s.KeyID, Public: s.Key.Public().(ed25519.PublicKey)}
}

// homeKeyring is what the home knows: the requester's keys, and its own.
func homeKeyring() ticket.Keyring {
	return ticket.Keyring{"plc": {keyOf(plc)}, "ple": {keyOf(ple)}}
}

// plcKeys are the home's keys as the requester knows them.
var plcKeys = []ticket.Key{keyOf(plc)}

// impostor signs as signer's authority with signer's kid, but another key.
func impostor(s ticket.Signer) ticket.Signer {
	return ticket.Signer{Authority: s.Authority, KeyID: s.KeyID, Key: strangeKey}
}

// sliverTicket issues a ticket from issuer to audience.
func sliverTicket(t testing.TB, issuer ticket.Signer, audience, jti string) string {
	t.Helper()
	tok, err := issuer.Issue(ticket.Claims{
		Audience: audience, IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(24 * time.Hour).Unix(), ID: jti,
		Sliver: &ticket.SliverGrant{Slice: issuer.Authority + ".site.slice", Template: planetv1.SliverTemplate{Image: "busybox"}},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func mustRequest(t testing.TB, s ticket.Signer, home string, at time.Time) (string, Request) {
	t.Helper()
	tok, req, err := NewRequest(s, home, at)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	return tok, req
}

// signRequest signs request claims as given, unchecked.
func signRequest(t testing.TB, s ticket.Signer, r Request) string {
	t.Helper()
	tok, err := s.SignMessage(RequestType, r, MaxRequestBytes)
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	return tok
}

func TestNewRequest(t *testing.T) {
	tok, req, err := NewRequest(ple, "plc", now)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if req.Issuer != "ple" || req.Audience != "plc" || req.IssuedAt != now.Unix() || !validID(req.ID) ||
		req.Expiry <= req.IssuedAt || time.Duration(req.Expiry-req.IssuedAt)*time.Second > MaxRequestLifetime {
		t.Fatalf("NewRequest made %+v", req)
	}
	if len(tok) > MaxRequestBytes {
		t.Fatalf("the request has %d bytes", len(tok))
	}
	if _, again, _ := NewRequest(ple, "plc", now); again.ID == req.ID {
		t.Fatalf("two requests with the same id %q", req.ID)
	}
	for _, home := range []string{"", "PLC", "plc..x"} {
		if _, _, err := NewRequest(ple, home, now); err == nil {
			t.Fatalf("NewRequest to %q: no error", home)
		}
	}
	if _, _, err := NewRequest(ticket.Signer{Authority: "ple"}, "plc", now); err == nil {
		t.Fatal("NewRequest without a key: no error")
	}
}

func TestVerifyRequest(t *testing.T) {
	// with signs a good request's claims, edited.
	with := func(edit func(*Request)) string {
		r := Request{Issuer: "ple", Audience: "plc", IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: strings.Repeat("ab", 16)}
		edit(&r)
		return signRequest(t, ple, r)
	}
	okToken, _ := mustRequest(t, ple, "plc", now)
	for _, tc := range []struct {
		name   string
		token  string
		reason Reason
	}{
		{"good", okToken, ""},
		{"issued within the skew ahead", with(func(r *Request) { r.IssuedAt = now.Add(30 * time.Second).Unix(); r.Expiry = r.IssuedAt + 60 }), ""},
		{"expired within the skew", with(func(r *Request) {
			r.IssuedAt = now.Add(-90 * time.Second).Unix()
			r.Expiry = now.Add(-30 * time.Second).Unix()
		}), ""},
		{"the longest lifetime", with(func(r *Request) { r.Expiry = r.IssuedAt + int64(MaxRequestLifetime/time.Second) }), ""},
		{"unknown requester", func() string { tok, _ := mustRequest(t, ppk, "plc", now); return tok }(), UnknownIssuer},
		{"a delegate of a known requester", func() string {
			tok, _ := mustRequest(t, ticket.NewSigner("ple.japan", strangeKey), "plc", now)
			return tok
		}(), UnknownIssuer},
		{"bad signature", func() string { tok, _ := mustRequest(t, impostor(ple), "plc", now); return tok }(), BadSignature},
		{"a key the requester does not have", func() string {
			tok, _ := mustRequest(t, ticket.NewSigner("ple", strangeKey), "plc", now)
			return tok
		}(), BadSignature},
		{"wrong audience", func() string { tok, _ := mustRequest(t, ple, "ppk", now); return tok }(), WrongAudience},
		{"expired", func() string { tok, _ := mustRequest(t, ple, "plc", now.Add(-5*time.Minute)); return tok }(), Stale},
		{"issued in the future", func() string { tok, _ := mustRequest(t, ple, "plc", now.Add(5*time.Minute)); return tok }(), Stale},
		{"too long a lifetime", with(func(r *Request) { r.Expiry = r.IssuedAt + int64(MaxRequestLifetime/time.Second) + 1 }), Malformed},
		{"expiry before issue", with(func(r *Request) { r.Expiry = r.IssuedAt - 1 }), Malformed},
		{"no iat", with(func(r *Request) { r.IssuedAt = 0 }), Malformed},
		{"bad jti", with(func(r *Request) { r.ID = "not-hex" }), Malformed},
		{"uppercase jti", with(func(r *Request) { r.ID = strings.Repeat("AB", 16) }), Malformed},
		{"bad iss", with(func(r *Request) { r.Issuer = "PLE" }), Malformed},
		{"a ticket", sliverTicket(t, ple, "plc", "t-1"), Malformed},
		{"a feed", func() string {
			tok, err := SignFeed(ple, Feed{Audience: "plc", IssuedAt: now.Unix(), Request: strings.Repeat("ab", 16)})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), Malformed},
		{"not JSON claims", func() string {
			tok, err := ple.SignMessage(RequestType, "a string", MaxRequestBytes)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), Malformed},
		{"garbage", "garbage", Malformed},
		{"empty", "", Malformed},
		{"oversized", strings.Repeat("a", MaxRequestBytes+1), Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := VerifyRequest(tc.token, homeKeyring(), "plc", skew, now)
			if tc.reason != "" {
				if got := ReasonOf(err); got != tc.reason || req != nil {
					t.Fatalf("got %+v, %v; want a refusal for %s", req, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyRequest: %v", err)
			}
			if req.Issuer != "ple" || req.Audience != "plc" || !validID(req.ID) {
				t.Fatalf("verified %+v", req)
			}
		})
	}
}

// TestVerifyRequestNoDelegates checks that a known authority's key vouches
// only for its own name: a request signed by plc's key naming ple is
// refused.
func TestVerifyRequestNoDelegates(t *testing.T) {
	r := Request{Issuer: "ple", Audience: "plc", IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: strings.Repeat("cd", 16)}
	tok := signRequest(t, plc, r)
	if _, err := VerifyRequest(tok, homeKeyring(), "plc", skew, now); ReasonOf(err) != BadSignature {
		t.Fatalf("got %v, want BadSignature", err)
	}
}

func TestVerifyFeed(t *testing.T) {
	_, req := mustRequest(t, ple, "plc", now.Add(-time.Second))
	_, earlier := mustRequest(t, ple, "plc", now.Add(-10*time.Minute))
	tickets := []string{sliverTicket(t, plc, "ple", "t-1"), sliverTicket(t, plc, "ple", "t-2")}
	feed := func(s ticket.Signer, edit func(*Feed)) []byte {
		f := Feed{Audience: "ple", IssuedAt: now.Unix(), Request: req.ID, Tickets: tickets}
		if edit != nil {
			edit(&f)
		}
		tok, err := SignFeed(s, f)
		if err != nil {
			t.Fatalf("SignFeed: %v", err)
		}
		return []byte(tok)
	}
	// unchecked signs feed claims past SignFeed's checks.
	unchecked := func(f Feed) []byte {
		f.Issuer, f.Audience, f.IssuedAt, f.Request = "plc", "ple", now.Unix(), req.ID
		tok, err := plc.SignMessage(FeedType, f, MaxFeedBytes)
		if err != nil {
			t.Fatalf("SignMessage: %v", err)
		}
		return []byte(tok)
	}
	request := []byte(func() string { tok, _ := mustRequest(t, plc, "ple", now); return tok }())
	oversized := append(feed(plc, nil), make([]byte, MaxFeedBytes)...)

	for _, tc := range []struct {
		name    string
		body    []byte
		reason  Reason
		tickets int
	}{
		{"good", feed(plc, nil), "", 2},
		{"no tickets", feed(plc, func(f *Feed) { f.Tickets = nil }), "", 0},
		{"issued within the skew ahead", feed(plc, func(f *Feed) { f.IssuedAt = now.Add(30 * time.Second).Unix() }), "", 2},
		{"issued within the skew before the request", feed(plc, func(f *Feed) { f.IssuedAt = req.IssuedAt - 30 }), "", 2},
		{"signed by another authority's key", feed(ticket.Signer{Authority: "plc", KeyID: ppk.KeyID, Key: ppkKey}, nil), BadSignature, 0},
		{"signed by another key under the home's kid", feed(impostor(plc), nil), BadSignature, 0},
		{"issued by another authority", feed(ticket.Signer{Authority: "ppk", KeyID: plc.KeyID, Key: plcKey}, nil), Mismatch, 0},
		{"wrong audience", feed(plc, func(f *Feed) { f.Audience = "ppk" }), WrongAudience, 0},
		{"replayed earlier feed", feed(plc, func(f *Feed) { f.Request = earlier.ID; f.IssuedAt = earlier.IssuedAt }), Mismatch, 0},
		{"issued before the request", feed(plc, func(f *Feed) { f.IssuedAt = req.IssuedAt - 5*60 }), Stale, 0},
		{"issued in the future", feed(plc, func(f *Feed) { f.IssuedAt = now.Add(5 * time.Minute).Unix() }), Stale, 0},
		{"too many tickets", unchecked(Feed{Tickets: make([]string, MaxTickets+1)}), Oversized, 0},
		{"a ticket too long", unchecked(Feed{Tickets: []string{strings.Repeat("a", ticket.MaxTokenBytes+1)}}), Oversized, 0},
		{"oversized", oversized, Oversized, 0},
		{"a request", request, Malformed, 0},
		{"a ticket", []byte(tickets[0]), Malformed, 0},
		{"garbage", []byte("<html>hello</html>"), Malformed, 0},
		{"empty", nil, Malformed, 0},
		{"not JSON claims", func() []byte {
			tok, err := plc.SignMessage(FeedType, []string{"a"}, MaxFeedBytes)
			if err != nil {
				t.Fatal(err)
			}
			return []byte(tok)
		}(), Malformed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := VerifyFeed(tc.body, plcKeys, "plc", "ple", req, "", skew, now)
			if tc.reason != "" {
				if got := ReasonOf(err); got != tc.reason || f != nil {
					t.Fatalf("got %v; want a refusal for %s", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyFeed: %v", err)
			}
			if f.Issuer != "plc" || f.Audience != "ple" || f.Request != req.ID || len(f.Tickets) != tc.tickets {
				t.Fatalf("verified %+v", f)
			}
		})
	}
}

func TestSignFeedRefuses(t *testing.T) {
	id := strings.Repeat("ab", 16)
	for _, tc := range []struct {
		name string
		f    Feed
	}{
		{"no audience", Feed{IssuedAt: now.Unix(), Request: id}},
		{"no request", Feed{Audience: "ple", IssuedAt: now.Unix()}},
		{"no iat", Feed{Audience: "ple", Request: id}},
		{"too many tickets", Feed{Audience: "ple", IssuedAt: now.Unix(), Request: id, Tickets: make([]string, MaxTickets+1)}},
		{"a ticket too long", Feed{Audience: "ple", IssuedAt: now.Unix(), Request: id, Tickets: []string{strings.Repeat("a", ticket.MaxTokenBytes+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SignFeed(plc, tc.f); err == nil {
				t.Fatal("signed")
			}
		})
	}
}

// TestSignFeedSetsIssuer checks that the signer, not the caller, names the
// feed's issuer.
func TestSignFeedSetsIssuer(t *testing.T) {
	_, req := mustRequest(t, ple, "plc", now)
	tok, err := SignFeed(plc, Feed{Issuer: "ppk", Audience: "ple", IssuedAt: now.Unix(), Request: req.ID})
	if err != nil {
		t.Fatalf("SignFeed: %v", err)
	}
	f, err := VerifyFeed([]byte(tok), plcKeys, "plc", "ple", req, "", skew, now)
	if err != nil || f.Issuer != "plc" || f.Tickets == nil {
		t.Fatalf("VerifyFeed: %+v, %v", f, err)
	}
}
