package wire

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// IPv6 (RFC 8200).
const (
	// IPv6MinMTU is the smallest link MTU IPv6 allows (RFC 8200 5).
	IPv6MinMTU = 1280
	// MaxExtHeaders bounds how many extension headers Upper walks; a
	// packet with more is refused (ErrBadHeader) rather than walked.
	MaxExtHeaders = 16
)

// IPv6 is a view of an IPv6 packet: the fixed header, whose version and
// payload length ParseIPv6 checked, and the payload (extension headers
// included) up to the payload length.
type IPv6 []byte

// ParseIPv6 returns the IPv6 packet at the start of b, cut to 40 bytes plus
// its payload length (Ethernet padding removed). It returns ErrTooShort if
// b is shorter than IPv6Len and ErrBadHeader if the version is not 6 or the
// payload length runs past b. Jumbograms (RFC 2675: payload length 0 and a
// Hop-by-Hop option) are not supported: their payload is empty here.
func ParseIPv6(b []byte) (IPv6, error) {
	if len(b) < IPv6Len {
		return nil, ErrTooShort
	}
	total := IPv6Len + int(binary.BigEndian.Uint16(b[4:]))
	if b[0]>>4 != 6 || total > len(b) {
		return nil, ErrBadHeader
	}
	return IPv6(b[:total]), nil
}

// IPVersion returns the version field of the IP packet b (4 or 6 for
// what this switch reads), or 0 when b is empty.
func IPVersion(b []byte) uint8 {
	if len(b) == 0 {
		return 0
	}
	return b[0] >> 4
}

// TrafficClass returns the traffic class (DSCP and ECN).
func (h IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(h[0:2]) >> 4) }

// FlowLabel returns the 20-bit flow label.
func (h IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(h[0:4]) & 0xfffff }

// PayloadLen returns the payload length field.
func (h IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(h[4:6])) }

// NextHeader returns the next header field of the fixed header: the first
// extension header's type, or the upper-layer protocol.
func (h IPv6) NextHeader() uint8 { return h[6] }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[7] }

// Src returns the source address.
func (h IPv6) Src() [16]byte { return [16]byte(h[8:24]) }

// Dst returns the destination address.
func (h IPv6) Dst() [16]byte { return [16]byte(h[24:40]) }

// Payload returns the bytes after the fixed header.
func (h IPv6) Payload() []byte { return h[IPv6Len:] }

// SetPayloadLen sets the payload length field.
func (h IPv6) SetPayloadLen(n int) { binary.BigEndian.PutUint16(h[4:6], uint16(n)) }

// SetHopLimit sets the hop limit.
func (h IPv6) SetHopLimit(v uint8) { h[7] = v }

// SetSrc sets the source address.
func (h IPv6) SetSrc(a [16]byte) { copy(h[8:24], a[:]) }

// SetDst sets the destination address.
func (h IPv6) SetDst(a [16]byte) { copy(h[24:40], a[:]) }

// PseudoSum returns the partial sum of the pseudo-header (RFC 8200 8.1) for
// an upper-layer packet of protocol proto and length n in h.
func (h IPv6) PseudoSum(proto uint8, n int) uint32 {
	return checksum.PseudoHeaderIPv6(h.Src(), h.Dst(), proto, uint32(n))
}

// IPv6Upper is where an IPv6 packet's upper-layer header is, found by
// walking its extension headers (IPv6.Upper).
type IPv6Upper struct {
	// Proto is the upper-layer protocol: the next header value after
	// the last extension header walked (ProtoNoNext when there is none,
	// ProtoESP when the rest is encrypted).
	Proto uint8
	// Offset is the offset of the upper-layer header from the start of
	// the IPv6 header.
	Offset int
	// Fragment is set when the packet has a Fragment header; FragOff (in
	// 8-byte units), MoreFragments and FragID are its fields. A fragment
	// with FragOff > 0 has no upper-layer header: Offset then points at
	// its fragmentable part.
	Fragment      bool
	FragOff       uint16
	MoreFragments bool
	FragID        uint32
}

// HasHeader reports whether the upper-layer header starts at Offset (the
// packet is not a later fragment, and its protocol is neither ESP nor No
// Next Header).
func (u *IPv6Upper) HasHeader() bool {
	return u.FragOff == 0 && u.Proto != ProtoESP && u.Proto != ProtoNoNext
}

// Upper walks the extension headers of h (RFC 8200 4: Hop-by-Hop Options,
// first only; Routing; Fragment; Destination Options; Authentication,
// RFC 4302) to the upper-layer protocol. It stops at a Fragment header with
// a non-zero offset, at ESP and at No Next Header. It returns ErrBadHeader
// if an extension header runs past the payload, if Hop-by-Hop is not first,
// or if there are more than MaxExtHeaders.
func (h IPv6) Upper() (IPv6Upper, error) {
	u := IPv6Upper{Proto: h.NextHeader(), Offset: IPv6Len}
	for n := 0; ; n++ {
		var l int
		switch u.Proto {
		case ProtoHopByHop:
			if n > 0 {
				return u, ErrBadHeader
			}
			fallthrough
		case ProtoRouting, ProtoDstOpts:
			if len(h) < u.Offset+8 {
				return u, ErrBadHeader
			}
			l = (int(h[u.Offset+1]) + 1) * 8
		case ProtoAH:
			if len(h) < u.Offset+8 {
				return u, ErrBadHeader
			}
			l = (int(h[u.Offset+1]) + 2) * 4
		case ProtoFragment:
			if len(h) < u.Offset+IPv6FragmentLen {
				return u, ErrBadHeader
			}
			f := h[u.Offset:]
			off := binary.BigEndian.Uint16(f[2:4])
			u.Fragment = true
			u.FragOff = off >> 3
			u.MoreFragments = off&1 != 0
			u.FragID = binary.BigEndian.Uint32(f[4:8])
			l = IPv6FragmentLen
		default:
			return u, nil
		}
		if n >= MaxExtHeaders || len(h) < u.Offset+l {
			return u, ErrBadHeader
		}
		u.Proto = h[u.Offset]
		u.Offset += l
		if u.Proto == ProtoFragment && u.Fragment {
			return u, ErrBadHeader // two Fragment headers
		}
		if u.Fragment && u.FragOff != 0 {
			return u, nil
		}
	}
}

// IPv6Header holds the fields of a fixed IPv6 header, for Put.
type IPv6Header struct {
	TrafficClass uint8
	FlowLabel    uint32
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     [16]byte
}

// Put writes h into b[:IPv6Len].
func (h *IPv6Header) Put(b []byte) {
	_ = b[IPv6Len-1]
	binary.BigEndian.PutUint32(b[0:4], 6<<28|uint32(h.TrafficClass)<<20|h.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(b[4:6], h.PayloadLen)
	b[6], b[7] = h.NextHeader, h.HopLimit
	copy(b[8:24], h.Src[:])
	copy(b[24:40], h.Dst[:])
}

// PutIPv6Fragment writes a Fragment extension header (RFC 8200 4.5) into
// b[:IPv6FragmentLen]: the next header of the fragmentable part, the
// offset in 8-byte units, the M flag and the identification.
func PutIPv6Fragment(b []byte, next uint8, off uint16, more bool, id uint32) {
	_ = b[IPv6FragmentLen-1]
	b[0], b[1] = next, 0
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:4], v)
	binary.BigEndian.PutUint32(b[4:8], id)
}

// Fragmenter6 cuts an IPv6 packet into fragments of at most an MTU, one per
// call to Next, as its source does (RFC 8200 4.5; routers never fragment
// IPv6): every fragment carries the unfragmentable part (the fixed header
// and any Hop-by-Hop and Routing headers, with the Destination Options
// headers before a Routing header), its last next header set to Fragment,
// then a Fragment header and a piece of the rest, cut at multiples of 8
// bytes.
//
// The zero value is ready for Reset. A Fragmenter6 keeps a reference to the
// packet until the next Reset and does not modify it. It is not safe for
// concurrent use.
type Fragmenter6 struct {
	p      IPv6
	unfrag int   // length of the unfragmentable part
	nhOff  int   // offset of the next header field that becomes Fragment
	next   uint8 // next header of the fragmentable part
	id     uint32
	chunk  int
	off    int // offset in the fragmentable part of the next fragment
	done   bool
}

// Reset prepares f to fragment p for an MTU of mtu bytes with the
// identification id. It returns ErrBadHeader if p's extension headers run
// past it or include a Fragment header already, or if mtu leaves no room for
// 8 bytes of data; Next then returns 0.
func (f *Fragmenter6) Reset(p IPv6, mtu int, id uint32) error {
	*f = Fragmenter6{done: true}
	if len(p) < IPv6Len {
		return ErrTooShort
	}
	nh, cur := p.NextHeader(), IPv6Len
	unfrag, unfragNH := IPv6Len, 6
	for n := 0; nh == ProtoHopByHop || nh == ProtoRouting || nh == ProtoDstOpts; n++ {
		if n >= MaxExtHeaders || len(p) < cur+8 {
			return ErrBadHeader
		}
		l := (int(p[cur+1]) + 1) * 8
		if len(p) < cur+l {
			return ErrBadHeader
		}
		if nh != ProtoDstOpts {
			unfrag, unfragNH = cur+l, cur
		}
		nh, cur = p[cur], cur+l
	}
	if nh == ProtoFragment {
		return ErrBadHeader
	}
	chunk := (mtu - unfrag - IPv6FragmentLen) &^ 7
	if chunk <= 0 {
		return ErrBadHeader
	}
	*f = Fragmenter6{p: p, unfrag: unfrag, nhOff: unfragNH, next: p[unfragNH], id: id, chunk: chunk}
	return nil
}

// Next writes the next fragment into dst, which must not overlap the packet
// and must have room for the MTU, and returns its length; 0 when every
// fragment has been written.
func (f *Fragmenter6) Next(dst []byte) int {
	if f.done {
		return 0
	}
	rest := f.p[f.unfrag:]
	end := min(f.off+f.chunk, len(rest))
	n := f.unfrag + IPv6FragmentLen + end - f.off
	out := IPv6(dst[:n])
	copy(out, f.p[:f.unfrag])
	out[f.nhOff] = ProtoFragment
	out.SetPayloadLen(n - IPv6Len)
	PutIPv6Fragment(out[f.unfrag:], f.next, uint16(f.off/8), end < len(rest), f.id)
	copy(out[f.unfrag+IPv6FragmentLen:], rest[f.off:end])
	f.off = end
	f.done = end >= len(rest)
	return n
}
