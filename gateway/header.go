package gateway

import (
	"errors"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// The gateway's own constants; header layouts and protocol numbers are
// package wire's.
const (
	// tosInternetControl is IP precedence 6, which RFC 1812 4.3.2.5 asks
	// of ICMP errors (the kernel's IPTOS_PREC_INTERNETCONTROL).
	tosInternetControl = 0xc0

	// maxICMPErrorLen bounds an ICMP error datagram (RFC 1812 4.3.2.3).
	maxICMPErrorLen = 576
)

// transportChecksum returns the checksum of a TCP or UDP segment, pseudo-header
// included, over seg whose checksum field is zero; over a segment holding a
// correct checksum it returns 0.
func transportChecksum(seg []byte, proto uint8, src, dst [4]byte) uint16 {
	return checksum.Checksum(seg, checksum.PseudoHeaderIPv4(src, dst, proto, uint16(len(seg))))
}

// ipv4View is a parsed, validated IPv4 datagram within a frame, with the
// fields the gateway reads copied out of it.
type ipv4View struct {
	ip       wire.IPv4 // the datagram, header and payload
	payload  []byte    // the payload, up to the total length (Ethernet padding removed)
	datagram []byte    // hdr and payload
	proto    uint8
	src, dst [4]byte
	fragOff  uint16 // fragment offset in 8-byte units
	moreFrag bool
}

// parseIPv4 validates the IPv4 datagram at the start of b (wire.ParseIPv4:
// version, IHL, total length against len(b)) and its header checksum.
func parseIPv4(b []byte) (v ipv4View, reason counter) {
	ip, err := wire.ParseIPv4(b)
	switch {
	case errors.Is(err, wire.ErrTooShort):
		return v, cntMalformed
	case err != nil:
		return v, cntBadIPv4
	case !ip.HeaderValid():
		return v, cntBadChecksum
	}
	v.ip = ip
	v.payload = ip.Payload()
	v.datagram = ip
	v.proto = ip.Protocol()
	v.src, v.dst = ip.Src(), ip.Dst()
	v.fragOff = ip.FragOff()
	v.moreFrag = ip.MoreFragments()
	return v, cntNone
}

// isFragment reports whether v is any fragment, the first one included.
func (v *ipv4View) isFragment() bool { return v.fragOff != 0 || v.moreFrag }
