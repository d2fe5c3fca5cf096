// Package attr keeps the history of which pod held which IP address when,
// so that a flow seen by the node agent is attributed by (IP, time) and a reused
// pod IP never names the wrong pod for an old flow.
//
// Addresses are normalized: IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// stored as plain IPv4 and IPv6 zones are dropped, so both spellings of an
// address share one history.
//
// Out-of-order events: the history of one IP is a sorted list of
// non-overlapping intervals [From, To). An Assign at time t that falls inside
// an existing interval of another holder wins for the overlap: that interval is
// cut at t (or dropped if it starts at t). An Assign that holds "from t on"
// ends where the next recorded interval after t begins, so history recorded
// for later times is never overwritten by an event that arrives late.
package attr

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Holder is a pod that held an IP.
type Holder struct {
	// Slice is the slice's full name, "" for pods that are not slivers.
	Slice string
	// Sliver is the pod as "namespace/name".
	Sliver string
	// PodUID is the pod's UID; it identifies the holder.
	PodUID string
}

// interval is one stretch [From, To) during which Holder held an IP.
// A zero To means the IP is still held.
type interval struct {
	From   time.Time
	To     time.Time
	Holder Holder
}

// contains reports whether t lies in [From, To); the caller ensures From <= t.
func (iv *interval) contains(t time.Time) bool {
	return iv.To.IsZero() || t.Before(iv.To)
}

// History is, per IP, a sorted list of non-overlapping intervals [From, To)
// each with its Holder; a zero To means still held. It is safe for concurrent
// use; At takes only a read lock and does a binary search.
type History struct {
	mu   sync.RWMutex
	byIP map[netip.Addr][]interval
}

// NewHistory returns an empty History.
func NewHistory() *History {
	return &History{byIP: make(map[netip.Addr][]interval)}
}

// normalize maps IPv4-mapped IPv6 to IPv4 and drops any IPv6 zone.
func normalize(ip netip.Addr) netip.Addr {
	return ip.Unmap().WithZone("")
}

// firstAfter returns the index of the first interval whose From is after t.
func firstAfter(ivs []interval, t time.Time) int {
	return sort.Search(len(ivs), func(k int) bool { return ivs[k].From.After(t) })
}

// Assign records that holder holds ip from t on. An open (or covering)
// interval of another holder is closed at t; assigning the same holder
// (same PodUID) again while it holds ip is a no-op. The new interval stays
// open unless a later interval is already recorded, in which case it ends
// where that one begins (or that one is extended back to t when it has the
// same holder). Invalid addresses and zero times are ignored.
func (h *History) Assign(ip netip.Addr, holder Holder, t time.Time) {
	if !ip.IsValid() || t.IsZero() {
		return
	}
	ip = normalize(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.assign(ip, holder, t)
}

// AssignSince records that holder holds ip from now on and also, back to
// earliest, for as long before now as nobody held ip: a pod's address is
// seen (its status) only after its containers may have sent from it, and
// the time from its start to then is its own unless another pod held the
// address meanwhile (a release seen late). When another holder holds ip at
// now, or earliest is zero or not before now, it is Assign at now.
func (h *History) AssignSince(ip netip.Addr, holder Holder, earliest, now time.Time) {
	if !ip.IsValid() || now.IsZero() {
		return
	}
	ip = normalize(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	from := now
	if !earliest.IsZero() && earliest.Before(now) {
		from = earliest
		ivs := h.byIP[ip]
		if i := firstAfter(ivs, now); i > 0 {
			switch last := ivs[i-1]; {
			case last.contains(now):
				from = now
			case last.To.After(from):
				from = last.To
			}
		}
	}
	h.assign(ip, holder, from)
}

// assign is Assign with the lock held and ip normalized.
func (h *History) assign(ip netip.Addr, holder Holder, t time.Time) {
	ivs := h.byIP[ip]
	i := firstAfter(ivs, t)
	if i > 0 && ivs[i-1].contains(t) {
		p := &ivs[i-1]
		if p.Holder.PodUID == holder.PodUID {
			return // idempotent
		}
		if p.From.Equal(t) {
			ivs = append(ivs[:i-1], ivs[i:]...)
			i--
		} else {
			p.To = t
		}
	}
	if i < len(ivs) && ivs[i].Holder.PodUID == holder.PodUID {
		ivs[i].From = t // late event for the same holder: extend it back
		h.byIP[ip] = ivs
		return
	}
	var end time.Time
	if i < len(ivs) {
		end = ivs[i].From
	}
	ivs = append(ivs, interval{})
	copy(ivs[i+1:], ivs[i:])
	ivs[i] = interval{From: t, To: end, Holder: holder}
	h.byIP[ip] = ivs
}

// Release records that the holder with podUID stopped holding ip at t. It is a
// no-op if that holder does not hold ip at t. An interval released at its own
// start is removed. Invalid addresses and zero times are ignored.
func (h *History) Release(ip netip.Addr, podUID string, t time.Time) {
	if !ip.IsValid() || t.IsZero() {
		return
	}
	ip = normalize(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	ivs := h.byIP[ip]
	i := firstAfter(ivs, t)
	if i == 0 {
		return
	}
	p := &ivs[i-1]
	if !p.contains(t) || p.Holder.PodUID != podUID {
		return
	}
	if p.From.Equal(t) {
		ivs = append(ivs[:i-1], ivs[i:]...)
		if len(ivs) == 0 {
			delete(h.byIP, ip)
			return
		}
		h.byIP[ip] = ivs
		return
	}
	p.To = t
}

// At returns who held ip at t. false means nobody did: the flow is
// unattributed node traffic.
func (h *History) At(ip netip.Addr, t time.Time) (Holder, bool) {
	if !ip.IsValid() {
		return Holder{}, false
	}
	ip = normalize(ip)
	h.mu.RLock()
	defer h.mu.RUnlock()
	ivs := h.byIP[ip]
	i := firstAfter(ivs, t)
	if i == 0 || !ivs[i-1].contains(t) {
		return Holder{}, false
	}
	return ivs[i-1].Holder, true
}

// Prune forgets intervals that ended at or before the given time (they cover
// no instant at or after it), for retention, and returns how many it forgot.
// Open intervals are never pruned.
func (h *History) Prune(before time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for ip, ivs := range h.byIP {
		kept := ivs[:0]
		for _, iv := range ivs {
			if !iv.To.IsZero() && !iv.To.After(before) {
				n++
				continue
			}
			kept = append(kept, iv)
		}
		if len(kept) == 0 {
			delete(h.byIP, ip)
			continue
		}
		clear(ivs[len(kept):])
		h.byIP[ip] = kept
	}
	return n
}
