package vxlan

import (
	"bytes"
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// Receive coalescing (GRO in userspace). The kernel hands the tunnel the
// datagrams of one sender's burst in one read (UDP_GRO); when they carry
// consecutive segments of one TCP/IPv4 flow, the tunnel gives the switch a
// single TSO super-frame (GSO_TCPV4, partial checksum) instead, as
// tcp_gro_receive does: the containers' TAPs take it in one write, and a
// port without TSO gets it segmented back by the switch.
//
// A segment joins the run only if its Ethernet, IPv4 and TCP headers equal
// the first's but for what segmentation changes (IPv4 length, ID and
// checksum; TCP sequence number, checksum and PSH), its sequence number
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

// maxIPLen bounds a coalesced IPv4 packet.
const maxIPLen = 65535

// groRun is a run of TCP segments being coalesced in a frame buffer.
type groRun struct {
	f     []byte // virtio_net_hdr + Ethernet frame, the first segment first
	n     int    // length of f in use
	l4    int    // offset of the TCP header in f
	hlen  int    // offset of the payload in f
	mss   int    // the first segment's payload length
	seq   uint32 // the sequence number the next segment must have
	segs  int
	ended bool
}

// groStart begins a run with the frame f[:n] (virtio_net_hdr first, zero)
// if it is a TCP/IPv4 segment with data that a run may start with.
func groStart(f []byte, n int) (groRun, bool) {
	const eth = gso.HdrLen + 14
	if n < eth+20+20 || binary.BigEndian.Uint16(f[eth-2:]) != 0x0800 {
		return groRun{}, false
	}
	ip := f[eth:n]
	if ip[0] != 0x45 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
		return groRun{}, false
	}
	l4 := eth + 20
	doff := int(f[l4+12]>>4) * 4
	hlen := l4 + doff
	flags := f[l4+13]
	if doff < 20 || hlen >= n || flags&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpPSH) != 0 || flags&tcpACK == 0 {
		return groRun{}, false
	}
	g := groRun{f: f, n: n, l4: l4, hlen: hlen, mss: n - hlen, segs: 1}
	g.seq = binary.BigEndian.Uint32(f[l4+4:]) + uint32(g.mss)
	return g, true
}

// tcpChecksumOK checks the IPv4 header checksum and the TCP checksum of
// the IPv4 packet ip (20-byte header), as inet_gro_receive and
// tcp4_gro_receive do.
func tcpChecksumOK(ip []byte) bool {
	if checksum.Checksum(ip[:20], 0) != 0 {
		return false
	}
	pseudo := checksum.PseudoHeaderIPv4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(ip)-20))
	return checksum.Checksum(ip[20:], pseudo) == 0
}

// add appends the payload of the inner Ethernet frame seg if it continues
// the run, and reports whether it did.
func (g *groRun) add(seg []byte) bool {
	const eth = gso.HdrLen + 14
	hl := g.hlen - gso.HdrLen // header length within seg
	if g.ended || len(seg) <= hl || g.n+len(seg)-hl > len(g.f) || g.n-eth+len(seg)-hl > maxIPLen {
		return false
	}
	f := g.f[gso.HdrLen:]
	ip, sip := f[14:], seg[14:]
	tcp, stcp := f[g.l4-gso.HdrLen:], seg[g.l4-gso.HdrLen:]
	plen := len(seg) - hl
	if !bytes.Equal(f[:14], seg[:14]) ||
		!bytes.Equal(ip[:2], sip[:2]) || int(binary.BigEndian.Uint16(sip[2:])) != len(sip) ||
		!bytes.Equal(ip[6:10], sip[6:10]) || !bytes.Equal(ip[12:20], sip[12:20]) ||
		!bytes.Equal(tcp[:4], stcp[:4]) || binary.BigEndian.Uint32(stcp[4:]) != g.seq ||
		!bytes.Equal(tcp[8:13], stcp[8:13]) || stcp[13]&^tcpPSH != tcp[13] ||
		!bytes.Equal(tcp[14:16], stcp[14:16]) || !bytes.Equal(tcp[18:hl-14-20], stcp[18:hl-14-20]) ||
		plen > g.mss {
		return false
	}
	if g.segs == 1 && !tcpChecksumOK(g.f[eth:g.n]) {
		g.ended = true
		return false
	}
	if !tcpChecksumOK(sip) {
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

// finish makes the run a super-frame, with its virtio_net_hdr, IPv4
// length and checksum and TCP partial checksum, and returns its length. A
// run of one segment is left as it is.
func (g *groRun) finish() int {
	if g.segs == 1 {
		return g.n
	}
	const eth = gso.HdrLen + 14
	ip := g.f[eth:g.n]
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], checksum.Checksum(ip[:20], 0))
	pseudo := checksum.PseudoHeaderIPv4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(ip)-20))
	binary.BigEndian.PutUint16(ip[20+16:], checksum.Fold(pseudo))
	gso.Hdr{
		Flags:      gso.FlagNeedsCsum,
		GSOType:    gso.TypeTCPv4,
		HdrLen:     uint16(g.hlen - gso.HdrLen),
		GSOSize:    uint16(g.mss),
		CsumStart:  uint16(g.l4 - gso.HdrLen),
		CsumOffset: 16,
	}.Put(g.f)
	return g.n
}
