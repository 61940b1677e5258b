package nat

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// TCP flags and ICMP types the table looks at.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	icmpEchoReply     = 0
	icmpUnreachable   = 3
	icmpEchoRequest   = 8
	icmpTimeExceeded  = 11
	icmpParamProblem  = 12
	ipv4MinHeaderLen  = 20
	ipFragOffsetMask  = 0x1fff
	tcpMinHeaderLen   = 20
	udpHeaderLen      = 8
	icmpHeaderLen     = 8
	ipChecksumOffset  = 10
	tcpChecksumOffset = 16
	udpChecksumOffset = 6
)

// parsed is what the table reads from a packet. It lives on the caller's
// stack.
type parsed struct {
	t        Tuple
	proto    Proto
	ihl      int
	totalLen int
	tcpFlags uint8
	icmpType uint8
	icmpErr  bool // an ICMP error (translated by icmpError)
	// firstFrag is a first fragment (offset 0, more fragments), laterFrag
	// a fragment with a non-zero offset (no L4 header, tuple ports zero).
	firstFrag, laterFrag bool
}

// parse reads an IPv4 packet: header length and total length checked against
// the slice, fragments and protocols filtered, the tuple extracted.
func (p *parsed) parse(pkt []byte) DropReason {
	if len(pkt) < ipv4MinHeaderLen || pkt[0]>>4 != 4 {
		return DropMalformed
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < ipv4MinHeaderLen || total < ihl || total > len(pkt) {
		return DropMalformed
	}
	p.proto = Proto(pkt[9])
	p.ihl, p.totalLen = ihl, total
	p.t.Proto = p.proto
	p.t.Src.Addr = [4]byte(pkt[12:16])
	p.t.Dst.Addr = [4]byte(pkt[16:20])
	if binary.BigEndian.Uint16(pkt[6:])&ipFragOffsetMask != 0 {
		p.laterFrag = true // no L4 header: see frag.go
		return DropNone
	}
	p.firstFrag = isFirstFragment(pkt)
	l4 := pkt[ihl:total]
	switch p.proto {
	case TCP:
		if len(l4) < tcpMinHeaderLen {
			return DropMalformed
		}
		p.t.Src.Port = binary.BigEndian.Uint16(l4[0:])
		p.t.Dst.Port = binary.BigEndian.Uint16(l4[2:])
		p.tcpFlags = l4[13]
	case UDP:
		if len(l4) < udpHeaderLen {
			return DropMalformed
		}
		p.t.Src.Port = binary.BigEndian.Uint16(l4[0:])
		p.t.Dst.Port = binary.BigEndian.Uint16(l4[2:])
	case ICMP:
		if len(l4) < icmpHeaderLen {
			return DropMalformed
		}
		p.icmpType = l4[0]
		switch p.icmpType {
		case icmpEchoRequest:
			p.t.Src.Port = binary.BigEndian.Uint16(l4[4:])
		case icmpEchoReply:
			p.t.Dst.Port = binary.BigEndian.Uint16(l4[4:])
		case icmpUnreachable, icmpTimeExceeded, icmpParamProblem:
			p.icmpErr = true
		default:
			return DropICMPType
		}
	default:
		return DropProto
	}
	return DropNone
}

// unicast reports whether a is an address a packet may be routed to: not in
// 0/8, 127/8, 224/4 (multicast) or 240/4 (including the broadcast address).
func unicast(a [4]byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// rewrite applies x to a parsed packet in place, with RFC 1624 incremental
// checksum updates. With partial, the L4 checksum field holds the folded
// pseudo-header sum (not inverted), so only the address delta applies to it
// (ICMP has no pseudo-header: its field is left alone).
func rewrite(pkt []byte, p *parsed, x *xlate, partial bool) {
	_ = pkt[19]
	copy(pkt[12:16], x.src.Addr[:])
	copy(pkt[16:20], x.dst.Addr[:])
	put16(pkt[ipChecksumOffset:], checksum.Update(get16(pkt[ipChecksumOffset:]), x.ipDelta))
	l4 := pkt[p.ihl:p.totalLen]
	switch p.proto {
	case TCP:
		put16(l4[0:], x.src.Port)
		put16(l4[2:], x.dst.Port)
		c := l4[tcpChecksumOffset:]
		if partial {
			put16(c, checksum.UpdatePartial(get16(c), x.ipDelta))
		} else {
			put16(c, checksum.Update(get16(c), x.ipDelta+x.portDelta))
		}
	case UDP:
		put16(l4[0:], x.src.Port)
		put16(l4[2:], x.dst.Port)
		c := l4[udpChecksumOffset:]
		old := get16(c)
		switch {
		case partial:
			put16(c, checksum.UpdatePartial(old, x.ipDelta))
		case old != 0: // zero: no checksum (RFC 768), stays zero
			v := checksum.Update(old, x.ipDelta+x.portDelta)
			if v == 0 {
				v = 0xffff
			}
			put16(c, v)
		}
	case ICMP:
		id := x.dst.Port
		if p.icmpType == icmpEchoRequest {
			id = x.src.Port
		}
		put16(l4[4:], id)
		if !partial {
			put16(l4[2:], checksum.Update(get16(l4[2:]), x.portDelta))
		}
	}
}

func get16(b []byte) uint16    { return binary.BigEndian.Uint16(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
