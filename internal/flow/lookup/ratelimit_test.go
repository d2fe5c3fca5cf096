package lookup

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ ip, key string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := clientKey(tc.ip); got != tc.key {
			t.Errorf("clientKey(%s) = %s, want %s", tc.ip, got, tc.key)
		}
	}
}

// TestLimiterHoldsUnderAFlood: a client that used up its burst stays
// limited however many other addresses ask meanwhile, and new addresses
// beyond the bound share one bucket instead of growing the map.
func TestLimiterHoldsUnderAFlood(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l := &limiter{rate: 1, burst: 2, buckets: map[string]*bucket{}, max: 100}
	for range 2 {
		if _, ok := l.allow("198.51.100.1", now); !ok {
			t.Fatal("the burst was refused")
		}
	}
	if _, ok := l.allow("198.51.100.1", now); ok {
		t.Fatal("a third request within the burst's second was allowed")
	}
	for i := range 1000 {
		l.allow(fmt.Sprintf("2001:db8:%x::1", i), now) // a /64 each: distinct clients
	}
	if len(l.buckets) > 101 {
		t.Fatalf("%d buckets after a flood, want at most the bound and the overflow", len(l.buckets))
	}
	if _, ok := l.allow("198.51.100.1", now); ok {
		t.Fatal("the flood reset the exhausted client's limit")
	}
	if _, ok := l.allow("203.0.113.9", now); ok {
		t.Fatal("a new client past the bound was not limited with the overflow bucket")
	}
	if _, ok := l.allow("198.51.100.1", now.Add(2*time.Second)); !ok {
		t.Fatal("the client's tokens did not refill with time")
	}
}

// TestClientIPBehindAProxy: X-Forwarded-For names the client only when a
// trusted proxy sent it, and then its last hop that is not a trusted proxy.
func TestClientIPBehindAProxy(t *testing.T) {
	h := &handler{opt: Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00::/64")}}}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"direct, forged header", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"proxy", "10.244.1.7:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"proxy, client forged the start", "10.244.1.7:5000", []string{"192.0.2.66, 203.0.113.9"}, "203.0.113.9"},
		{"two proxies", "10.244.1.7:5000", []string{"203.0.113.9, 10.244.2.8"}, "203.0.113.9"},
		{"two header lines", "10.244.1.7:5000", []string{"192.0.2.66", "203.0.113.9"}, "203.0.113.9"},
		{"IPv6 proxy, mapped client", "[fd00::7]:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"proxy without header", "10.244.1.7:5000", nil, "10.244.1.7"},
		{"proxy, malformed chain", "10.244.1.7:5000", []string{"203.0.113.9, not-an-ip"}, "10.244.1.7"},
		{"only proxies", "10.244.1.7:5000", []string{"10.244.3.3"}, "10.244.1.7"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.clientIP(r); got != tc.want {
			t.Errorf("%s: clientIP = %s, want %s", tc.name, got, tc.want)
		}
	}
}
