package gateway

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// TCP/IPv6 super-frames through NAT66, as offload.go does for IPv4: with
// NAT66 (route.has6) and an uplink that takes super-segments, the gateway
// takes TSO6 too; a container's TCP/IPv6 super-frame to the outside
// crosses NAT66 once, its partial checksum updated, and the uplink's
// super-segments reach the container as one frame.

// forwardGSO6 routes a TCP/IPv6 frame with a partial checksum (a TSO
// super-frame or not) to the GSO uplink whole, through NAT66 with
// csumPartial, and reports whether it did. It declines (false) what the
// ordinary path must see segment by segment: anything but TCP to an
// address outside the /64 (the uplink's own, hairpin, included),
// fragments, hop limit 1, and super-frames whose segments would exceed
// the uplink's MTU (then each segment gets its packet too big).
func (g *Gateway) forwardGSO6(h gso.Hdr, eth []byte) bool {
	r := g.route
	e := wire.Ethernet(eth)
	if g.v6 == nil || !r.has6 || len(e) < wire.EthernetLen+wire.IPv6Len || e.Dst() != g.mac || e.Type() != wire.EtherTypeIPv6 {
		return false
	}
	src := e.Src()
	ip, err := wire.ParseIPv6(eth[wire.EthernetLen:])
	if err != nil || !isUnicastMAC(src) || src == g.mac || len(ip) > maxDatagram {
		return false
	}
	u, err := ip.Upper()
	dst := ip.Dst()
	d := netip.AddrFrom16(dst)
	if err != nil || u.Proto != wire.ProtoTCP || u.Fragment || ip.HopLimit() <= 1 || !g.isNeighbor6(ip.Src()) ||
		dst == r.ext6 || d.IsMulticast() || d.IsLinkLocalUnicast() || g.v6.prefix.Contains(d) {
		return false
	}
	if h.Flags&gso.FlagNeedsCsum == 0 || int(h.CsumStart) != wire.EthernetLen+u.Offset || h.CsumOffset != wire.TCPChecksumOffset ||
		len(ip) < u.Offset+wire.TCPMinLen {
		return false
	}
	mss, ok := wholeMSS(h, gso.TypeTCPv6, len(ip), u.Offset, ip[u.Offset:], r.mtu)
	if !ok {
		return false
	}
	g.learn6(ip.Src(), src)
	bp := bigPool.Get().(*[]byte)
	defer g.putBuf(bp)
	pkt := (*bp)[UplinkHeadroom : UplinkHeadroom+len(ip)]
	copy(pkt, ip)
	wire.IPv6(pkt).DecHopLimit()
	if res := r.nat.FromInternal(pkt, true, r.clock()); res.Action != nat.ToExternal {
		g.stats.inc(cntNATDrops)
		return true
	}
	g.sendWhole(r, bp, len(pkt), mss, cntForwarded6)
	return true
}

// uplinkGSO6 is uplinkGSO for a TCP/IPv6 super-segment from the uplink,
// through NAT66 (FromExternal with csumPartial).
func (g *Gateway) uplinkGSO6(bp *[]byte, buf []byte, mss int) counter {
	r := g.route
	if g.v6 == nil || !r.has6 {
		return cntIPv6
	}
	ip, err := wire.ParseIPv6(buf)
	if err != nil {
		return cntMalformed
	}
	u, err := ip.Upper()
	if err != nil || u.Proto != wire.ProtoTCP || u.Fragment || mss <= 0 {
		return cntMalformed
	}
	if ip.HopLimit() <= 1 {
		return cntTTLExceeded
	}
	t, err := wire.ParseTCP(ip[u.Offset:])
	if err != nil {
		return cntMalformed
	}
	thl := t.HeaderLen()
	if u.Offset+thl+min(mss, len(ip)-u.Offset-thl) > g.mtu {
		return cntTooBig
	}
	if res := r.nat.FromExternal(ip, true, r.clock()); res.Action != nat.ToInternal {
		return cntNATDrops
	}
	ip.DecHopLimit()
	dst := ip.Dst()
	if !g.isNeighbor6(dst) {
		return cntMartian
	}
	mac, st := g.v6.neigh.Lookup(dst, g.clock())
	if st == neigh.Missing {
		return cntPendingDropped
	}
	g.stats.inc(cntToContainer6)
	g.queueGSO(bp, len(ip), u.Offset, thl, mss, mac, wire.EtherTypeIPv6, gso.TypeTCPv6)
	return cntNone
}
