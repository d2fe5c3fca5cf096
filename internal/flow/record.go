// Package flow holds the types shared by the node agent's flow capture,
// store and query: one audited network flow, attributed to a slice.
package flow

import (
	"net/netip"
	"time"
)

// Tuple is one direction of a connection as conntrack sees it.
type Tuple struct {
	// Src and Dst are the endpoints.
	Src, Dst netip.AddrPort
}

// Record is one flow: a conntrack entry, with both tuples (the reply tuple
// carries the node's address under masquerade), its counters and who sent it.
type Record struct {
	// Start and End bound the flow; End is zero while it is still open.
	Start, End time.Time
	// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
	Proto uint8
	// Orig is the original direction (from the sender), Reply the reply one.
	Orig, Reply Tuple
	// OrigBytes, OrigPackets, ReplyBytes, ReplyPackets are the counters.
	OrigBytes, OrigPackets, ReplyBytes, ReplyPackets uint64
	// Slice is the full name of the slice that sent it ("" for node traffic
	// that no sliver sent); Sliver is the pod as namespace/name; PodUID its UID.
	Slice, Sliver, PodUID string
	// Node is the node that saw the flow. It is not stored: whoever answers
	// a query sets it (the node agent its own name, the manager's fan-out
	// the name of the node that answered).
	Node string
	// Source is "archive" for a record the install's archive answered
	// (internal/flow/archive), "" for one a node's own store did.
	Source string
}

// SourceArchive is the Source of records from the archive.
const SourceArchive = "archive"

// Query asks for flows: to a destination IP or of a slice, within a window.
type Query struct {
	// Dst, when valid, keeps flows whose original destination is this IP.
	Dst netip.Addr
	// Slice, when not empty, keeps the flows of this slice.
	Slice string
	// Port, when not 0, keeps the flows whose original destination port is
	// this one; it needs Dst (the port at that address).
	Port uint16
	// From and To bound the window: flows that overlap [From, To).
	From, To time.Time
	// Limit bounds the number of records returned.
	Limit int
}
