package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// A decoder of what the Encoder writes, for the tests: it reads templates as
// a collector does and applies them to the data sets, so a test checks the
// bytes on the wire, not the Encoder's own idea of them.

type decoded struct {
	seq, odid   uint32
	exportTime  uint32
	templates   map[uint16][]field
	optionScope map[uint16]int
	flows       []Flow
	names       map[uint32]string
	dataRecords int
}

func newDecoded() *decoded {
	return &decoded{templates: map[uint16][]field{}, optionScope: map[uint16]int{}, names: map[uint32]string{}}
}

// decode reads one message into d (templates persist across messages).
func (d *decoded) decode(msg []byte) error {
	if len(msg) < headerLen {
		return errors.New("short header")
	}
	if v := binary.BigEndian.Uint16(msg); v != version {
		return fmt.Errorf("version %d", v)
	}
	if n := int(binary.BigEndian.Uint16(msg[2:])); n != len(msg) {
		return fmt.Errorf("length %d, message %d bytes", n, len(msg))
	}
	d.exportTime, d.seq, d.odid = binary.BigEndian.Uint32(msg[4:]), binary.BigEndian.Uint32(msg[8:]), binary.BigEndian.Uint32(msg[12:])
	b := msg[headerLen:]
	for len(b) > 0 {
		if len(b) < setHeader {
			return errors.New("short set header")
		}
		id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if n <= setHeader || n > len(b) || n%4 != 0 {
			return fmt.Errorf("set %d: length %d of %d", id, n, len(b))
		}
		body := b[setHeader:n]
		b = b[n:]
		var err error
		switch {
		case id == templateSetID:
			err = d.readTemplates(body, false)
		case id == optionsSetID:
			err = d.readTemplates(body, true)
		case id >= 256:
			err = d.readData(id, body)
		default:
			err = fmt.Errorf("set id %d", id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoded) readTemplates(b []byte, options bool) error {
	for len(b) >= 4 {
		id, count := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		b = b[4:]
		if options {
			if len(b) < 2 {
				return errors.New("short options template")
			}
			d.optionScope[id] = int(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		var fs []field
		for range count {
			if len(b) < 4 {
				return errors.New("short field")
			}
			f := field{id: binary.BigEndian.Uint16(b), length: binary.BigEndian.Uint16(b[2:])}
			b = b[4:]
			if f.id&0x8000 != 0 {
				if len(b) < 4 {
					return errors.New("short PEN")
				}
				f.id &^= 0x8000
				f.pen = binary.BigEndian.Uint32(b)
				b = b[4:]
			}
			fs = append(fs, f)
		}
		d.templates[id] = fs
	}
	return nil
}

func (d *decoded) readData(id uint16, b []byte) error {
	fs, ok := d.templates[id]
	if !ok {
		return fmt.Errorf("data set %d before its template", id)
	}
	for len(b) >= 4 { // what is left below a record's minimum is padding
		var f Flow
		var sliceID uint32
		var name []byte
		var post netip.Addr
		var postPort uint16
		var src, dst netip.Addr
		var sp, dp uint16
		for _, fd := range fs {
			n := int(fd.length)
			if fd.length == variableLength {
				if len(b) < 1 {
					return errors.New("short variable length")
				}
				n, b = int(b[0]), b[1:]
				if n == 255 {
					if len(b) < 2 {
						return errors.New("short long length")
					}
					n, b = int(binary.BigEndian.Uint16(b)), b[2:]
				}
			}
			if len(b) < n {
				return fmt.Errorf("field %d: %d bytes left, need %d", fd.id, len(b), n)
			}
			v := b[:n]
			b = b[n:]
			num := func() uint64 {
				var x uint64
				for _, c := range v {
					x = x<<8 | uint64(c)
				}
				return x
			}
			addr := func() netip.Addr { a, _ := netip.AddrFromSlice(v); return a }
			switch {
			case fd.pen == reversePEN && fd.id == ieOctetDeltaCount:
				f.ReverseOctets = num()
			case fd.pen == reversePEN && fd.id == iePacketDeltaCount:
				f.ReversePackets = num()
			case fd.pen != 0 && fd.id == ieSliceName:
				name = v
			case fd.id == ieSourceIPv4Address || fd.id == ieSourceIPv6Address:
				src = addr()
			case fd.id == ieDestinationIPv4Address || fd.id == ieDestinationIPv6Address:
				dst = addr()
			case fd.id == ieSourceTransportPort:
				sp = uint16(num())
			case fd.id == ieDestinationTransportPort:
				dp = uint16(num())
			case fd.id == ieProtocolIdentifier:
				f.Proto = uint8(num())
			case fd.id == ieOctetDeltaCount:
				f.Octets = num()
			case fd.id == iePacketDeltaCount:
				f.Packets = num()
			case fd.id == ieFlowStartMilliseconds:
				f.Start = time.UnixMilli(int64(num())).UTC()
			case fd.id == ieFlowEndMilliseconds:
				f.End = time.UnixMilli(int64(num())).UTC()
			case fd.id == iePostNATSourceIPv4Address || fd.id == iePostNATSourceIPv6Address:
				post = addr()
			case fd.id == iePostNAPTSourceTransportPort:
				postPort = uint16(num())
			case fd.id == ieIngressVRFID:
				sliceID = uint32(num())
			case fd.id == ieVRFName:
				if i := indexZero(v); i >= 0 {
					v = v[:i]
				}
				name = v
			case fd.id == ieObservationDomainID:
			default:
				return fmt.Errorf("unknown field %d (PEN %d)", fd.id, fd.pen)
			}
		}
		d.dataRecords++
		if id == templateSliceIDs {
			d.names[sliceID] = string(name)
			continue
		}
		f.Src, f.Dst, f.Slice = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp), string(name)
		if !post.IsUnspecified() || postPort != 0 {
			f.PostNATSrc = netip.AddrPortFrom(post, postPort)
		}
		if SliceID(f.Slice) != sliceID {
			return fmt.Errorf("slice %q carries number %d, want %d", f.Slice, sliceID, SliceID(f.Slice))
		}
		d.flows = append(d.flows, f)
	}
	return nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
