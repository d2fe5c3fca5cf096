package feed

import (
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/ticket"
)

// FuzzVerifyRequest feeds untrusted requests to the home: it must never
// panic, every refusal must carry a reason, and whatever verifies must be
// addressed to the home by a known authority, within its times.
func FuzzVerifyRequest(f *testing.F) {
	good, _ := mustRequest(f, ple, "plc", now)
	unknown, _ := mustRequest(f, ppk, "plc", now)
	elsewhere, _ := mustRequest(f, ple, "ppk", now)
	for _, seed := range []string{good, unknown, elsewhere, sliverTicket(f, ple, "plc", "t-1"), "", "a.b.c", good + "x",
		strings.Replace(good, ".", "x.", 1), "eyJhbGciOiJub25lIn0.e30."} {
		f.Add(seed)
	}
	keys := homeKeyring()
	f.Fuzz(func(t *testing.T, token string) {
		req, err := VerifyRequest(token, keys, "plc", skew, now)
		if err != nil {
			if ReasonOf(err) == "" || req != nil {
				t.Fatalf("a refusal without a reason, or with a request: %v", err)
			}
			return
		}
		life := time.Duration(req.Expiry-req.IssuedAt) * time.Second
		switch {
		case req.Audience != "plc" || len(keys[req.Issuer]) == 0 || !validID(req.ID):
			t.Fatalf("verified a request it should not have: %+v", req)
		case req.IssuedAt > now.Add(skew).Unix() || req.Expiry <= now.Add(-skew).Unix() || life <= 0 || life > MaxRequestLifetime:
			t.Fatalf("verified a request out of its times: %+v", req)
		}
	})
}

// FuzzVerifyFeed feeds untrusted answers to the requester: it must never
// panic, every refusal must carry a reason, and whatever verifies must be
// the home's answer to this request, addressed here, within its bounds;
// a versioned one only to a request that sent a version, and Unchanged only
// for the version it sent.
func FuzzVerifyFeed(f *testing.F) {
	_, req := mustRequest(f, ple, "plc", now.Add(-time.Second))
	_, earlier := mustRequest(f, ple, "plc", now.Add(-time.Hour))
	tickets := []string{sliverTicket(f, plc, "ple", "t-1")}
	for _, fd := range []Feed{
		{Audience: "ple", IssuedAt: now.Unix(), Request: req.ID, Tickets: tickets},
		{Audience: "ple", IssuedAt: now.Unix(), Request: req.ID},
		{Audience: "ple", IssuedAt: earlier.IssuedAt, Request: earlier.ID, Tickets: tickets},
		{Audience: "ppk", IssuedAt: now.Unix(), Request: req.ID, Tickets: tickets},
		{Audience: "ple", IssuedAt: now.Unix(), Request: req.ID, Tickets: tickets, Version: Version(tickets)},
		{Audience: "ple", IssuedAt: now.Unix(), Request: req.ID, Version: Version(tickets), Unchanged: true},
	} {
		tok, err := SignFeed(plc, fd)
		if err != nil {
			f.Fatal(err)
		}
		for _, have := range []string{"", HaveNone, Version(tickets)} {
			f.Add([]byte(tok), have)
		}
	}
	good, _ := mustRequest(f, ple, "plc", now)
	for _, seed := range []string{good, tickets[0], "", "a.b.c", "<html></html>"} {
		f.Add([]byte(seed), "")
	}
	f.Fuzz(func(t *testing.T, body []byte, have string) {
		fd, err := VerifyFeed(body, plcKeys, "plc", "ple", req, have, skew, now)
		if err != nil {
			if ReasonOf(err) == "" || fd != nil {
				t.Fatalf("a refusal without a reason, or with a feed: %v", err)
			}
			return
		}
		switch {
		case fd.Issuer != "plc" || fd.Audience != "ple" || fd.Request != req.ID:
			t.Fatalf("verified a feed it should not have: %+v", fd)
		case fd.IssuedAt < req.IssuedAt-int64(skew/time.Second) || fd.IssuedAt > now.Add(skew).Unix():
			t.Fatalf("verified a feed out of its times: %+v", fd)
		case len(fd.Tickets) > MaxTickets:
			t.Fatalf("verified a feed of %d tickets", len(fd.Tickets))
		case have == "" && (fd.Version != "" || fd.Unchanged):
			t.Fatalf("verified a versioned feed for a request that sent no version: %+v", fd)
		case fd.Unchanged && (fd.Version != have || len(fd.Tickets) > 0):
			t.Fatalf("verified an Unchanged feed for another version than %q, or with tickets: %+v", have, fd)
		}
		for _, tok := range fd.Tickets {
			if len(tok) > ticket.MaxTokenBytes {
				t.Fatalf("verified a feed with a ticket of %d bytes", len(tok))
			}
		}
	})
}
