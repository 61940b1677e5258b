package nat

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
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
	msg := pkt[p.ihl:p.totalLen]
	if len(msg) < icmpHeaderLen+ipv4MinHeaderLen+8 {
		return t.drop(DropMalformed)
	}
	if !partial && checksum.Checksum(msg, 0) != 0 {
		return t.drop(DropBadChecksum)
	}
	inner := msg[icmpHeaderLen:]
	if inner[0]>>4 != 4 {
		return t.drop(DropMalformed)
	}
	ihl := int(inner[0]&0x0f) * 4
	if ihl < ipv4MinHeaderLen || len(inner) < ihl+8 {
		return t.drop(DropMalformed)
	}
	// A quoted non-first fragment has no ports: its connection is unknown.
	if binary.BigEndian.Uint16(inner[6:])&ipFragOffsetMask != 0 {
		return t.drop(DropICMPErrorNoFlow)
	}
	el4 := inner[ihl:]
	e := Tuple{Proto: Proto(inner[9]), Src: Endpoint{Addr: [4]byte(inner[12:16])}, Dst: Endpoint{Addr: [4]byte(inner[16:20])}}
	etype := byte(0)
	switch e.Proto {
	case TCP, UDP:
		e.Src.Port = get16(el4[0:])
		e.Dst.Port = get16(el4[2:])
	case ICMP:
		etype = el4[0]
		switch etype {
		case icmpEchoRequest:
			e.Src.Port = get16(el4[4:])
		case icmpEchoReply:
			e.Dst.Port = get16(el4[4:])
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
		put16(msg[2:], 0)
		put16(msg[2:], checksum.Checksum(msg, 0))
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
	copy(pkt[12:16], outerSrc[:])
	copy(pkt[16:20], outerDst[:])
	put16(pkt[ipChecksumOffset:], checksum.Update(get16(pkt[ipChecksumOffset:]), d))

	// Embedded IPv4 header.
	da := checksum.DeltaAddr4(e.Src.Addr, ne.Src.Addr) + checksum.DeltaAddr4(e.Dst.Addr, ne.Dst.Addr)
	dp := checksum.Delta16(e.Src.Port, ne.Src.Port) + checksum.Delta16(e.Dst.Port, ne.Dst.Port)
	copy(inner[12:16], ne.Src.Addr[:])
	copy(inner[16:20], ne.Dst.Addr[:])
	put16(inner[ipChecksumOffset:], checksum.Update(get16(inner[ipChecksumOffset:]), da))

	// Embedded L4 header, and its checksum when it is quoted.
	switch e.Proto {
	case TCP:
		put16(el4[0:], ne.Src.Port)
		put16(el4[2:], ne.Dst.Port)
		if len(el4) >= tcpChecksumOffset+2 {
			put16(el4[tcpChecksumOffset:], checksum.Update(get16(el4[tcpChecksumOffset:]), da+dp))
		}
	case UDP:
		put16(el4[0:], ne.Src.Port)
		put16(el4[2:], ne.Dst.Port)
		if c := get16(el4[udpChecksumOffset:]); c != 0 {
			v := checksum.Update(c, da+dp)
			if v == 0 {
				v = 0xffff
			}
			put16(el4[udpChecksumOffset:], v)
		}
	case ICMP:
		id := ne.Dst.Port
		if etype == icmpEchoRequest {
			id = ne.Src.Port
		}
		put16(el4[4:], id)
		put16(el4[2:], checksum.Update(get16(el4[2:]), dp))
	}
}
