package wire

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// IP protocol numbers (IANA), which IPv6 calls next header values.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
)

// TCP (RFC 9293 3.1): the flags byte, and where the checksum is.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80

	TCPChecksumOffset = 16
)

// TCP is a view of a TCP segment whose data offset ParseTCP checked.
type TCP []byte

// ParseTCP returns the TCP segment b. It returns ErrTooShort if b is
// shorter than TCPMinLen and ErrBadHeader if the data offset is under 5
// words or past b.
func ParseTCP(b []byte) (TCP, error) {
	if len(b) < TCPMinLen {
		return nil, ErrTooShort
	}
	doff := int(b[12]>>4) * 4
	if doff < TCPMinLen || doff > len(b) {
		return nil, ErrBadHeader
	}
	return TCP(b), nil
}

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// HeaderLen returns the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[12]>>4) * 4 }

// Flags returns the flags byte (TCPFlagFIN ... TCPFlagCWR).
func (t TCP) Flags() uint8 { return t[13] }

// Window returns the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// Payload returns the data after the header.
func (t TCP) Payload() []byte { return t[t.HeaderLen():] }

// SetSrcPort sets the source port.
func (t TCP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(t[0:2], p) }

// SetDstPort sets the destination port.
func (t TCP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(t[2:4], p) }

// SetSeq sets the sequence number.
func (t TCP) SetSeq(s uint32) { binary.BigEndian.PutUint32(t[4:8], s) }

// SetFlags sets the flags byte.
func (t TCP) SetFlags(f uint8) { t[13] = f }

// SetChecksum sets the checksum field.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:18], c) }

// UDPChecksumOffset is the offset of the checksum in a UDP header (RFC
// 768).
const UDPChecksumOffset = 6

// UDP is a view of a UDP datagram of at least UDPLen bytes.
type UDP []byte

// ParseUDP returns the UDP datagram b. It returns ErrTooShort if b is
// shorter than UDPLen. The length field is not checked against len(b):
// the IP header's length is the one callers trust.
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPLen {
		return nil, ErrTooShort
	}
	return UDP(b), nil
}

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length returns the length field.
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[4:6])) }

// Checksum returns the checksum field (0: none, over IPv4).
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// Payload returns the data after the header.
func (u UDP) Payload() []byte { return u[UDPLen:] }

// SetSrcPort sets the source port.
func (u UDP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(u[0:2], p) }

// SetDstPort sets the destination port.
func (u UDP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(u[2:4], p) }

// SetLength sets the length field.
func (u UDP) SetLength(n int) { binary.BigEndian.PutUint16(u[4:6], uint16(n)) }

// SetChecksum sets the checksum field.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[6:8], c) }

// PutUDP writes a UDP header for a datagram of n bytes (header included)
// into b[:UDPLen] and, the payload being in place at b[UDPLen:n], its
// checksum over the pseudo-header sum pseudo (IPv4.PseudoSum,
// IPv6.PseudoSum, checksum.PseudoHeaderIPv4); a computed 0 is sent as
// 0xffff (RFC 768).
func PutUDP(b []byte, n int, sport, dport uint16, pseudo uint32) {
	u := UDP(b[:n])
	u.SetSrcPort(sport)
	u.SetDstPort(dport)
	u.SetLength(n)
	u.SetChecksum(0)
	u.SetChecksum(UDPChecksum(u, pseudo))
}

// UDPChecksum returns the checksum of a UDP datagram seg, whose checksum
// field is zero, over the pseudo-header sum pseudo; a computed 0 is
// returned as 0xffff, since 0 means "no checksum" (RFC 768).
func UDPChecksum(seg []byte, pseudo uint32) uint16 {
	c := checksum.Checksum(seg, pseudo)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages share their first 8
// bytes: type, code, checksum, and 4 bytes that are an identifier and a
// sequence number for echo, a pointer, an MTU or unused for errors.
const (
	ICMPEchoReply      uint8 = 0
	ICMPUnreachable    uint8 = 3
	ICMPEchoRequest    uint8 = 8
	ICMPTimeExceeded   uint8 = 11
	ICMPParamProblem   uint8 = 12
	ICMPCodeNet        uint8 = 0 // destination unreachable: net
	ICMPCodeProtocol   uint8 = 2 // destination unreachable: protocol
	ICMPCodePort       uint8 = 3 // destination unreachable: port
	ICMPCodeFragNeeded uint8 = 4 // destination unreachable: fragmentation needed (RFC 1191)

	ICMPv6Unreachable           uint8 = 1
	ICMPv6PacketTooBig          uint8 = 2
	ICMPv6TimeExceeded          uint8 = 3
	ICMPv6ParamProblem          uint8 = 4
	ICMPv6EchoRequest           uint8 = 128
	ICMPv6EchoReply             uint8 = 129
	ICMPv6MLDQuery              uint8 = 130 // RFC 2710 3.6; RFC 3810 5.1 (v2)
	ICMPv6MLDReport             uint8 = 131 // MLDv1, to the group (RFC 2710 3.7)
	ICMPv6MLDDone               uint8 = 132 // MLDv1, to ff02::2 (RFC 2710 3.8)
	ICMPv6MLDv2Report           uint8 = 143 // to ff02::16 (RFC 3810 5.2.14)
	ICMPv6RouterSolicitation    uint8 = 133
	ICMPv6RouterAdvertisement   uint8 = 134
	ICMPv6NeighborSolicitation  uint8 = 135
	ICMPv6NeighborAdvertisement uint8 = 136
	ICMPv6Redirect              uint8 = 137
)

// ICMP is a view of an ICMPv4 or ICMPv6 message of at least ICMPLen bytes.
type ICMP []byte

// ParseICMP returns the ICMP message b. It returns ErrTooShort if b is
// shorter than ICMPLen.
func ParseICMP(b []byte) (ICMP, error) {
	if len(b) < ICMPLen {
		return nil, ErrTooShort
	}
	return ICMP(b), nil
}

// Type returns the type.
func (m ICMP) Type() uint8 { return m[0] }

// Code returns the code.
func (m ICMP) Code() uint8 { return m[1] }

// Checksum returns the checksum field.
func (m ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// ID returns the identifier of an echo message.
func (m ICMP) ID() uint16 { return binary.BigEndian.Uint16(m[4:6]) }

// Seq returns the sequence number of an echo message.
func (m ICMP) Seq() uint16 { return binary.BigEndian.Uint16(m[6:8]) }

// Rest returns bytes 4 to 8 (an MTU, a pointer, or unused).
func (m ICMP) Rest() uint32 { return binary.BigEndian.Uint32(m[4:8]) }

// Body returns the bytes after the header: an echo's data, an error's
// quoted packet.
func (m ICMP) Body() []byte { return m[ICMPLen:] }

// SetType sets the type and the code.
func (m ICMP) SetType(typ, code uint8) { m[0], m[1] = typ, code }

// SetID sets the identifier of an echo message.
func (m ICMP) SetID(id uint16) { binary.BigEndian.PutUint16(m[4:6], id) }

// SetRest sets bytes 4 to 8.
func (m ICMP) SetRest(v uint32) { binary.BigEndian.PutUint32(m[4:8], v) }

// SetChecksum sets the checksum field.
func (m ICMP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(m[2:4], c) }

// Valid4 reports whether the ICMPv4 checksum (over the message alone) is
// correct.
func (m ICMP) Valid4() bool { return checksum.Checksum(m, 0) == 0 }

// UpdateChecksum4 computes the ICMPv4 checksum again (no pseudo-header).
func (m ICMP) UpdateChecksum4() {
	m.SetChecksum(0)
	m.SetChecksum(checksum.Checksum(m, 0))
}

// UpdateChecksum6 computes the ICMPv6 checksum again over the
// pseudo-header sum pseudo (IPv6.PseudoSum with ProtoICMPv6).
func (m ICMP) UpdateChecksum6(pseudo uint32) {
	m.SetChecksum(0)
	m.SetChecksum(checksum.Checksum(m, pseudo))
}
