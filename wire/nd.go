package wire

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// Neighbor Discovery (RFC 4861): the messages' fixed parts and options.
const (
	// NDHopLimit is the hop limit every ND message is sent with and must
	// arrive with (RFC 4861 6.1, 7.1: a message from off-link is refused).
	NDHopLimit = 255

	// NDOptSourceLL and the others are ND option types (RFC 4861 4.6).
	NDOptSourceLL   uint8 = 1
	NDOptTargetLL   uint8 = 2
	NDOptPrefixInfo uint8 = 3
	NDOptMTU        uint8 = 5

	// NAFlagRouter, NAFlagSolicited and NAFlagOverride are the flags of a
	// Neighbor Advertisement (RFC 4861 4.4), in its first reserved byte.
	NAFlagRouter    uint8 = 0x80
	NAFlagSolicited uint8 = 0x40
	NAFlagOverride  uint8 = 0x20

	// NSLen and NALen are the fixed lengths of a Neighbor Solicitation and
	// Advertisement (ICMP header and target address); RSLen and RALen
	// those of a Router Solicitation and Advertisement.
	NSLen = ICMPLen + 16
	NALen = ICMPLen + 16
	RSLen = ICMPLen
	RALen = ICMPLen + 8

	// NDLLOptLen is the length of a link-layer address option for
	// Ethernet; NDPrefixOptLen and NDMTUOptLen those of a prefix
	// information and an MTU option.
	NDLLOptLen     = 8
	NDPrefixOptLen = 32
	NDMTUOptLen    = 8
)

// ND is what ParseND found in an ND message.
type ND struct {
	// Type is the ICMPv6 type: RS, RA, NS, NA or redirect.
	Type uint8
	// Target is the target address of an NS, NA or redirect.
	Target [16]byte
	// Flags is the first byte after the checksum: R, S and O of an NA,
	// the hop limit of an RA.
	Flags uint8
	// SourceLL and TargetLL are the link-layer address options, valid
	// when HasSourceLL and HasTargetLL are set (the first of each kind).
	SourceLL, TargetLL       [6]byte
	HasSourceLL, HasTargetLL bool
	// RouterLifetime is an RA's router lifetime in seconds.
	RouterLifetime uint16
}

// ParseND checks the ND message m of type RS, RA, NS, NA or redirect (RFC
// 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1): code 0, the fixed part present and
// options of non-zero length within m. It does not check the checksum or
// the hop limit, which are the IPv6 layer's. It returns ErrTooShort if m
// is shorter than its fixed part and ErrBadHeader for any other fault,
// including a type that is not ND. A link-layer option that is not 8 bytes
// is skipped (another link type's), as the kernel does.
func ParseND(m ICMP) (ND, error) {
	nd := ND{Type: m.Type()}
	var fixed int
	switch nd.Type {
	case ICMPv6RouterSolicitation:
		fixed = RSLen
	case ICMPv6RouterAdvertisement:
		fixed = RALen
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement:
		fixed = NSLen
	case ICMPv6Redirect:
		fixed = ICMPLen + 32
	default:
		return nd, ErrBadHeader
	}
	if len(m) < fixed {
		return nd, ErrTooShort
	}
	if m.Code() != 0 {
		return nd, ErrBadHeader
	}
	nd.Flags = m[4]
	if fixed >= NSLen {
		nd.Target = [16]byte(m[8:24])
	}
	if nd.Type == ICMPv6RouterAdvertisement {
		nd.RouterLifetime = binary.BigEndian.Uint16(m[6:8])
	}
	for opts := m[fixed:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return nd, ErrBadHeader
		}
		n := int(opts[1]) * 8
		if n == NDLLOptLen {
			switch {
			case opts[0] == NDOptSourceLL && !nd.HasSourceLL:
				nd.SourceLL, nd.HasSourceLL = [6]byte(opts[2:8]), true
			case opts[0] == NDOptTargetLL && !nd.HasTargetLL:
				nd.TargetLL, nd.HasTargetLL = [6]byte(opts[2:8]), true
			}
		}
		opts = opts[n:]
	}
	return nd, nil
}

// PutNA writes a Neighbor Advertisement for target with flags (NAFlag*) and
// a target link-layer address option for mac into b, checksum zero, and
// returns its length, NALen+NDLLOptLen.
func PutNA(b []byte, target [16]byte, flags uint8, mac [6]byte) int {
	_ = b[NALen+NDLLOptLen-1]
	clear(b[:8])
	b[0] = ICMPv6NeighborAdvertisement
	b[4] = flags
	copy(b[8:24], target[:])
	putLLOpt(b[NALen:], NDOptTargetLL, mac)
	return NALen + NDLLOptLen
}

// PutNS writes a Neighbor Solicitation for target with a source
// link-layer address option for mac (which a multicast solicitation must
// carry, RFC 4861 4.3) into b, checksum zero, and returns its length,
// NSLen+NDLLOptLen.
func PutNS(b []byte, target [16]byte, mac [6]byte) int {
	_ = b[NSLen+NDLLOptLen-1]
	clear(b[:8])
	b[0] = ICMPv6NeighborSolicitation
	copy(b[8:24], target[:])
	putLLOpt(b[NSLen:], NDOptSourceLL, mac)
	return NSLen + NDLLOptLen
}

// RA holds what PutRA writes into a Router Advertisement.
type RA struct {
	HopLimit       uint8  // Cur Hop Limit; 0: unspecified
	RouterLifetime uint16 // seconds; 0: not a default router
	SourceLL       [6]byte
	MTU            uint32 // 0: no MTU option
	// Prefix is the on-link prefix (prefix information option with L
	// set, RFC 4861 4.6.2), PrefixLen its length; Autonomous sets its A
	// flag (SLAAC, RFC 4862). PrefixLen 0: no prefix option.
	Prefix     [16]byte
	PrefixLen  uint8
	Autonomous bool
	// ValidLifetime and PreferredLifetime are the prefix's, in seconds.
	ValidLifetime, PreferredLifetime uint32
}

// Len returns the length of the RA that PutRA writes for r.
func (r *RA) Len() int {
	n := RALen + NDLLOptLen
	if r.MTU != 0 {
		n += NDMTUOptLen
	}
	if r.PrefixLen != 0 {
		n += NDPrefixOptLen
	}
	return n
}

// PutRA writes the Router Advertisement r into b (at least r.Len() bytes),
// with the managed and other flags off and the checksum zero, and returns
// its length: the fixed part, a source link-layer option, then the MTU and
// prefix information options when set.
func PutRA(b []byte, r *RA) int {
	n := r.Len()
	_ = b[n-1]
	clear(b[:n])
	b[0] = ICMPv6RouterAdvertisement
	b[4] = r.HopLimit
	binary.BigEndian.PutUint16(b[6:8], r.RouterLifetime)
	// Reachable time and retrans timer 0: unspecified.
	off := RALen
	putLLOpt(b[off:], NDOptSourceLL, r.SourceLL)
	off += NDLLOptLen
	if r.MTU != 0 {
		b[off], b[off+1] = NDOptMTU, 1
		binary.BigEndian.PutUint32(b[off+4:], r.MTU)
		off += NDMTUOptLen
	}
	if r.PrefixLen != 0 {
		o := b[off : off+NDPrefixOptLen]
		o[0], o[1], o[2] = NDOptPrefixInfo, 4, r.PrefixLen
		o[3] = 0x80 // L
		if r.Autonomous {
			o[3] |= 0x40
		}
		binary.BigEndian.PutUint32(o[4:], r.ValidLifetime)
		binary.BigEndian.PutUint32(o[8:], r.PreferredLifetime)
		copy(o[16:32], r.Prefix[:])
	}
	return n
}

func putLLOpt(b []byte, typ uint8, mac [6]byte) {
	b[0], b[1] = typ, 1
	copy(b[2:8], mac[:])
}

// SolicitedNode returns the solicited-node multicast address of a
// (ff02::1:ffXX:XXXX, RFC 4291 2.7.1).
func SolicitedNode(a [16]byte) [16]byte {
	return [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}
}

// MulticastMAC returns the Ethernet address IPv6 multicast to a is sent to
// (33:33 and the address's last 32 bits, RFC 2464 7).
func MulticastMAC(a [16]byte) [6]byte {
	return [6]byte{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

// LinkLocal returns the link-local address of an interface with Ethernet
// address mac, its modified EUI-64 interface identifier (RFC 4291 2.5.1,
// appendix A; RFC 2464 5).
func LinkLocal(mac [6]byte) [16]byte {
	return [16]byte{0: 0xfe, 1: 0x80,
		8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
}

// AllNodes is ff02::1, the link-local all-nodes multicast address.
var AllNodes = [16]byte{0: 0xff, 1: 0x02, 15: 0x01}

// AllRouters is ff02::2, the link-local all-routers multicast address.
var AllRouters = [16]byte{0: 0xff, 1: 0x02, 15: 0x02}

// ParseNDPacket reads the ND message (RS, RA, NS, NA or redirect) that the
// IPv6 packet ip carries, as ParseND, with the IPv6 layer's checks of RFC
// 4861 6.1.1, 7.1.1 and 7.1.2 that need no state: ICMPv6 right after the
// fixed header (no extension header) and hop limit 255. The checksum is
// not verified (a message from a TAP may have it left to the device).
func ParseNDPacket(ip IPv6) (ND, error) {
	if ip.NextHeader() != ProtoICMPv6 || ip.HopLimit() != NDHopLimit {
		return ND{}, ErrBadHeader
	}
	m := ICMP(ip.Payload())
	if len(m) < ICMPLen {
		return ND{}, ErrTooShort
	}
	return ParseND(m)
}

// Solicitation is what NeighborSolicitation found in a Neighbor
// Solicitation.
type Solicitation struct {
	// Src and Dst are the IPv6 source and destination: Src is the
	// unspecified address for duplicate address detection (RFC 4862
	// 5.4.2).
	Src, Dst [16]byte
	// ND holds the target and the source link-layer address option.
	ND
}

// DAD reports whether s is a duplicate address detection probe (from the
// unspecified address), which only the target's owner may answer, by
// defending its address.
func (s *Solicitation) DAD() bool { return s.Src == [16]byte{} }

// NeighborSolicitation reads the Neighbor Solicitation that the IPv6
// packet ip carries, with the checks of ParseNDPacket and those of RFC
// 4861 7.1.1 on a solicitation: a target that is not multicast and, from
// the unspecified address, a solicited-node destination and no source
// link-layer address option. It returns ErrBadHeader for anything else,
// ErrTooShort for a cut message.
func NeighborSolicitation(ip IPv6) (Solicitation, error) {
	var s Solicitation
	nd, err := ParseNDPacket(ip)
	if err != nil {
		return s, err
	}
	if nd.Type != ICMPv6NeighborSolicitation {
		return s, ErrBadHeader
	}
	s.Src, s.Dst, s.ND = ip.Src(), ip.Dst(), nd
	if nd.Target[0] == 0xff {
		return s, ErrBadHeader
	}
	if s.DAD() && (nd.HasSourceLL || s.Dst != SolicitedNode(nd.Target)) {
		return s, ErrBadHeader
	}
	return s, nil
}

// NAFrameLen is the length of the frame PutNAFrame writes.
const NAFrameLen = EthernetLen + IPv6Len + NALen + NDLLOptLen

// PutNAFrame writes into b[:NAFrameLen] an Ethernet frame from ethSrc to
// ethDst carrying a Neighbor Advertisement from src to dst (hop limit
// 255) for target, with flags (NAFlag*) and a target link-layer address
// option for ethSrc, its checksum complete, and returns NAFrameLen. It is
// the answer to a solicitation that a node answers for target, as
// ndisc_send_na builds it (and the Linux bridge's br_nd_send for an
// address it knows).
func PutNAFrame(b []byte, ethDst, ethSrc [6]byte, src, dst, target [16]byte, flags uint8) int {
	_ = b[NAFrameLen-1]
	PutEthernet(b, ethDst, ethSrc, EtherTypeIPv6)
	n := NALen + NDLLOptLen
	h := IPv6Header{PayloadLen: uint16(n), NextHeader: ProtoICMPv6, HopLimit: NDHopLimit, Src: src, Dst: dst}
	h.Put(b[EthernetLen:])
	m := ICMP(b[EthernetLen+IPv6Len : NAFrameLen])
	PutNA(m, target, flags, ethSrc)
	m.UpdateChecksum6(checksum.PseudoHeaderIPv6(src, dst, ProtoICMPv6, uint32(n)))
	return NAFrameLen
}

// PutARPReply writes into b[:EthernetLen+ARPLen] the ARP reply (RFC 826)
// that mac, the hardware address of ip, sends to the requester at
// reqMAC/reqIP, in an Ethernet frame from mac to reqMAC, and returns its
// length. b may hold the request itself: every field is written after the
// request's fields it needs were passed in.
func PutARPReply(b []byte, mac [6]byte, ip [4]byte, reqMAC [6]byte, reqIP [4]byte) int {
	_ = b[EthernetLen+ARPLen-1]
	PutEthernet(b, reqMAC, mac, EtherTypeARP)
	PutARP(b[EthernetLen:], ARPReply, mac, ip, reqMAC, reqIP)
	return EthernetLen + ARPLen
}
