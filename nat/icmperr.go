package nat

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// quoted is the packet an ICMP error quotes, as icmpError read it.
type quoted struct {
	e     Tuple  // its tuple
	etype uint8  // its ICMP type, when it is an echo
	ip    []byte // its IP header, from the start
	l4    []byte // its L4 header (what was quoted of it, at least 8 bytes)
}

// icmpError translates an ICMP or ICMPv6 error (destination unreachable,
// time exceeded, parameter problem; ICMPv6 packet too big) that quotes a
// packet of a tracked connection (RFC 5508 REQ-3 from outside, REQ-4 from
// inside, REQ-7 hairpinned; the same for ICMPv6): the embedded packet is
// reverted to what its sender sent, the outer destination becomes the
// embedded source, and an error from a container leaves with the external
// address as its source. The ICMP checksum is verified first and computed
// again at the end (left alone when partial: the device sums the message
// itself). An ICMPv6 checksum covers the pseudo-header, so the new outer
// addresses are in it.
func (t *Table) icmpError(pkt []byte, p *parsed, from side, partial bool) Result {
	msg := wire.ICMP(pkt[p.ihl:p.totalLen])
	var q quoted
	var r DropReason
	if p.v6 {
		r = q.parse6(pkt, msg, partial)
	} else {
		r = q.parse4(msg, partial)
	}
	if r != DropNone {
		return t.drop(r)
	}
	e := q.e
	// The error goes back to the quoted packet's sender.
	if p.t.Dst.Addr != e.Src.Addr {
		return t.drop(DropICMPErrorNoFlow)
	}
	// A reply to the quoted packet would have the reversed tuple, arriving
	// on the side the error comes from.
	re := e.Reverse()
	rf := t.lookup(&re, from)
	if rf.c == nil {
		return t.drop(DropICMPErrorNoFlow)
	}
	d := t.translateError(rf, pkt, p, &q, from)
	switch {
	case partial && p.v6:
		// The field holds the pseudo-header sum: the new outer
		// addresses go in, the device sums the message.
		msg.SetChecksum(checksum.UpdatePartial(msg.Checksum(), d))
	case !partial:
		if p.v6 {
			ip := wire.IPv6(pkt)
			msg.UpdateChecksum6(ip.PseudoSum(wire.ProtoICMPv6, len(msg)))
		} else {
			msg.UpdateChecksum4()
		}
	}
	t.icmpErrs.Add(1)
	return t.done(rf.c.x[rf.dir].action, false)
}

// parse4 reads the IPv4 packet quoted by the ICMP error msg.
func (q *quoted) parse4(msg wire.ICMP, partial bool) DropReason {
	if len(msg) < wire.ICMPLen+wire.IPv4MinLen+8 {
		return DropMalformed
	}
	if !partial && !msg.Valid4() {
		return DropBadChecksum
	}
	inner, err := wire.ParseIPv4Quoted(msg.Body())
	if err != nil {
		return DropMalformed
	}
	// A quoted non-first fragment has no ports: its connection is unknown.
	if inner.FragOff() != 0 {
		return DropICMPErrorNoFlow
	}
	q.ip, q.l4 = inner, inner.Payload()
	return q.tuple(Proto(inner.Protocol()), netip.AddrFrom4(inner.Src()), netip.AddrFrom4(inner.Dst()), ICMP)
}

// parse6 reads the IPv6 packet quoted by the ICMPv6 error msg of pkt.
func (q *quoted) parse6(pkt []byte, msg wire.ICMP, partial bool) DropReason {
	if len(msg) < wire.ICMPLen+wire.IPv6Len+8 {
		return DropMalformed
	}
	if !partial && checksum.Checksum(msg, wire.IPv6(pkt).PseudoSum(wire.ProtoICMPv6, len(msg))) != 0 {
		return DropBadChecksum
	}
	inner, err := wire.ParseIPv6Quoted(msg.Body())
	if err != nil {
		return DropMalformed
	}
	u, err := inner.Upper()
	if err != nil || u.Fragment || len(inner) < u.Offset+8 {
		// Fragments are not translated (parse6): nor errors about them.
		return DropICMPErrorNoFlow
	}
	q.ip, q.l4 = inner, inner[u.Offset:]
	return q.tuple(Proto(u.Proto), netip.AddrFrom16(inner.Src()), netip.AddrFrom16(inner.Dst()), ICMPv6)
}

// tuple reads the quoted packet's tuple from its addresses and L4 header;
// icmp is the ICMP protocol of its family.
func (q *quoted) tuple(proto Proto, src, dst netip.Addr, icmp Proto) DropReason {
	q.e = Tuple{Proto: proto, Src: Endpoint{Addr: src}, Dst: Endpoint{Addr: dst}}
	switch proto {
	case TCP, UDP:
		q.e.Src.Port = get16(q.l4[0:])
		q.e.Dst.Port = get16(q.l4[2:])
	case icmp:
		q.etype = q.l4[0]
		switch q.etype {
		case echoRequest(icmp):
			q.e.Src.Port = wire.ICMP(q.l4).ID()
		case echoReply(icmp):
			q.e.Dst.Port = wire.ICMP(q.l4).ID()
		default: // an error about an ICMP error, or another type
			return DropICMPErrorNoFlow
		}
	default:
		return DropICMPErrorNoFlow
	}
	return DropNone
}

// translateError rewrites the outer and embedded headers of an ICMP error
// whose quoted packet belongs to r (the ICMP checksum is the caller's) and
// returns the checksum delta of the outer addresses.
func (t *Table) translateError(r ref, pkt []byte, p *parsed, q *quoted, from side) uint32 {
	x := &r.c.x[r.dir]
	e := q.e
	// What a reply gets rewritten to is x.src -> x.dst; the quoted packet
	// becomes its reverse.
	ne := Tuple{Proto: e.Proto, Src: x.dst, Dst: x.src}
	el4 := q.l4

	outerSrc := p.t.Src.Addr
	if from == sideInternal {
		outerSrc = t.extOf(p.t) // RFC 5508 REQ-4 c), REQ-7
	}
	outerDst := ne.Src.Addr

	// Outer and embedded IP headers (IPv6 has no header checksum).
	d := deltaAddr(p.t.Src.Addr, outerSrc) + deltaAddr(p.t.Dst.Addr, outerDst)
	da := deltaAddr(e.Src.Addr, ne.Src.Addr) + deltaAddr(e.Dst.Addr, ne.Dst.Addr)
	dp := checksum.Delta16(e.Src.Port, ne.Src.Port) + checksum.Delta16(e.Dst.Port, ne.Dst.Port)
	if p.v6 {
		outer, in := wire.IPv6(pkt), wire.IPv6(q.ip)
		outer.SetSrc(outerSrc.As16())
		outer.SetDst(outerDst.As16())
		in.SetSrc(ne.Src.Addr.As16())
		in.SetDst(ne.Dst.Addr.As16())
	} else {
		outer, in := wire.IPv4(pkt), wire.IPv4(q.ip)
		outer.SetSrc(outerSrc.As4())
		outer.SetDst(outerDst.As4())
		outer.AdjustChecksum(d)
		in.SetSrc(ne.Src.Addr.As4())
		in.SetDst(ne.Dst.Addr.As4())
		in.AdjustChecksum(da)
	}

	// Embedded L4 header, and its checksum when it is quoted.
	switch e.Proto {
	case TCP:
		put16(el4[0:], ne.Src.Port)
		put16(el4[2:], ne.Dst.Port)
		if len(el4) >= wire.TCPChecksumOffset+2 {
			put16(el4[wire.TCPChecksumOffset:], checksum.Update(get16(el4[wire.TCPChecksumOffset:]), da+dp))
		}
	case UDP:
		put16(el4[0:], ne.Src.Port)
		put16(el4[2:], ne.Dst.Port)
		if c := get16(el4[wire.UDPChecksumOffset:]); c != 0 {
			v := checksum.Update(c, da+dp)
			if v == 0 {
				v = 0xffff
			}
			put16(el4[wire.UDPChecksumOffset:], v)
		}
	case ICMP, ICMPv6:
		id := ne.Dst.Port
		if q.etype == echoRequest(e.Proto) {
			id = ne.Src.Port
		}
		put16(el4[4:], id)
		de := dp
		if e.Proto == ICMPv6 {
			de += da // the ICMPv6 checksum covers the pseudo-header
		}
		put16(el4[2:], checksum.Update(get16(el4[2:]), de))
	}
	return d
}
