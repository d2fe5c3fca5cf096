package agent

import (
	"net/netip"
	"time"

	"github.com/planetkube/planetkube/internal/agent/attr"
	"github.com/planetkube/planetkube/internal/flow"
)

// Lookup says which pod held an IP at a time (attr.History.At).
type Lookup func(ip netip.Addr, t time.Time) (attr.Holder, bool)

// Attribute names the pod of each record in place and returns how many it
// attributed. A flow belongs to the pod that held its original source address
// when it started (outgoing traffic, PlanetFlow's question), or else to the
// pod that held its original destination (traffic a sliver accepted). Flows of
// no pod are left as node traffic: Slice, Sliver and PodUID empty.
//
// Addresses are normalized (IPv4-mapped IPv6 to IPv4) so that what is stored
// matches what lookups ask for.
func Attribute(recs []flow.Record, at Lookup) int {
	n := 0
	for i := range recs {
		r := &recs[i]
		r.Orig.Src, r.Orig.Dst = unmap(r.Orig.Src), unmap(r.Orig.Dst)
		r.Reply.Src, r.Reply.Dst = unmap(r.Reply.Src), unmap(r.Reply.Dst)
		t := r.Start
		if t.IsZero() {
			t = r.End
		}
		h, ok := at(r.Orig.Src.Addr(), t)
		if !ok {
			h, ok = at(r.Orig.Dst.Addr(), t)
		}
		if !ok {
			r.Slice, r.Sliver, r.PodUID = "", "", ""
			continue
		}
		r.Slice, r.Sliver, r.PodUID = h.Slice, h.Sliver, h.PodUID
		n++
	}
	return n
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().Is4In6() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
