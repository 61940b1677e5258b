package vxlan

import (
	"bytes"
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// Receive coalescing (GRO in userspace). The kernel hands the tunnel the
// datagrams of one sender's burst in one read (UDP_GRO); when they carry
// consecutive segments of one TCP flow (over IPv4 or IPv6), the tunnel
// gives the switch a single TSO super-frame (GSO_TCPV4 or GSO_TCPV6,
// partial checksum) instead, as tcp_gro_receive does: the containers' TAPs take it in one write, and a
// port without TSO gets it segmented back by the switch.
//
// A segment joins the run only if its Ethernet, IPv4 and TCP headers equal
// the first's but for what segmentation changes (IPv4 length, ID and
// checksum, IPv6 payload length; TCP sequence number, checksum and PSH), its sequence number
// follows on, it carries at most the first's payload, and its IPv4 and TCP
// checksums are right (the super-frame's is recomputed by whoever completes it, so a
// corrupt segment must not hide in it). PSH, or a shorter segment, ends
// the run.

// maxIPLen bounds a coalesced IP packet.
const maxIPLen = 65535

// groRun is a run of TCP segments being coalesced in a frame buffer.
type groRun struct {
	f     []byte // virtio_net_hdr + Ethernet frame, the first segment first
	n     int    // length of f in use
	v6    bool   // IPv6 (else IPv4 with a 20-byte header)
	l4    int    // offset of the TCP header in f
	hlen  int    // offset of the payload in f
	mss   int    // the first segment's payload length
	seq   uint32 // the sequence number the next segment must have
	segs  int
	ended bool
}

// ipStart is the offset of the IP header in a frame: after the
// virtio_net_hdr and an untagged Ethernet header.
const ipStart = gso.HdrLen + wire.EthernetLen

// parseTCPIP finds the TCP segment of the untagged Ethernet frame eth if
// it is TCP over IPv4 (a 20-byte header, not a fragment) or IPv6 (no
// extension header), with no padding after the IP packet. It returns the
// offset of the TCP header in eth.
func parseTCPIP(eth []byte) (tcp wire.TCP, l4 int, v6, ok bool) {
	if len(eth) < wire.EthernetLen {
		return nil, 0, false, false
	}
	b := eth[wire.EthernetLen:]
	switch wire.Ethernet(eth).Type() {
	case wire.EtherTypeIPv4:
		ip, err := wire.ParseIPv4(b)
		if err != nil || len(ip) != len(b) || ip.HeaderLen() != wire.IPv4MinLen || ip.Protocol() != wire.ProtoTCP || ip.IsFragment() {
			return nil, 0, false, false
		}
		l4 = wire.EthernetLen + wire.IPv4MinLen
	case wire.EtherTypeIPv6:
		ip, err := wire.ParseIPv6(b)
		if err != nil || len(ip) != len(b) || ip.NextHeader() != wire.ProtoTCP {
			return nil, 0, false, false
		}
		l4, v6 = wire.EthernetLen+wire.IPv6Len, true
	default:
		return nil, 0, false, false
	}
	tcp, err := wire.ParseTCP(eth[l4:])
	return tcp, l4, v6, err == nil
}

// groStart begins a run with the frame f[:n] (virtio_net_hdr first, zero)
// if it is a TCP segment with data (see parseTCPIP) that a run may start
// with: ACK, and none of SYN, FIN, RST, URG, PSH.
func groStart(f []byte, n int) (groRun, bool) {
	if n < gso.HdrLen {
		return groRun{}, false
	}
	tcp, l4, v6, ok := parseTCPIP(f[gso.HdrLen:n])
	if !ok {
		return groRun{}, false
	}
	g := groRun{f: f, n: n, v6: v6, l4: gso.HdrLen + l4}
	g.hlen = g.l4 + tcp.HeaderLen()
	flags := tcp.Flags()
	if g.hlen >= n || flags&(wire.TCPFlagSYN|wire.TCPFlagFIN|wire.TCPFlagRST|wire.TCPFlagURG|wire.TCPFlagPSH) != 0 || flags&wire.TCPFlagACK == 0 {
		return groRun{}, false
	}
	g.mss, g.segs = n-g.hlen, 1
	g.seq = tcp.Seq() + uint32(g.mss)
	return g, true
}

// pseudo returns the partial sum of the TCP pseudo-header of the IP
// header ip for a TCP segment of l4len bytes (RFC 9293 section 3.1; RFC
// 8200 section 8.1 for IPv6).
func pseudo(ip []byte, v6 bool, l4len int) uint32 {
	if v6 {
		return wire.IPv6(ip).PseudoSum(wire.ProtoTCP, l4len)
	}
	return wire.IPv4(ip).PseudoSum(l4len)
}

// checksumsOK checks the IPv4 header checksum and the TCP checksum of the
// segment whose IP and TCP headers are hdr (of a family parseTCPIP
// accepts) and whose payload is pay, as inet_gro_receive and
// tcp4_gro_receive (tcp6_gro_receive) do.
func checksumsOK(hdr, pay []byte, v6 bool) bool {
	l4 := wire.IPv6Len
	if !v6 {
		if !wire.IPv4(hdr).HeaderValid() {
			return false
		}
		l4 = wire.IPv4MinLen
	}
	tcp := hdr[l4:] // even-sized: the payload, maybe odd, comes last
	return checksum.Checksum(pay, checksum.Sum(tcp, pseudo(hdr, v6, len(tcp)+len(pay)))) == 0
}

// sameIP reports whether the IP headers of the packets ip and sip (both
// parsed by parseTCPIP, of the run's family) are the same but for what
// segmentation changes: IPv4 length, ID and checksum; IPv6 payload length.
func (g *groRun) sameIP(ip, sip []byte) bool {
	if g.v6 {
		a, b := wire.IPv6(ip), wire.IPv6(sip)
		// Version, traffic class and flow label are the first 4 bytes.
		return bytes.Equal(ip[:4], sip[:4]) && a.NextHeader() == b.NextHeader() && a.HopLimit() == b.HopLimit() &&
			a.Src() == b.Src() && a.Dst() == b.Dst()
	}
	a, b := wire.IPv4(ip), wire.IPv4(sip)
	return a.TOS() == b.TOS() && a.FlagsFrag() == b.FlagsFrag() && a.TTL() == b.TTL() &&
		a.Src() == b.Src() && a.Dst() == b.Dst()
}

// add appends the payload of the inner Ethernet frame seg if it continues
// the run, and reports whether it did.
func (g *groRun) add(seg []byte) bool {
	hl := g.hlen - gso.HdrLen // header length within seg
	if len(seg) <= hl {
		return false
	}
	return g.join(seg[:hl], seg[hl:])
}

// join appends the segment whose Ethernet, IP and TCP headers are hdr and
// whose payload is pay if it continues the run, and reports whether it
// did. pay is copied to the end of the run unless it is there already
// (Read's scatter puts it there).
func (g *groRun) join(hdr, pay []byte) bool {
	hl, l4 := g.hlen-gso.HdrLen, g.l4-gso.HdrLen // offsets within hdr
	plen := len(pay)
	if g.ended || len(hdr) != hl || plen == 0 || g.n+plen > len(g.f) || g.n-ipStart+plen > maxIPLen {
		return false
	}
	// What parseTCPIP checks of the first segment, on headers alone: the
	// IP length is the segment's, TCP with a header of the first's length
	// (the EtherType, IPv6 next header and fragment bits are compared
	// with the first's below).
	ip := hdr[wire.EthernetLen:l4]
	if g.v6 {
		if wire.IPv6(ip).PayloadLen() != hl-l4+plen {
			return false
		}
	} else if ip[0] != 0x45 || wire.IPv4(ip).TotalLen() != hl-wire.EthernetLen+plen || wire.IPv4(ip).Protocol() != wire.ProtoTCP {
		return false
	}
	stcp, err := wire.ParseTCP(hdr[l4:])
	if err != nil || stcp.HeaderLen() != hl-l4 {
		return false
	}
	f := g.f[gso.HdrLen:g.n]
	tcp := wire.TCP(f[l4:])
	if !bytes.Equal(f[:wire.EthernetLen], hdr[:wire.EthernetLen]) || !g.sameIP(f[wire.EthernetLen:l4], ip) ||
		tcp.SrcPort() != stcp.SrcPort() || tcp.DstPort() != stcp.DstPort() || stcp.Seq() != g.seq ||
		tcp.Ack() != stcp.Ack() || stcp.Flags()&^wire.TCPFlagPSH != tcp.Flags() || tcp.Window() != stcp.Window() ||
		!bytes.Equal(tcp[18:tcp.HeaderLen()], stcp[18:stcp.HeaderLen()]) || // urgent pointer and options
		plen > g.mss {
		return false
	}
	if g.segs == 1 && !checksumsOK(g.f[ipStart:g.hlen], g.f[g.hlen:g.n], g.v6) {
		g.ended = true
		return false
	}
	if !checksumsOK(hdr[wire.EthernetLen:], pay, g.v6) {
		g.ended = true
		return false
	}
	if &g.f[g.n] != &pay[0] {
		copy(g.f[g.n:], pay)
	}
	g.n += plen
	g.seq += uint32(plen)
	g.segs++
	if stcp.Flags()&wire.TCPFlagPSH != 0 {
		g.f[g.l4+13] |= wire.TCPFlagPSH
		g.ended = true
	}
	if plen < g.mss {
		g.ended = true
	}
	return true
}

// finish makes the run a super-frame, with its virtio_net_hdr, IP length
// (and IPv4 checksum) and TCP partial checksum, and returns its length. A
// run of one segment is left as it is.
func (g *groRun) finish() int {
	if g.segs == 1 {
		return g.n
	}
	ip := g.f[ipStart:g.n]
	typ := uint8(gso.TypeTCPv4)
	if g.v6 {
		wire.IPv6(ip).SetPayloadLen(len(ip) - wire.IPv6Len)
		typ = gso.TypeTCPv6
	} else {
		wire.IPv4(ip).SetTotalLen(len(ip))
		wire.IPv4(ip).UpdateChecksum()
	}
	binary.BigEndian.PutUint16(g.f[g.l4+wire.TCPChecksumOffset:], checksum.Fold(pseudo(ip, g.v6, g.n-g.l4)))
	gso.Hdr{
		Flags:      gso.FlagNeedsCsum,
		GSOType:    typ,
		HdrLen:     uint16(g.hlen - gso.HdrLen),
		GSOSize:    uint16(g.mss),
		CsumStart:  uint16(g.l4 - gso.HdrLen),
		CsumOffset: wire.TCPChecksumOffset,
	}.Put(g.f)
	return g.n
}
