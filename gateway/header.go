package gateway

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// Byte-level layout of the headers the gateway reads and writes. Every
// function here works on a slice the caller has bounds-checked.

const (
	ethHdrLen  = 14
	ipv4MinHdr = 20
	icmpHdrLen = 8
	udpHdrLen  = 8
	tcpMinHdr  = 20

	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd

	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	icmpEchoReply   = 0
	icmpUnreachable = 3
	icmpEchoRequest = 8

	// Codes of ICMP destination unreachable (RFC 792).
	codeNetUnreachable   = 0
	codeProtoUnreachable = 2
	codePortUnreachable  = 3

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	// defaultTTL is the TTL of packets the gateway originates (the
	// kernel's net.ipv4.ip_default_ttl).
	defaultTTL = 64

	// tosInternetControl is IP precedence 6, which RFC 1812 4.3.2.5 asks
	// of ICMP errors (the kernel's IPTOS_PREC_INTERNETCONTROL).
	tosInternetControl = 0xc0

	// maxICMPErrorLen bounds an ICMP error datagram (RFC 1812 4.3.2.3).
	maxICMPErrorLen = 576
)

// putEthernet writes an Ethernet II header into b[:14].
func putEthernet(b []byte, dst, src [6]byte, etherType uint16) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
}

// ipv4Header describes the fields of an IPv4 header without options that
// the gateway originates.
type ipv4Header struct {
	tos      uint8
	totalLen uint16
	id       uint16
	ttl      uint8
	proto    uint8
	src, dst [4]byte
}

// put writes h into b[:20] with no options, no fragmentation and a correct
// header checksum.
func (h *ipv4Header) put(b []byte) {
	b[0] = 0x45 // version 4, IHL 5
	b[1] = h.tos
	binary.BigEndian.PutUint16(b[2:4], h.totalLen)
	binary.BigEndian.PutUint16(b[4:6], h.id)
	binary.BigEndian.PutUint16(b[6:8], 0) // flags and fragment offset
	b[8] = h.ttl
	b[9] = h.proto
	b[10], b[11] = 0, 0
	copy(b[12:16], h.src[:])
	copy(b[16:20], h.dst[:])
	binary.BigEndian.PutUint16(b[10:12], ipv4HeaderChecksum(b[:ipv4MinHdr]))
}

// ipv4HeaderChecksum returns the checksum of the IPv4 header hdr (options
// included); computed over a header whose checksum field holds a correct
// value it returns 0.
func ipv4HeaderChecksum(hdr []byte) uint16 {
	return checksum.Checksum(hdr, 0)
}

// transportChecksum returns the checksum of a TCP or UDP segment, pseudo-header
// included, over seg whose checksum field is zero; over a segment holding a
// correct checksum it returns 0.
func transportChecksum(seg []byte, proto uint8, src, dst [4]byte) uint16 {
	return checksum.Checksum(seg, checksum.PseudoHeaderIPv4(src, dst, proto, uint16(len(seg))))
}

// ipv4View is a parsed, validated IPv4 datagram within a frame.
type ipv4View struct {
	hdr      []byte // the header, options included
	payload  []byte // the payload, up to the total length (Ethernet padding removed)
	datagram []byte // hdr and payload
	proto    uint8
	src, dst [4]byte
	fragOff  uint16 // fragment offset in 8-byte units
	moreFrag bool
}

// parseIPv4 validates the IPv4 datagram at the start of b: version, IHL,
// total length against len(b), and the header checksum.
func parseIPv4(b []byte) (v ipv4View, reason counter) {
	if len(b) < ipv4MinHdr {
		return v, cntMalformed
	}
	if b[0]>>4 != 4 {
		return v, cntBadIPv4
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < ipv4MinHdr || total < ihl || total > len(b) {
		return v, cntBadIPv4
	}
	if ipv4HeaderChecksum(b[:ihl]) != 0 {
		return v, cntBadChecksum
	}
	frag := binary.BigEndian.Uint16(b[6:8])
	v.hdr = b[:ihl]
	v.payload = b[ihl:total]
	v.datagram = b[:total]
	v.proto = b[9]
	copy(v.src[:], b[12:16])
	copy(v.dst[:], b[16:20])
	v.fragOff = frag & 0x1fff
	v.moreFrag = frag&0x2000 != 0
	return v, cntNone
}

// isFragment reports whether v is any fragment, the first one included.
func (v *ipv4View) isFragment() bool { return v.fragOff != 0 || v.moreFrag }

// icmpChecksum returns the checksum of the ICMP message m (no
// pseudo-header); over a message holding a correct checksum it returns 0.
func icmpChecksum(m []byte) uint16 {
	return checksum.Checksum(m, 0)
}
