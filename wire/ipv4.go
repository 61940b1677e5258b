package wire

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// IPv4 (RFC 791).
// The flags and fragment offset field.
const (
	IPv4FlagDF      = 0x4000 // Don't Fragment
	IPv4FlagMF      = 0x2000 // More Fragments
	IPv4FragOffMask = 0x1fff // the fragment offset, in 8-byte units
)

// DefaultTTL is the TTL of datagrams this program originates (the kernel's
// net.ipv4.ip_default_ttl).
const DefaultTTL = 64

// IPv4 is a view of an IPv4 datagram: a header whose version, IHL and total
// length ParseIPv4 checked, and the payload up to the total length. Its
// accessors never read past the header; the setters change the field only
// (the header checksum is the caller's: SetChecksum, UpdateChecksum).
type IPv4 []byte

// ParseIPv4 returns the IPv4 datagram at the start of b, cut to its total
// length (Ethernet padding removed). It returns ErrTooShort if b is shorter
// than IPv4MinLen and ErrBadHeader if the version is not 4, the IHL is under
// 5 or the total length is under the IHL or over len(b). It does not check
// the header checksum (HeaderValid does).
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4MinLen {
		return nil, ErrTooShort
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if b[0]>>4 != 4 || ihl < IPv4MinLen || total < ihl || total > len(b) {
		return nil, ErrBadHeader
	}
	return IPv4(b[:total]), nil
}

// HeaderLen returns the header length in bytes, options included.
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TOS returns the type of service byte (DSCP and ECN).
func (h IPv4) TOS() uint8 { return h[1] }

// TotalLen returns the total length field.
func (h IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(h[2:4])) }

// ID returns the identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[4:6]) }

// FlagsFrag returns the flags and fragment offset field.
func (h IPv4) FlagsFrag() uint16 { return binary.BigEndian.Uint16(h[6:8]) }

// FragOff returns the fragment offset in 8-byte units.
func (h IPv4) FragOff() uint16 { return h.FlagsFrag() & IPv4FragOffMask }

// MoreFragments reports whether MF is set.
func (h IPv4) MoreFragments() bool { return h.FlagsFrag()&IPv4FlagMF != 0 }

// DontFragment reports whether DF is set.
func (h IPv4) DontFragment() bool { return h.FlagsFrag()&IPv4FlagDF != 0 }

// IsFragment reports whether h is a fragment, the first one included.
func (h IPv4) IsFragment() bool { return h.FlagsFrag()&(IPv4FlagMF|IPv4FragOffMask) != 0 }

// TTL returns the time to live.
func (h IPv4) TTL() uint8 { return h[8] }

// Protocol returns the protocol of the payload.
func (h IPv4) Protocol() uint8 { return h[9] }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[10:12]) }

// Src returns the source address.
func (h IPv4) Src() [4]byte { return [4]byte(h[12:16]) }

// Dst returns the destination address.
func (h IPv4) Dst() [4]byte { return [4]byte(h[16:20]) }

// Header returns the header, options included.
func (h IPv4) Header() []byte { return h[:h.HeaderLen()] }

// Payload returns the bytes after the header.
func (h IPv4) Payload() []byte { return h[h.HeaderLen():] }

// HeaderValid reports whether the header checksum is correct.
func (h IPv4) HeaderValid() bool { return checksum.Checksum(h.Header(), 0) == 0 }

// SetTotalLen sets the total length field.
func (h IPv4) SetTotalLen(n int) { binary.BigEndian.PutUint16(h[2:4], uint16(n)) }

// SetID sets the identification field.
func (h IPv4) SetID(id uint16) { binary.BigEndian.PutUint16(h[4:6], id) }

// SetFlagsFrag sets the flags and fragment offset field.
func (h IPv4) SetFlagsFrag(v uint16) { binary.BigEndian.PutUint16(h[6:8], v) }

// SetSrc sets the source address.
func (h IPv4) SetSrc(a [4]byte) { copy(h[12:16], a[:]) }

// SetDst sets the destination address.
func (h IPv4) SetDst(a [4]byte) { copy(h[16:20], a[:]) }

// SetChecksum sets the header checksum field.
func (h IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[10:12], c) }

// UpdateChecksum computes the header checksum again, over the whole header.
func (h IPv4) UpdateChecksum() {
	h.SetChecksum(0)
	h.SetChecksum(checksum.Checksum(h.Header(), 0))
}

// AdjustChecksum applies an RFC 1624 delta (checksum.Delta16, DeltaAddr4)
// to the header checksum.
func (h IPv4) AdjustChecksum(delta uint32) { h.SetChecksum(checksum.Update(h.Checksum(), delta)) }

// DecTTL decrements the TTL and updates the header checksum incrementally
// (RFC 1624 equation 3, RFC 1812 5.3.1). The caller checks TTL() > 1.
func (h IPv4) DecTTL() {
	old := binary.BigEndian.Uint16(h[8:10])
	h[8]--
	h.AdjustChecksum(checksum.Delta16(old, binary.BigEndian.Uint16(h[8:10])))
}

// PseudoSum returns the partial sum of the pseudo-header (RFC 9293 3.1,
// RFC 768) for a transport segment of length n in h: source, destination,
// protocol, length.
func (h IPv4) PseudoSum(n int) uint32 {
	return checksum.PseudoHeaderIPv4(h.Src(), h.Dst(), h.Protocol(), uint16(n))
}

// IPv4Header holds the fields of an IPv4 header without options, for Put.
type IPv4Header struct {
	TOS       uint8
	TotalLen  uint16
	ID        uint16
	FlagsFrag uint16 // flags and fragment offset
	TTL       uint8
	Protocol  uint8
	Src, Dst  [4]byte
}

// Put writes h into b[:IPv4MinLen] (version 4, IHL 5) with its header
// checksum.
func (h *IPv4Header) Put(b []byte) {
	_ = b[IPv4MinLen-1]
	b[0], b[1] = 0x45, h.TOS
	binary.BigEndian.PutUint16(b[2:4], h.TotalLen)
	binary.BigEndian.PutUint16(b[4:6], h.ID)
	binary.BigEndian.PutUint16(b[6:8], h.FlagsFrag)
	b[8], b[9] = h.TTL, h.Protocol
	b[10], b[11] = 0, 0
	copy(b[12:16], h.Src[:])
	copy(b[16:20], h.Dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum.Checksum(b[:IPv4MinLen], 0))
}

// Fragmenter cuts an IPv4 datagram into fragments of at most an MTU, one
// per call to Next (RFC 791 3.2): every fragment has a copy of the header
// with its own total length, fragment offset, MF flag and checksum; the
// payload is cut at multiples of 8 bytes; DF is cleared. A datagram that is itself a
// fragment keeps its offset and, on the last piece, its MF flag.
//
// The zero value is ready for Reset. A Fragmenter keeps a reference to the
// datagram until the next Reset and does not modify it. It is not safe for
// concurrent use.
type Fragmenter struct {
	d     IPv4
	chunk int
	off   int // offset in the payload of the next fragment
	base  uint16
	mf    bool
	done  bool
}

// Reset prepares f to fragment d for an MTU of mtu bytes. It returns
// ErrOptions if d has options (they would have to be filtered by their copy
// flag, RFC 791 3.1) and ErrBadHeader if mtu leaves no room for 8 bytes of
// payload; Next then returns 0.
func (f *Fragmenter) Reset(d IPv4, mtu int) error {
	*f = Fragmenter{done: true}
	if d.HeaderLen() != IPv4MinLen {
		return ErrOptions
	}
	chunk := (mtu - IPv4MinLen) &^ 7
	if chunk <= 0 {
		return ErrBadHeader
	}
	ff := d.FlagsFrag()
	*f = Fragmenter{d: d, chunk: chunk, base: ff & IPv4FragOffMask, mf: ff&IPv4FlagMF != 0, done: len(d) == IPv4MinLen}
	return nil
}

// Next writes the next fragment into dst, which must not overlap the
// datagram and must have room for the MTU, and returns its length; 0 when
// every fragment has been written.
func (f *Fragmenter) Next(dst []byte) int {
	if f.done {
		return 0
	}
	payload := f.d[IPv4MinLen:]
	end := min(f.off+f.chunk, len(payload))
	n := IPv4MinLen + end - f.off
	out := IPv4(dst[:n])
	copy(out, f.d[:IPv4MinLen])
	copy(out[IPv4MinLen:], payload[f.off:end])
	out.SetTotalLen(n)
	ff := f.base + uint16(f.off/8) // DF cleared: the datagram is being fragmented
	if end < len(payload) || f.mf {
		ff |= IPv4FlagMF
	}
	out.SetFlagsFrag(ff)
	out.UpdateChecksum()
	f.off = end
	f.done = end >= len(payload)
	return n
}

// ParseIPv4Quoted returns the IPv4 header at the start of b, a datagram
// quoted in an ICMP error (RFC 792, RFC 1812 4.3.2.3: its header and at
// least the first 8 bytes of its payload, often not all of it). The total
// length is not checked against b, and the view is not cut to it: Payload
// returns what was quoted. It returns ErrTooShort if b is shorter than
// IPv4MinLen or than the header and 8 bytes, and ErrBadHeader if the
// version is not 4 or the IHL is under 5.
func ParseIPv4Quoted(b []byte) (IPv4, error) {
	if len(b) < IPv4MinLen {
		return nil, ErrTooShort
	}
	ihl := int(b[0]&0x0f) * 4
	if b[0]>>4 != 4 || ihl < IPv4MinLen {
		return nil, ErrBadHeader
	}
	if len(b) < ihl+8 {
		return nil, ErrTooShort
	}
	return IPv4(b), nil
}
