package lookup

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxClients bounds the rate limiter's buckets.
const maxClients = 10000

// overflowKey is the bucket that clients share once maxClients have their
// own: a flood of new addresses neither grows the map nor frees anyone
// from the limit.
const overflowKey = "overflow"

// unlimited says whether a client IP is exempt from the rate limit.
func (h *handler) unlimited(ip string) bool { return within(h.opt.Unlimited, ip) }

// within says whether ip is in one of the networks.
func within(nets []netip.Prefix, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientKey is the rate limit's key for a client IP: the address for IPv4,
// its /64 for IPv6 (one host holds a whole /64, and could otherwise take a
// new address per request).
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// clientIP is the client the rate limit goes by: the peer, or, when the
// peer is one of TrustedProxies (an Ingress controller), the last address
// of X-Forwarded-For that is not a trusted proxy, the one that reached the
// outermost of them. Anyone else's X-Forwarded-For is ignored: a client
// could otherwise name a new address on every request.
func (h *handler) clientIP(r *http.Request) string {
	ip := addrString(r.RemoteAddr)
	if !within(h.opt.TrustedProxies, ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		a, err := netip.ParseAddr(hop)
		if err != nil {
			return ip // a malformed chain: the proxy is the client
		}
		if hop = a.Unmap().WithZone("").String(); !within(h.opt.TrustedProxies, hop) {
			return hop
		}
	}
	return ip
}

// addrString is the address of a host:port (or of a bare host), unmapped.
func addrString(hostPort string) string {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		host = hostPort
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return host
}

// limiter is a token bucket per client (clientKey).
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
	// max bounds the buckets (default maxClients).
	max int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token for key; when none is left it says how long to wait.
func (l *limiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		limit := l.max
		if limit <= 0 {
			limit = maxClients
		}
		if len(l.buckets) >= limit {
			l.prune(now)
		}
		if len(l.buckets) >= limit {
			key = overflowKey
		}
		if b, ok = l.buckets[key]; !ok {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
}

// prune drops the buckets that have refilled (they are as good as new).
// Buckets still short of tokens stay: clearing them would let a client who
// brings enough new addresses reset its own limit.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if k != overflowKey && b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
