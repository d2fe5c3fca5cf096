package feed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/planetkube/planetkube/internal/ticket"
)

// maxReasonBytes bounds the text of a refusal read from the home, and
// maxReasonRunes what of it an error shows.
const (
	maxReasonBytes = 1024
	maxReasonRunes = 200
)

// Fetch polls home's feed: it GETs feedURL (the full https URL) with a
// request signed by s and checks the answer with VerifyFeed against
// homeKeys. The body is read through a limit of MaxFeedBytes+1 (Oversized
// beyond); network errors, timeouts and 5xx statuses are Unreachable; 401,
// 403 and other statuses are Refused, with the home's short text; an answer
// that is not a feed JWS is Malformed. client supplies TLS and the timeout
// (nil is http.DefaultClient); now is the clock (nil is time.Now).
//
// have is the version of the feed this install has followed, or HaveNone,
// sent in HaveHeader: the answer may then say Unchanged (for that version
// only); "" sends no header, as older installs did, and takes a whole
// FeedType feed.
//
// Errors are *Error, except for a feed URL that is not https and a signer
// that cannot sign, which are the caller's mistakes.
func Fetch(ctx context.Context, client *http.Client, feedURL string, s ticket.Signer, home string, homeKeys []ticket.Key, have string, skew time.Duration, now func() time.Time) (*Feed, error) {
	if client == nil {
		client = http.DefaultClient
	}
	if now == nil {
		now = time.Now
	}
	if u, err := url.Parse(feedURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the feed URL %q is not an https URL", feedURL)
	}
	token, req, err := NewRequest(s, home, now())
	if err != nil {
		return nil, err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, feedURL, nil)
	if err != nil {
		return nil, fmt.Errorf("the feed URL %q: %w", feedURL, err)
	}
	r.Header.Set("Authorization", AuthScheme+" "+token)
	r.Header.Set("Accept", "application/jose")
	if have != "" {
		r.Header.Set(HaveHeader, have)
	}
	resp, err := client.Do(r)
	if err != nil {
		return nil, fail(Unreachable, "%v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode >= 500:
		return nil, fail(Unreachable, "the home answered %s: %s", resp.Status, reasonText(resp.Body))
	case resp.StatusCode != http.StatusOK:
		return nil, fail(Refused, "the home answered %s: %s", resp.Status, reasonText(resp.Body))
	case resp.ContentLength > MaxFeedBytes:
		return nil, fail(Oversized, "the feed has %d bytes, more than %d", resp.ContentLength, MaxFeedBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFeedBytes+1))
	if err != nil {
		return nil, fail(Unreachable, "reading the feed: %v", err)
	}
	return VerifyFeed(body, homeKeys, home, s.Authority, req, have, skew, now())
}

// reasonText reads the short text of a refusal: one line of printable
// characters, cut short.
func reasonText(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, maxReasonBytes))
	text := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, string(b))
	text = strings.Join(strings.Fields(text), " ")
	if text == "" {
		return "(no reason given)"
	}
	if utf8.RuneCountInString(text) > maxReasonRunes {
		text = string([]rune(text)[:maxReasonRunes]) + "…"
	}
	return text
}
