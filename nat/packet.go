package nat

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
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
	ip, err := wire.ParseIPv4(pkt)
	if err != nil {
		return DropMalformed
	}
	p.proto = Proto(ip.Protocol())
	p.ihl, p.totalLen = ip.HeaderLen(), len(ip)
	p.t.Proto = p.proto
	p.t.Src.Addr, p.t.Dst.Addr = ip.Src(), ip.Dst()
	if ip.FragOff() != 0 {
		p.laterFrag = true // no L4 header: see frag.go
		return DropNone
	}
	p.firstFrag = ip.MoreFragments()
	l4 := ip.Payload()
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
	case ICMP:
		m, err := wire.ParseICMP(l4)
		if err != nil {
			return DropMalformed
		}
		p.icmpType = m.Type()
		switch p.icmpType {
		case wire.ICMPEchoRequest:
			p.t.Src.Port = m.ID()
		case wire.ICMPEchoReply:
			p.t.Dst.Port = m.ID()
		case wire.ICMPUnreachable, wire.ICMPTimeExceeded, wire.ICMPParamProblem:
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
	ip := wire.IPv4(pkt)
	ip.SetSrc(x.src.Addr)
	ip.SetDst(x.dst.Addr)
	ip.AdjustChecksum(x.ipDelta)
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
	case ICMP:
		m := wire.ICMP(l4)
		id := x.dst.Port
		if p.icmpType == wire.ICMPEchoRequest {
			id = x.src.Port
		}
		m.SetID(id)
		if !partial {
			m.SetChecksum(checksum.Update(m.Checksum(), x.portDelta))
		}
	}
}

func get16(b []byte) uint16    { return binary.BigEndian.Uint16(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
