package vxlan

import (
	"bytes"
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/switch/gso"
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

// TCP flags (RFC 9293 section 3.1).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
)

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
const ipStart = gso.HdrLen + 14

// groStart begins a run with the frame f[:n] (virtio_net_hdr first, zero)
// if it is a TCP segment with data, over IPv4 (a 20-byte header, not a
// fragment) or IPv6 (no extension header), that a run may start with.
func groStart(f []byte, n int) (groRun, bool) {
	if n < ipStart+20+20 {
		return groRun{}, false
	}
	ip := f[ipStart:n]
	g := groRun{f: f, n: n}
	switch binary.BigEndian.Uint16(f[ipStart-2:]) {
	case 0x0800:
		if ip[0] != 0x45 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			return groRun{}, false
		}
		g.l4 = ipStart + 20
	case 0x86dd:
		if len(ip) < 40+20 || ip[0]>>4 != 6 || ip[6] != 6 || 40+int(binary.BigEndian.Uint16(ip[4:])) != len(ip) {
			return groRun{}, false
		}
		g.l4, g.v6 = ipStart+40, true
	default:
		return groRun{}, false
	}
	doff := int(f[g.l4+12]>>4) * 4
	g.hlen = g.l4 + doff
	flags := f[g.l4+13]
	if doff < 20 || g.hlen >= n || flags&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpPSH) != 0 || flags&tcpACK == 0 {
		return groRun{}, false
	}
	g.mss, g.segs = n-g.hlen, 1
	g.seq = binary.BigEndian.Uint32(f[g.l4+4:]) + uint32(g.mss)
	return g, true
}

// pseudo returns the partial sum of the TCP pseudo-header of the IP packet
// ip (RFC 9293 section 3.1; RFC 8200 section 8.1 for IPv6).
func pseudo(ip []byte, v6 bool) uint32 {
	if v6 {
		return checksum.Sum(ip[8:40], 6+uint32(len(ip)-40))
	}
	return checksum.PseudoHeaderIPv4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(ip)-20))
}

// checksumsOK checks the IPv4 header checksum and the TCP checksum of the
// IP packet ip, as inet_gro_receive and tcp4_gro_receive (tcp6_gro_receive)
// do.
func checksumsOK(ip []byte, v6 bool) bool {
	l4 := 40
	if !v6 {
		if checksum.Checksum(ip[:20], 0) != 0 {
			return false
		}
		l4 = 20
	}
	return checksum.Checksum(ip[l4:], pseudo(ip, v6)) == 0
}

// sameIP reports whether the IP headers ip and sip are the same but for
// what segmentation changes (IPv4 length, ID and checksum; IPv6 payload
// length), and sip's length is its packet's.
func (g *groRun) sameIP(ip, sip []byte) bool {
	if g.v6 {
		return bytes.Equal(ip[:4], sip[:4]) && 40+int(binary.BigEndian.Uint16(sip[4:])) == len(sip) &&
			bytes.Equal(ip[6:40], sip[6:40])
	}
	return bytes.Equal(ip[:2], sip[:2]) && int(binary.BigEndian.Uint16(sip[2:])) == len(sip) &&
		bytes.Equal(ip[6:10], sip[6:10]) && bytes.Equal(ip[12:20], sip[12:20])
}

// add appends the payload of the inner Ethernet frame seg if it continues
// the run, and reports whether it did.
func (g *groRun) add(seg []byte) bool {
	hl := g.hlen - gso.HdrLen // header length within seg
	if g.ended || len(seg) <= hl || g.n+len(seg)-hl > len(g.f) || g.n-ipStart+len(seg)-hl > maxIPLen {
		return false
	}
	f := g.f[gso.HdrLen:]
	ip, sip := f[14:], seg[14:]
	tcp, stcp := f[g.l4-gso.HdrLen:], seg[g.l4-gso.HdrLen:]
	doff := g.hlen - g.l4
	plen := len(seg) - hl
	if !bytes.Equal(f[:14], seg[:14]) || !g.sameIP(ip, sip) ||
		!bytes.Equal(tcp[:4], stcp[:4]) || binary.BigEndian.Uint32(stcp[4:]) != g.seq ||
		!bytes.Equal(tcp[8:13], stcp[8:13]) || stcp[13]&^tcpPSH != tcp[13] ||
		!bytes.Equal(tcp[14:16], stcp[14:16]) || !bytes.Equal(tcp[18:doff], stcp[18:doff]) ||
		plen > g.mss {
		return false
	}
	if g.segs == 1 && !checksumsOK(g.f[ipStart:g.n], g.v6) {
		g.ended = true
		return false
	}
	if !checksumsOK(sip, g.v6) {
		g.ended = true
		return false
	}
	copy(g.f[g.n:], seg[hl:])
	g.n += plen
	g.seq += uint32(plen)
	g.segs++
	if stcp[13]&tcpPSH != 0 {
		tcp[13] |= tcpPSH
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
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		typ = gso.TypeTCPv6
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], checksum.Checksum(ip[:20], 0))
	}
	binary.BigEndian.PutUint16(g.f[g.l4+16:], checksum.Fold(pseudo(ip, g.v6)))
	gso.Hdr{
		Flags:      gso.FlagNeedsCsum,
		GSOType:    typ,
		HdrLen:     uint16(g.hlen - gso.HdrLen),
		GSOSize:    uint16(g.mss),
		CsumStart:  uint16(g.l4 - gso.HdrLen),
		CsumOffset: 16,
	}.Put(g.f)
	return g.n
}
