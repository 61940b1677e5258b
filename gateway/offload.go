package gateway

import (
	"net/netip"
	"sync"

	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// maxDatagram is the largest IPv4 datagram.
const maxDatagram = 65535

// bigPool holds buffers for super-segments and for their software
// segmentation: UplinkHeadroom + maxDatagram + room for a VLAN tag.
var bigPool = sync.Pool{New: func() any {
	b := make([]byte, UplinkHeadroom+maxDatagram+8)
	return &b
}}

// Offloads implements vswitch.Offloader: with an uplink that takes
// super-segments (uplink.GSOSender, the host uplink, whose netstack does
// not need wire-sized segments), the gateway takes TCP/IPv4 super-frames and
// partial checksums from the switch, so that a container's TSO frame
// crosses the gateway and NAT once instead of once per segment. Other
// offloaded frames (to the gateway itself, hairpinned, not TCP) are
// completed and segmented in software by the gateway.
func (g *Gateway) Offloads() vswitch.Offloads {
	switch {
	case g.route != nil && g.route.gso != nil && g.route.has6:
		return vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6 // offload6.go
	case g.route != nil && g.route.gso != nil:
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
	if g.forwardGSO(h, frame[gso.HdrLen:]) || g.forwardGSO6(h, frame[gso.HdrLen:]) {
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
		if n-gso.HdrLen > wire.EthernetLen+4+g.mtu {
			g.stats.inc(cntTooBig)
			return
		}
		g.handleEthernet(buf[gso.HdrLen:n], nil)
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
		if n-gso.HdrLen > wire.EthernetLen+4+g.mtu {
			g.stats.inc(cntTooBig)
			continue
		}
		g.handleEthernet(buf[gso.HdrLen:n], nil)
	}
}

// forwardGSO routes a TCP/IPv4 frame with a partial checksum (a TSO
// super-frame or not) to the GSO uplink whole, through NAT with
// csumPartial, and reports whether it did. It declines (false) what the
// ordinary path must see segment by segment: anything not TCP to an
// outside address other than the uplink's (or the host's loopback
// through the gateway's address), fragments, options in the
// wrong place, TTL 1, and super-frames whose segments would exceed the
// uplink's MTU (the DF check of each segment).
func (g *Gateway) forwardGSO(h gso.Hdr, eth []byte) bool {
	r := g.route
	e := wire.Ethernet(eth)
	if len(e) < wire.EthernetLen+wire.IPv4MinLen || e.Dst() != g.mac || e.Type() != wire.EtherTypeIPv4 {
		return false
	}
	src := e.Src()
	if !isUnicastMAC(src) || src == g.mac {
		return false
	}
	v, reason := parseIPv4(eth[wire.EthernetLen:])
	if reason != cntNone || v.proto != wire.ProtoTCP || v.isFragment() || v.ip.TTL() <= 1 ||
		(v.dst == g.addr && !r.hasHostLo) || v.dst == r.ext || !isHostAddr(v.dst) || !isHostAddr(v.src) ||
		v.src == g.addr || v.src == g.bcast || (v.dst != g.addr && g.prefix.Contains(netip.AddrFrom4(v.dst))) {
		return false
	}
	if v.dst == g.addr && g.claimedLocal(&v) {
		// The gateway's local service (DNS), before the host loopback.
		return false
	}
	// Only partial checksums go whole (uplink.GSOSender): a super-frame
	// without NEEDS_CSUM is rare, and segmented.
	ihl := v.ip.HeaderLen()
	if h.Flags&gso.FlagNeedsCsum == 0 || int(h.CsumStart) != wire.EthernetLen+ihl || h.CsumOffset != wire.TCPChecksumOffset {
		return false
	}
	if len(v.payload) < wire.TCPMinLen {
		return false
	}
	mss, ok := wholeMSS(h, gso.TypeTCPv4, len(v.datagram), ihl, v.payload, r.mtu)
	if !ok {
		return false
	}
	g.learn(v.src, src)
	bp := bigPool.Get().(*[]byte)
	defer g.putBuf(bp)
	pkt, res := g.outbound(&v, bp, true)
	if res.Action != nat.ToExternal {
		g.stats.inc(cntNATDrops)
		return true
	}
	// Sent on the switch's ingress goroutine. Handing super-segments to
	// a writer goroutine of their own through a channel (so that reading
	// the container's TAP and writing the uplink's overlap) lost: NAT out
	// through the routed TAP uplink 7.62 and 6.98 Gbit/s inline against
	// 5.14 and 4.73 with the writer (bench-nat, alternated, load 14).
	g.sendWhole(r, bp, len(pkt), mss, cntForwarded)
	return true
}

// wholeMSS checks the virtio_net_hdr h of a frame forwardGSO or
// forwardGSO6 would send whole: a plain datagram of n bytes must fit mtu;
// a TCP super-segment (GSO type tcpType) whose IP header is ihl bytes and
// whose TCP header starts tcp must make segments that do. It returns the
// MSS to hand the uplink (0 for a plain datagram) and whether the frame
// can go whole.
func wholeMSS(h gso.Hdr, tcpType uint8, n, ihl int, tcp []byte, mtu int) (int, bool) {
	switch h.GSOType {
	case gso.TypeNone:
		return 0, n <= mtu
	case tcpType:
		thl := wire.TCP(tcp).HeaderLen()
		if h.GSOSize == 0 || ihl+thl+int(h.GSOSize) > mtu {
			return 0, false
		}
		return int(h.GSOSize), true
	}
	return 0, false
}

// sendWhole sends the translated packet of n bytes at
// (*bp)[UplinkHeadroom:] to r's GSO uplink, to be cut into segments of mss
// (none for 0), and counts it as fwd, or as an uplink error.
func (g *Gateway) sendWhole(r *route, bp *[]byte, n, mss int, fwd counter) {
	if err := r.gso.SendGSO((*bp)[:UplinkHeadroom+n], UplinkHeadroom, mss); err != nil {
		g.stats.inc(cntUplinkErrors)
		return
	}
	g.stats.inc(fwd)
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
	if wire.IPVersion(buf) == 6 {
		return g.uplinkGSO6(bp, buf, mss) // offload6.go
	}
	v, reason := parseIPv4(buf)
	if reason != cntNone {
		return reason
	}
	if v.proto != wire.ProtoTCP || v.isFragment() || len(v.payload) < wire.TCPMinLen {
		return cntMalformed
	}
	if v.ip.TTL() <= 1 {
		return cntTTLExceeded
	}
	ihl := v.ip.HeaderLen()
	t, err := wire.ParseTCP(v.payload)
	if err != nil || mss <= 0 {
		return cntMalformed
	}
	thl := t.HeaderLen()
	if ihl+thl+min(mss, len(v.payload)-thl) > g.mtu {
		return cntTooBig
	}
	out := v.datagram
	res := r.nat.FromExternal(out, true, r.clock())
	if res.Action != nat.ToInternal {
		return cntNATDrops
	}
	ip := wire.IPv4(out)
	ip.DecTTL()
	if r.hasHostLo && ip.Src() == r.hostLo {
		rewriteAddr(out, true, g.addr, true)
	}
	dst := ip.Dst()
	if !g.isNeighborAddr(dst) {
		return cntMartian
	}
	mac, st := g.neigh.Lookup(dst, g.clock())
	if st == neigh.Missing {
		return cntPendingDropped
	}
	g.stats.inc(cntToContainer)
	g.queueGSO(bp, len(out), ihl, thl, mss, mac, wire.EtherTypeIPv4, gso.TypeTCPv4)
	return cntNone
}

// queueGSO queues for the container at mac the TCP packet of n bytes at
// UplinkHeadroom in *bp, whose TCP header (of thl bytes) is at l4, as one
// frame with a virtio_net_hdr asking for the checksum and, when it is
// longer than one segment of mss bytes of payload, segmentation (gsoType).
// It takes ownership of bp.
func (g *Gateway) queueGSO(bp *[]byte, n, l4, thl, mss int, mac [6]byte, etherType uint16, gsoType uint8) {
	h := gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: uint16(wire.EthernetLen + l4), CsumOffset: wire.TCPChecksumOffset}
	if n > l4+thl+mss {
		h.GSOType, h.GSOSize, h.HdrLen = gsoType, uint16(mss), uint16(wire.EthernetLen+l4+thl)
	}
	h.Put((*bp)[0:gso.HdrLen])
	off := UplinkHeadroom - wire.EthernetLen
	wire.PutEthernet((*bp)[off:], mac, g.mac, etherType)
	select {
	case g.queue <- qframe{p: bp, off: off, n: wire.EthernetLen + n, vnet: true}:
	default:
		g.stats.inc(cntQueueDrops)
		g.putBuf(bp)
	}
}
