// Package ipfix exports the node agent's flow records to an operator's own
// flow collector as IPFIX (RFC 7011), over UDP or TCP, each record carrying
// the full name of the slice that sent it.
//
// A record is a biflow (RFC 5103): the original direction's addresses and
// ports, the sender's address after NAT (the node's, as the other end saw
// it), the counters both ways (reverse counters under the reverse PEN
// 29305), the start and end in milliseconds, the slice as a number in
// ingressVRFID (234, printed by collectors that know VRFs) and the slice's
// full name in an enterprise-specific string element. An options template
// maps the numbers to names (VRFname, 236), so that collectors that keep
// VRF names (nfdump's %ivrfnam) show them.
//
// The agent's records are snapshots: an open flow is written again every
// dump interval with its counters so far. The exporter sends deltas (what
// the flow did since its last export), so a collector that sums records
// counts each byte once.
package ipfix

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"time"
)

// Information Element identifiers (IANA) used here.
const (
	ieOctetDeltaCount             = 1
	iePacketDeltaCount            = 2
	ieProtocolIdentifier          = 4
	ieSourceTransportPort         = 7
	ieSourceIPv4Address           = 8
	ieDestinationTransportPort    = 11
	ieDestinationIPv4Address      = 12
	ieSourceIPv6Address           = 27
	ieDestinationIPv6Address      = 28
	ieObservationDomainID         = 149
	ieFlowStartMilliseconds       = 152
	ieFlowEndMilliseconds         = 153
	iePostNATSourceIPv4Address    = 225
	iePostNAPTSourceTransportPort = 227
	ieIngressVRFID                = 234
	ieVRFName                     = 236
	iePostNATSourceIPv6Address    = 281

	// reversePEN marks the reverse direction's counters (RFC 5103).
	reversePEN = 29305
	// ieSliceName is the slice's full name, under the configured PEN.
	ieSliceName = 1
)

// Set and template identifiers.
const (
	version          = 10
	templateSetID    = 2
	optionsSetID     = 3
	templateIPv4     = 256
	templateIPv6     = 257
	templateSliceIDs = 258

	headerLen = 16
	setHeader = 4
	// vrfNameLen is the VRFname field's fixed length: a full name (at most
	// 253 bytes) and its terminating NUL.
	vrfNameLen = 256
	// variableLength marks a variable-length field in a template.
	variableLength = 0xFFFF
)

// DefaultEnterpriseNumber is the PEN of the slice-name element when none is
// configured: 32473, which RFC 5612 reserves for documentation and examples.
// An operator with a PEN of its own sets it (--ipfix-enterprise-number).
const DefaultEnterpriseNumber = 32473

// Flow is one record as exported: one direction's endpoints with both
// directions' counters since the last export.
type Flow struct {
	Src, Dst netip.AddrPort
	// PostNATSrc is the source as the other end saw it (zero: no NAT).
	PostNATSrc                                     netip.AddrPort
	Proto                                          uint8
	Octets, Packets, ReverseOctets, ReversePackets uint64
	Start, End                                     time.Time
	// Slice is the slice's full name ("" for the node's own traffic).
	Slice string
}

// SliceID is the number standing for a slice in ingressVRFID: 0 for the
// node's own traffic, else the 32-bit FNV-1a hash of its full name (never
// 0), the same on every node and across restarts.
func SliceID(slice string) uint32 {
	if slice == "" {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(slice))
	if id := h.Sum32(); id != 0 {
		return id
	}
	return 1
}

// field is one template field.
type field struct {
	id     uint16
	length uint16
	pen    uint32
}

// templateFields are the fields of the flow template of one address family.
func templateFields(v6 bool, pen uint32) []field {
	addr, src, dst, post := uint16(4), uint16(ieSourceIPv4Address), uint16(ieDestinationIPv4Address), uint16(iePostNATSourceIPv4Address)
	if v6 {
		addr, src, dst, post = 16, ieSourceIPv6Address, ieDestinationIPv6Address, iePostNATSourceIPv6Address
	}
	return []field{
		{id: src, length: addr}, {id: dst, length: addr},
		{id: ieSourceTransportPort, length: 2}, {id: ieDestinationTransportPort, length: 2},
		{id: ieProtocolIdentifier, length: 1},
		{id: ieOctetDeltaCount, length: 8}, {id: iePacketDeltaCount, length: 8},
		{id: ieOctetDeltaCount, length: 8, pen: reversePEN}, {id: iePacketDeltaCount, length: 8, pen: reversePEN},
		{id: ieFlowStartMilliseconds, length: 8}, {id: ieFlowEndMilliseconds, length: 8},
		{id: post, length: addr}, {id: iePostNAPTSourceTransportPort, length: 2},
		{id: ieIngressVRFID, length: 4},
		{id: ieSliceName, length: variableLength, pen: pen},
	}
}

// sliceIDFields are the options template's: scope observationDomainId, then
// ingressVRFID and VRFname.
var sliceIDFields = []field{{id: ieObservationDomainID, length: 4}, {id: ieIngressVRFID, length: 4}, {id: ieVRFName, length: vrfNameLen}}

// Encoder builds IPFIX messages of one observation domain. It keeps the
// sequence number (the data records sent so far), so one Encoder serves one
// transport session. It is not safe for concurrent use.
type Encoder struct {
	// ObservationDomain is the messages' observation domain ID.
	ObservationDomain uint32
	// EnterpriseNumber is the PEN of the slice-name element.
	EnterpriseNumber uint32
	// MaxMessage bounds a message's size in bytes (at least 512).
	MaxMessage int

	seq uint32
}

// message is a message being built.
type message struct {
	b        []byte
	set      int // offset of the open set's header, or -1
	records  uint32
	maxBytes int
}

func (e *Encoder) begin(now time.Time) *message {
	m := &message{b: make([]byte, headerLen, e.MaxMessage), set: -1, maxBytes: e.MaxMessage}
	binary.BigEndian.PutUint16(m.b[0:], version)
	binary.BigEndian.PutUint32(m.b[4:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(m.b[8:], e.seq)
	binary.BigEndian.PutUint32(m.b[12:], e.ObservationDomain)
	return m
}

// openSet starts a set of id unless one is open already.
func (m *message) openSet(id uint16) {
	if m.set >= 0 && binary.BigEndian.Uint16(m.b[m.set:]) == id {
		return
	}
	m.closeSet()
	m.set = len(m.b)
	m.b = binary.BigEndian.AppendUint16(m.b, id)
	m.b = append(m.b, 0, 0)
}

// closeSet pads the open set to 4 bytes and writes its length. A set
// with nothing in it is removed: an empty set ends some collectors'
// reading of the message (nfdump's).
func (m *message) closeSet() {
	if m.set < 0 {
		return
	}
	if len(m.b)-m.set == setHeader {
		m.b = m.b[:m.set]
	} else {
		for (len(m.b)-m.set)%4 != 0 {
			m.b = append(m.b, 0)
		}
		binary.BigEndian.PutUint16(m.b[m.set+2:], uint16(len(m.b)-m.set))
	}
	m.set = -1
}

// fits says whether n more bytes (and a set header, and padding) fit.
func (m *message) fits(n int) bool {
	return len(m.b)+n+setHeader+3 <= m.maxBytes
}

func (m *message) finish() []byte {
	m.closeSet()
	binary.BigEndian.PutUint16(m.b[2:], uint16(len(m.b)))
	return m.b
}

func appendFields(b []byte, fs []field) []byte {
	for _, f := range fs {
		id := f.id
		if f.pen != 0 {
			id |= 0x8000
		}
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, f.length)
		if f.pen != 0 {
			b = binary.BigEndian.AppendUint32(b, f.pen)
		}
	}
	return b
}

// Templates is one message with the flow templates (IPv4, IPv6) and the
// options template that maps slice numbers to names. Over UDP it is sent
// again every template interval; over TCP once per connection.
func (e *Encoder) Templates(now time.Time) []byte {
	m := e.begin(now)
	m.openSet(templateSetID)
	for _, t := range []uint16{templateIPv4, templateIPv6} {
		fs := templateFields(t == templateIPv6, e.EnterpriseNumber)
		m.b = binary.BigEndian.AppendUint16(m.b, t)
		m.b = binary.BigEndian.AppendUint16(m.b, uint16(len(fs)))
		m.b = appendFields(m.b, fs)
	}
	m.openSet(optionsSetID)
	m.b = binary.BigEndian.AppendUint16(m.b, templateSliceIDs)
	m.b = binary.BigEndian.AppendUint16(m.b, uint16(len(sliceIDFields)))
	m.b = binary.BigEndian.AppendUint16(m.b, 1) // one scope field
	m.b = appendFields(m.b, sliceIDFields)
	return m.finish()
}

// Messages encodes names (slices whose number a collector should learn:
// option records, first) and flows into as few messages as MaxMessage
// allows, and advances the sequence number by the data records sent.
func (e *Encoder) Messages(now time.Time, names []string, flows []Flow) [][]byte {
	var out [][]byte
	m := e.begin(now)
	flush := func() {
		if m.records > 0 {
			out = append(out, m.finish())
			e.seq += m.records
		}
		m = e.begin(now)
	}
	for _, n := range names {
		const size = 4 + 4 + vrfNameLen
		if !m.fits(size) {
			flush()
		}
		m.openSet(templateSliceIDs)
		m.b = binary.BigEndian.AppendUint32(m.b, e.ObservationDomain)
		m.b = binary.BigEndian.AppendUint32(m.b, SliceID(n))
		name := make([]byte, vrfNameLen)
		copy(name[:vrfNameLen-1], n) // NUL-terminated, zero-padded
		m.b = append(m.b, name...)
		m.records++
	}
	for i := range flows {
		f := &flows[i]
		v6 := !f.Src.Addr().Is4()
		size := recordSize(v6, f.Slice)
		if !m.fits(size) {
			flush()
		}
		if v6 {
			m.openSet(templateIPv6)
		} else {
			m.openSet(templateIPv4)
		}
		m.b = appendFlow(m.b, f, v6)
		m.records++
	}
	flush()
	return out
}

// recordSize is a flow record's size in bytes.
func recordSize(v6 bool, slice string) int {
	addr := 4
	if v6 {
		addr = 16
	}
	n := 3*addr + 2 + 2 + 1 + 6*8 + 2 + 4 + 1 + len(slice)
	if len(slice) >= 255 {
		n += 2
	}
	return n
}

// addrBytes is a's bytes in the family's length, zero when a is not of it.
func addrBytes(a netip.Addr, v6 bool) []byte {
	switch {
	case v6 && a.Is6() && !a.Is4In6():
		b := a.As16()
		return b[:]
	case v6:
		return make([]byte, 16)
	case a.Is4() || a.Is4In6():
		b := a.Unmap().As4()
		return b[:]
	}
	return make([]byte, 4)
}

func appendFlow(b []byte, f *Flow, v6 bool) []byte {
	b = append(b, addrBytes(f.Src.Addr(), v6)...)
	b = append(b, addrBytes(f.Dst.Addr(), v6)...)
	b = binary.BigEndian.AppendUint16(b, f.Src.Port())
	b = binary.BigEndian.AppendUint16(b, f.Dst.Port())
	b = append(b, f.Proto)
	for _, v := range []uint64{f.Octets, f.Packets, f.ReverseOctets, f.ReversePackets, uint64(max(0, f.Start.UnixMilli())), uint64(max(0, f.End.UnixMilli()))} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = append(b, addrBytes(f.PostNATSrc.Addr(), v6)...)
	b = binary.BigEndian.AppendUint16(b, f.PostNATSrc.Port())
	b = binary.BigEndian.AppendUint32(b, SliceID(f.Slice))
	if n := len(f.Slice); n < 255 {
		b = append(b, byte(n))
	} else {
		b = append(b, 0xFF)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	return append(b, f.Slice...)
}
