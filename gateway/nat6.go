package gateway

import (
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/wire"
)

// NAT66: with IPv6 (Config.Addr6), a NAT table that translates IPv6
// (nat.Config.External6) and an uplink that is an IPv6 host on its link
// (uplink.NAT66), the gateway routes what containers send outside their
// /64 through NAT66 to the uplink, as it routes IPv4: hop limit 1 answered
// with time exceeded (route6), a packet over the uplink's MTU with packet
// too big carrying that MTU (RFC 8201: routers do not fragment IPv6, the
// sender's path MTU discovery shrinks its packets), the hop limit
// decremented, then nat.Table.FromInternal; packets for the uplink's
// IPv6 address come back through FromUplink (nat.Table.FromExternal) to
// the container, whose MAC is resolved with ND (neigh6.go). A container
// reaching the uplink's IPv6 address is hairpinned.

// setupNAT6 enables NAT66 on the route when the gateway, the table and the
// uplink all have IPv6.
func (r *route) setupNAT6(g *Gateway, up uplink.Sender) {
	n6, ok := up.(uplink.NAT66)
	if !ok || g.v6 == nil {
		return
	}
	a := n6.Addr6()
	if a.IsValid() && r.nat.Config().External6 == a {
		r.ext6, r.has6 = a.As16(), true
	}
}

// forwardNAT6 routes ip, which a container at ethSrc sent to the gateway's
// MAC for a destination outside the /64 (its hop limit was checked),
// through NAT66.
func (g *Gateway) forwardNAT6(ip wire.IPv6, ethSrc [6]byte) {
	r := g.route
	if len(ip) > g.mtu {
		g.stats.inc(cntTooBig)
		return
	}
	if ip.Dst() != r.ext6 && len(ip) > r.mtu {
		g.stats.inc(cntFragNeeded)
		g.sendError6(ip, ethSrc, wire.ICMPv6PacketTooBig, 0, uint32(r.mtu))
		return
	}
	g.learn6(ip.Src(), ethSrc)
	buf := g.getBuf()
	pkt := (*buf)[UplinkHeadroom : UplinkHeadroom+len(ip)]
	copy(pkt, ip)
	wire.IPv6(pkt).DecHopLimit()
	res := r.nat.FromInternal(pkt, false, r.clock())
	g.dispatch6(buf, pkt, res)
}

// fromUplinkNAT6 handles an IPv6 packet the uplink received for its IPv6
// address: NAT66 (FromExternal), then delivery to a container. Packets
// with hop limit 1 or over the gateway's MTU are dropped and counted,
// without an ICMPv6 error to the outside, as for IPv4.
func (g *Gateway) fromUplinkNAT6(pkt []byte) {
	r := g.route
	ip, err := wire.ParseIPv6(pkt)
	switch {
	case !r.has6:
		g.stats.inc(cntIPv6)
		return
	case err != nil:
		g.stats.inc(cntMalformed)
		return
	case ip.HopLimit() <= 1:
		g.stats.inc(cntTTLExceeded)
		return
	}
	res := r.nat.FromExternal(ip, false, r.clock())
	if res.Action == nat.Drop {
		g.stats.inc(cntNATDrops)
		return
	}
	if len(ip) > g.mtu {
		g.stats.inc(cntTooBig)
		return
	}
	buf := g.getBuf()
	out := (*buf)[UplinkHeadroom : UplinkHeadroom+len(ip)]
	copy(out, ip)
	wire.IPv6(out).DecHopLimit()
	g.dispatch6(buf, out, res)
}

// dispatch6 sends the translated IPv6 packet pkt, which lives in buf at
// UplinkHeadroom, where res says, and takes ownership of buf.
func (g *Gateway) dispatch6(buf *[]byte, pkt []byte, res nat.Result) {
	switch res.Action {
	case nat.ToExternal:
		defer g.putBuf(buf)
		if err := g.route.up.Send((*buf)[:UplinkHeadroom+len(pkt)], UplinkHeadroom); err != nil {
			g.stats.inc(cntUplinkErrors)
			return
		}
		g.stats.inc(cntForwarded6)
	case nat.ToInternal:
		g.deliver6(buf, len(pkt))
	default:
		g.stats.inc(cntNATDrops)
		g.putBuf(buf)
	}
}
