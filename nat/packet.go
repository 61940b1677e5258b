package nat

import (
	"encoding/binary"
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// parsed is what the table reads from a packet. It lives on the caller's
// stack.
type parsed struct {
	t        Tuple
	k        key // an IPv4 packet's conntrack key, side not set (lookupParsed)
	proto    Proto
	v6       bool
	ihl      int // the offset of the L4 header: IPv4 header length, or IPv6 header and extension headers
	totalLen int
	tcpFlags uint8
	icmpType uint8
	icmpErr  bool // an ICMP error (translated by icmpError)
	// firstFrag is a first fragment (offset 0, more fragments), laterFrag
	// a fragment with a non-zero offset (no L4 header, tuple ports zero).
	// IPv4 only: IPv6 fragments are dropped.
	firstFrag, laterFrag bool
}

// parse reads an IPv4 or IPv6 packet: lengths checked against the slice,
// fragments and protocols filtered, the tuple extracted.
func (p *parsed) parse(pkt []byte) DropReason {
	switch wire.IPVersion(pkt) {
	case 4:
		return p.parse4(pkt)
	case 6:
		return p.parse6(pkt)
	}
	return DropMalformed
}

func (p *parsed) parse4(pkt []byte) DropReason {
	ip, err := wire.ParseIPv4(pkt)
	if err != nil {
		return DropMalformed
	}
	p.proto = Proto(ip.Protocol())
	p.ihl, p.totalLen = ip.HeaderLen(), len(ip)
	p.t.Proto = p.proto
	p.t.Src.Addr, p.t.Dst.Addr = netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst())
	if ip.FragOff() != 0 {
		p.laterFrag = true // no L4 header: see frag.go
		return DropNone
	}
	p.firstFrag = ip.MoreFragments()
	if p.proto == ICMPv6 {
		return DropProto
	}
	if r := p.parseL4(ip.Payload()); r != DropNone {
		return r
	}
	// The key from the header's bytes: cheaper than from the Tuple's
	// netip.Addrs, on every packet.
	src, dst := ip.Src(), ip.Dst()
	p.k[0] = byte(p.proto)
	copy(p.k[2:6], src[:])
	binary.BigEndian.PutUint16(p.k[6:], p.t.Src.Port)
	copy(p.k[8:12], dst[:])
	binary.BigEndian.PutUint16(p.k[12:], p.t.Dst.Port)
	return DropNone
}

// parse6 reads an IPv6 packet. Fragments are not translated (the table
// would have to remember each datagram's translation for 16-byte
// addresses as frag.go does for IPv4): DropFragment. The kernel's own
// NAT66 reassembles first (nf_defrag_ipv6); a container's TCP never
// fragments, its path MTU discovery shrinks segments instead.
func (p *parsed) parse6(pkt []byte) DropReason {
	ip, err := wire.ParseIPv6(pkt)
	if err != nil {
		return DropMalformed
	}
	u, err := ip.Upper()
	if err != nil {
		return DropMalformed
	}
	p.v6 = true
	p.proto = Proto(u.Proto)
	p.ihl, p.totalLen = u.Offset, len(ip)
	p.t.Proto = p.proto
	p.t.Src.Addr, p.t.Dst.Addr = netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst())
	if u.Fragment {
		return DropFragment
	}
	if p.proto == ICMP {
		return DropProto
	}
	if r := p.parseL4(ip[u.Offset:]); r != DropNone {
		return r
	}
	if p.proto == UDP && wire.UDP(ip[u.Offset:]).Checksum() == 0 {
		return DropMalformed // RFC 8200 8.1: a zero UDP checksum is discarded
	}
	return DropNone
}

// parseL4 reads the ports (ICMP: the echo identifier) of the L4 header l4.
func (p *parsed) parseL4(l4 []byte) DropReason {
	switch p.proto {
	case TCP:
		if len(l4) < wire.TCPMinLen {
			return DropMalformed
		}
		t := wire.TCP(l4)
		p.t.Src.Port, p.t.Dst.Port = t.SrcPort(), t.DstPort()
		p.tcpFlags = t.Flags()
	case UDP:
		u, err := wire.ParseUDP(l4)
		if err != nil {
			return DropMalformed
		}
		p.t.Src.Port, p.t.Dst.Port = u.SrcPort(), u.DstPort()
	case ICMP, ICMPv6:
		m, err := wire.ParseICMP(l4)
		if err != nil {
			return DropMalformed
		}
		p.icmpType = m.Type()
		switch {
		case p.icmpType == echoRequest(p.proto):
			p.t.Src.Port = m.ID()
		case p.icmpType == echoReply(p.proto):
			p.t.Dst.Port = m.ID()
		case isICMPError(p.proto, p.icmpType):
			p.icmpErr = true
		default:
			return DropICMPType
		}
	default:
		return DropProto
	}
	return DropNone
}

// echoRequest and echoReply return the echo types of ICMP or ICMPv6.
func echoRequest(p Proto) uint8 {
	if p == ICMPv6 {
		return wire.ICMPv6EchoRequest
	}
	return wire.ICMPEchoRequest
}

func echoReply(p Proto) uint8 {
	if p == ICMPv6 {
		return wire.ICMPv6EchoReply
	}
	return wire.ICMPEchoReply
}

// isICMPError reports whether typ is an error the table translates:
// destination unreachable, time exceeded, parameter problem, and for
// ICMPv6 packet too big (RFC 4443 3).
func isICMPError(p Proto, typ uint8) bool {
	if p == ICMPv6 {
		switch typ {
		case wire.ICMPv6Unreachable, wire.ICMPv6PacketTooBig, wire.ICMPv6TimeExceeded, wire.ICMPv6ParamProblem:
			return true
		}
		return false
	}
	switch typ {
	case wire.ICMPUnreachable, wire.ICMPTimeExceeded, wire.ICMPParamProblem:
		return true
	}
	return false
}

// unicast reports whether a is an address a packet may be routed to. IPv4:
// not in 0/8, 127/8, 224/4 (multicast) or 240/4 (including the broadcast
// address). IPv6: not unspecified, loopback, multicast, link-local or
// IPv4-mapped.
func unicast(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && b[0] != 127 && b[0] < 224
	}
	return a.Is6() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && !a.IsLinkLocalUnicast() && !a.Is4In6()
}

// rewrite applies x to a parsed packet in place, with RFC 1624 incremental
// checksum updates. With partial, the L4 checksum field holds the folded
// pseudo-header sum (not inverted), so only the address delta applies to it
// (ICMP has no pseudo-header: its field is left alone; ICMPv6 has one).
func rewrite(pkt []byte, p *parsed, x *xlate, partial bool) {
	if p.v6 {
		ip := wire.IPv6(pkt)
		ip.SetSrc(x.src.Addr.As16())
		ip.SetDst(x.dst.Addr.As16())
	} else {
		ip := wire.IPv4(pkt)
		ip.SetSrc(x.src.Addr.As4())
		ip.SetDst(x.dst.Addr.As4())
		ip.AdjustChecksum(x.ipDelta)
	}
	l4 := pkt[p.ihl:p.totalLen]
	switch p.proto {
	case TCP:
		t := wire.TCP(l4)
		t.SetSrcPort(x.src.Port)
		t.SetDstPort(x.dst.Port)
		if partial {
			t.SetChecksum(checksum.UpdatePartial(t.Checksum(), x.ipDelta))
		} else {
			t.SetChecksum(checksum.Update(t.Checksum(), x.ipDelta+x.portDelta))
		}
	case UDP:
		u := wire.UDP(l4)
		u.SetSrcPort(x.src.Port)
		u.SetDstPort(x.dst.Port)
		switch old := u.Checksum(); {
		case partial:
			u.SetChecksum(checksum.UpdatePartial(old, x.ipDelta))
		case old != 0: // zero: no checksum (RFC 768), stays zero
			v := checksum.Update(old, x.ipDelta+x.portDelta)
			if v == 0 {
				v = 0xffff
			}
			u.SetChecksum(v)
		}
	case ICMP, ICMPv6:
		m := wire.ICMP(l4)
		id := x.dst.Port
		if p.icmpType == echoRequest(p.proto) {
			id = x.src.Port
		}
		m.SetID(id)
		switch {
		case p.proto == ICMPv6 && partial:
			m.SetChecksum(checksum.UpdatePartial(m.Checksum(), x.ipDelta))
		case p.proto == ICMPv6:
			m.SetChecksum(checksum.Update(m.Checksum(), x.ipDelta+x.portDelta))
		case !partial:
			m.SetChecksum(checksum.Update(m.Checksum(), x.portDelta))
		}
	}
}

// deltaAddr returns the RFC 1624 delta of an address changing from a to b,
// both of one family.
func deltaAddr(a, b netip.Addr) uint32 {
	if a.Is4() {
		return checksum.DeltaAddr4(a.As4(), b.As4())
	}
	return checksum.DeltaAddr6(a.As16(), b.As16())
}

func get16(b []byte) uint16    { return binary.BigEndian.Uint16(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
