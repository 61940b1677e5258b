package gateway

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// GSOUplink is an Uplink that takes TCP super-segments whole (the host
// uplink, whose netstack does not need wire-sized segments).
type GSOUplink interface {
	Uplink
	// SendGSO sends the IPv4 TCP datagram buf[off:] as Send does, but it
	// may be larger than MTU (a TSO super-segment, up to 64 KiB) and its
	// TCP checksum may be partial (the pseudo-header sum only,
	// VIRTIO_NET_HDR_F_NEEDS_CSUM): the uplink must not verify it.
	SendGSO(buf []byte, off int) error
}

// maxDatagram is the largest IPv4 datagram.
const maxDatagram = 65535

// bigPool holds buffers for super-segments and for their software
// segmentation: UplinkHeadroom + maxDatagram + room for a VLAN tag.
var bigPool = sync.Pool{New: func() any {
	b := make([]byte, UplinkHeadroom+maxDatagram+8)
	return &b
}}

// Offloads implements vswitch.Offloader: with an uplink that takes
// super-segments (GSOUplink), the gateway takes TCP/IPv4 super-frames and
// partial checksums from the switch, so that a container's TSO frame
// crosses the gateway and NAT once instead of once per segment. Other
// offloaded frames (to the gateway itself, hairpinned, not TCP) are
// completed and segmented in software by the gateway.
func (g *Gateway) Offloads() vswitch.Offloads {
	if g.route != nil && g.route.gso != nil {
		return vswitch.OffloadCsum | vswitch.OffloadTSO4
	}
	return 0
}

// writeOffloaded handles a frame whose virtio_net_hdr asks for a checksum
// or segmentation: forwarded whole when it can be, else made ordinary
// frames and handled as such.
func (g *Gateway) writeOffloaded(frame []byte) {
	if g.route == nil || g.route.gso == nil {
		g.stats.inc(cntOffload)
		return
	}
	h := gso.ParseHdr(frame)
	if g.forwardGSO(h, frame[gso.HdrLen:]) {
		return
	}
	bp := bigPool.Get().(*[]byte)
	defer g.putBuf(bp)
	buf := *bp
	if h.GSOType == gso.TypeNone {
		// A partial checksum only: completed on a copy (the switch
		// owns frame).
		if len(frame) > len(buf) {
			g.stats.inc(cntTooBig)
			return
		}
		n := copy(buf, frame)
		if err := gso.CompleteChecksum(buf[:n]); err != nil {
			g.stats.inc(cntOffload)
			return
		}
		if n-gso.HdrLen > ethHdrLen+4+g.mtu {
			g.stats.inc(cntTooBig)
			return
		}
		g.handleEthernet(buf[gso.HdrLen:n])
		return
	}
	var s gso.Segmenter
	if err := s.Reset(frame); err != nil || s.MaxLen() > len(buf) {
		g.stats.inc(cntOffload)
		return
	}
	for {
		n := s.Next(buf)
		if n == 0 {
			return
		}
		if n-gso.HdrLen > ethHdrLen+4+g.mtu {
			g.stats.inc(cntTooBig)
			continue
		}
		g.handleEthernet(buf[gso.HdrLen:n])
	}
}

// forwardGSO routes a TCP/IPv4 frame with offloads (a TSO super-frame or
// a partial checksum) to the GSO uplink whole, through NAT with
// csumPartial, and reports whether it did. It declines (false) what the
// ordinary path must see segment by segment: anything not TCP to an
// outside address other than the uplink's (or the host's loopback
// through the gateway's address), fragments, options in the
// wrong place, TTL 1, and super-frames whose segments would exceed the
// uplink's MTU (the DF check of each segment).
func (g *Gateway) forwardGSO(h gso.Hdr, eth []byte) bool {
	r := g.route
	if len(eth) < ethHdrLen+ipv4MinHdr || [6]byte(eth[0:6]) != g.mac ||
		binary.BigEndian.Uint16(eth[12:14]) != etherTypeIPv4 {
		return false
	}
	src := [6]byte(eth[6:12])
	if !isUnicastMAC(src) || src == g.mac {
		return false
	}
	v, reason := parseIPv4(eth[ethHdrLen:])
	if reason != cntNone || v.proto != protoTCP || v.isFragment() || v.hdr[8] <= 1 ||
		(v.dst == g.addr && !r.hasHostLo) || v.dst == r.ext || !isHostAddr(v.dst) || !isHostAddr(v.src) ||
		v.src == g.addr || v.src == g.bcast || (v.dst != g.addr && g.prefix.Contains(netip.AddrFrom4(v.dst))) {
		return false
	}
	if v.dst == g.addr && g.claimedLocal(&v) {
		// The gateway's local service (DNS), before the host loopback.
		return false
	}
	partial := h.Flags&gso.FlagNeedsCsum != 0
	ihl := len(v.hdr)
	if partial && (int(h.CsumStart) != ethHdrLen+ihl || h.CsumOffset != 16) {
		return false
	}
	if len(v.payload) < tcpMinHdr {
		return false
	}
	switch h.GSOType {
	case gso.TypeNone:
		if len(v.datagram) > r.mtu {
			return false
		}
	case gso.TypeTCPv4:
		thl := int(v.payload[12]>>4) * 4
		if h.GSOSize == 0 || ihl+thl+int(h.GSOSize) > r.mtu {
			return false
		}
	default:
		return false
	}
	g.learn(v.src, src)
	bp := bigPool.Get().(*[]byte)
	defer g.putBuf(bp)
	pkt := (*bp)[UplinkHeadroom : UplinkHeadroom+len(v.datagram)]
	copy(pkt, v.datagram)
	decTTL(pkt)
	if v.dst == g.addr {
		// The host's loopback (Config.HostLoopback).
		rewriteAddr(pkt, 16, r.hostLo, partial)
	}
	res := r.nat.FromInternal(pkt, partial, r.clock())
	if res.Action != nat.ToExternal {
		g.stats.inc(cntNATDrops)
		return true
	}
	if err := r.gso.SendGSO((*bp)[:UplinkHeadroom+len(pkt)], UplinkHeadroom); err != nil {
		g.stats.inc(cntUplinkErrors)
		return true
	}
	g.stats.inc(cntForwarded)
	return true
}

// FromUplinkGSO is FromUplink for a TCP super-segment from the uplink (the
// host uplink's netstack, GSO): pkt is an IPv4 TCP datagram of up to 64
// KiB whose TCP checksum field holds the pseudo-header sum only
// (CHECKSUM_PARTIAL), to be cut into segments of mss bytes of payload. It
// goes through NAT with csumPartial and reaches the container as one frame
// with a virtio_net_hdr (GSO_TCPV4, NEEDS_CSUM): the switch hands it whole
// to a port with TSO and segments it for the others. The container's
// address must be resolved (it is, for a connection it takes part in);
// otherwise the segment is dropped and counted, and TCP sends it again.
// pkt is not modified nor kept. It is safe for concurrent use.
func (g *Gateway) FromUplinkGSO(pkt []byte, mss int) {
	g.FromUplinkGSOSlices([][]byte{pkt}, mss)
}

// FromUplinkGSOSlices is FromUplinkGSO for a super-segment given in parts
// (the netstack's header and payload views, in order), gathered straight
// into the frame queued for the container: one copy of the payload on the
// way, not two. The parts are not modified nor kept.
func (g *Gateway) FromUplinkGSOSlices(parts [][]byte, mss int) {
	r := g.route
	if r == nil {
		return
	}
	g.stats.inc(cntUplinkIn)
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > maxDatagram {
		g.stats.inc(cntMalformed)
		return
	}
	bp := bigPool.Get().(*[]byte)
	buf := (*bp)[UplinkHeadroom : UplinkHeadroom+n]
	n = 0
	for _, p := range parts {
		n += copy(buf[n:], p)
	}
	if reason := g.uplinkGSO(bp, buf, mss); reason != cntNone {
		g.stats.inc(reason)
		g.putBuf(bp)
	}
}

// uplinkGSO does FromUplinkGSOSlices's work on the gathered datagram buf,
// which lies at UplinkHeadroom in *bp: it queues *bp for the container
// (cntNone) or returns the reason to count, and then *bp is the caller's.
func (g *Gateway) uplinkGSO(bp *[]byte, buf []byte, mss int) counter {
	r := g.route
	v, reason := parseIPv4(buf)
	if reason != cntNone {
		return reason
	}
	if v.proto != protoTCP || v.isFragment() || len(v.payload) < tcpMinHdr {
		return cntMalformed
	}
	if v.hdr[8] <= 1 {
		return cntTTLExceeded
	}
	ihl := len(v.hdr)
	thl := int(v.payload[12]>>4) * 4
	if thl < tcpMinHdr || thl > len(v.payload) || mss <= 0 {
		return cntMalformed
	}
	if ihl+thl+min(mss, len(v.payload)-thl) > g.mtu {
		return cntTooBig
	}
	out := v.datagram
	res := r.nat.FromExternal(out, true, r.clock())
	if res.Action != nat.ToInternal {
		return cntNATDrops
	}
	decTTL(out)
	if r.hasHostLo && [4]byte(out[12:16]) == r.hostLo {
		rewriteAddr(out, 12, g.addr, true)
	}
	dst := [4]byte(out[16:20])
	if !g.isNeighborAddr(dst) {
		return cntMartian
	}
	mac, ok := g.neigh.lookup(dst, g.now())
	if !ok {
		return cntPendingDropped
	}
	h := gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: uint16(ethHdrLen + ihl), CsumOffset: 16}
	if len(out) > ihl+thl+mss {
		h.GSOType, h.GSOSize, h.HdrLen = gso.TypeTCPv4, uint16(mss), uint16(ethHdrLen+ihl+thl)
	}
	h.Put((*bp)[0:gso.HdrLen])
	off := UplinkHeadroom - ethHdrLen
	putEthernet((*bp)[off:], mac, g.mac, etherTypeIPv4)
	g.stats.inc(cntToContainer)
	select {
	case g.queue <- qframe{p: bp, off: off, n: ethHdrLen + len(out), vnet: true}:
	default:
		g.stats.inc(cntQueueDrops)
		g.putBuf(bp)
	}
	return cntNone
}
