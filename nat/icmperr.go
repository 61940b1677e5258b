package nat

import (
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// icmpError translates an ICMP error (destination unreachable, time
// exceeded, parameter problem) that quotes a packet of a tracked connection
// (RFC 5508 REQ-3 from outside, REQ-4 from inside, REQ-7 hairpinned): the
// embedded packet is reverted to what its sender sent, the outer destination
// becomes the embedded source, and an error from a container leaves with the
// external address as its source. The ICMP checksum is verified first and
// computed again at the end (left alone when partial: the device sums the
// message itself).
func (t *Table) icmpError(pkt []byte, p *parsed, from side, partial bool) Result {
	msg := wire.ICMP(pkt[p.ihl:p.totalLen])
	if len(msg) < wire.ICMPLen+wire.IPv4MinLen+8 {
		return t.drop(DropMalformed)
	}
	if !partial && !msg.Valid4() {
		return t.drop(DropBadChecksum)
	}
	inner, err := wire.ParseIPv4Quoted(msg.Body())
	if err != nil {
		return t.drop(DropMalformed)
	}
	ihl := inner.HeaderLen()
	// A quoted non-first fragment has no ports: its connection is unknown.
	if inner.FragOff() != 0 {
		return t.drop(DropICMPErrorNoFlow)
	}
	el4 := inner.Payload()
	e := Tuple{Proto: Proto(inner.Protocol()), Src: Endpoint{Addr: inner.Src()}, Dst: Endpoint{Addr: inner.Dst()}}
	etype := byte(0)
	switch e.Proto {
	case TCP, UDP:
		e.Src.Port = get16(el4[0:])
		e.Dst.Port = get16(el4[2:])
	case ICMP:
		etype = el4[0]
		switch etype {
		case wire.ICMPEchoRequest:
			e.Src.Port = wire.ICMP(el4).ID()
		case wire.ICMPEchoReply:
			e.Dst.Port = wire.ICMP(el4).ID()
		default: // an error about an ICMP error, or another type
			return t.drop(DropICMPErrorNoFlow)
		}
	default:
		return t.drop(DropICMPErrorNoFlow)
	}
	// The error goes back to the quoted packet's sender.
	if p.t.Dst.Addr != e.Src.Addr {
		return t.drop(DropICMPErrorNoFlow)
	}
	// A reply to the quoted packet would have the reversed tuple, arriving
	// on the side the error comes from.
	r := t.lookup(keyOf(e.Reverse(), from))
	if r.c == nil {
		return t.drop(DropICMPErrorNoFlow)
	}
	t.translateError(r, pkt, p, inner, ihl, e, etype, from)
	if !partial {
		msg.UpdateChecksum4()
	}
	t.icmpErrs.Add(1)
	return t.done(r.c.x[r.dir].action, false)
}

// translateError rewrites the outer and embedded headers of an ICMP error
// whose quoted packet belongs to r (the ICMP checksum is the caller's).
func (t *Table) translateError(r ref, pkt []byte, p *parsed, inner []byte, ihl int, e Tuple, etype byte, from side) {
	x := &r.c.x[r.dir]
	// What a reply gets rewritten to is x.src -> x.dst; the quoted packet
	// becomes its reverse.
	ne := Tuple{Proto: e.Proto, Src: x.dst, Dst: x.src}
	el4 := inner[ihl:]

	outerSrc := p.t.Src.Addr
	if from == sideInternal {
		outerSrc = t.ext // RFC 5508 REQ-4 c), REQ-7
	}
	outerDst := ne.Src.Addr

	// Outer IPv4 header.
	d := checksum.DeltaAddr4(p.t.Src.Addr, outerSrc) + checksum.DeltaAddr4(p.t.Dst.Addr, outerDst)
	outer := wire.IPv4(pkt)
	outer.SetSrc(outerSrc)
	outer.SetDst(outerDst)
	outer.AdjustChecksum(d)

	// Embedded IPv4 header.
	da := checksum.DeltaAddr4(e.Src.Addr, ne.Src.Addr) + checksum.DeltaAddr4(e.Dst.Addr, ne.Dst.Addr)
	dp := checksum.Delta16(e.Src.Port, ne.Src.Port) + checksum.Delta16(e.Dst.Port, ne.Dst.Port)
	in := wire.IPv4(inner)
	in.SetSrc(ne.Src.Addr)
	in.SetDst(ne.Dst.Addr)
	in.AdjustChecksum(da)

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
	case ICMP:
		id := ne.Dst.Port
		if etype == wire.ICMPEchoRequest {
			id = ne.Src.Port
		}
		put16(el4[4:], id)
		put16(el4[2:], checksum.Update(get16(el4[2:]), dp))
	}
}
