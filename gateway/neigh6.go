package gateway

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/wire"
)

// The containers' IPv6 neighbours: their MACs by IPv6 address, learned
// from what they route through the gateway (port security checked the
// source is the port's) and from their neighbor solicitations and
// advertisements, and resolved with a neighbor solicitation (RFC 4861 7.2)
// when a packet for one comes from the uplink unknown.

// neighCache6 is the gateway's IPv6 neighbour cache.
type neighCache6 = neigh.Cache[[16]byte, qframe]

// isNeighbor6 reports whether a can be a container's address: in the /64,
// not the gateway's own, not the subnet-router anycast address.
func (g *Gateway) isNeighbor6(a [16]byte) bool {
	return g.v6.prefix.Contains(netip.AddrFrom16(a)) && a != g.v6.addr && a != g.v6.prefix.Addr().As16()
}

// learn6 records a container's address at mac and sends what waited for
// it.
func (g *Gateway) learn6(a [16]byte, mac [6]byte) {
	if !g.isNeighbor6(a) || !isUnicastMAC(mac) {
		return
	}
	for _, q := range g.learned(g.v6.neigh.Learn(a, mac, g.clock(), true)) {
		g.sendTo6(q.p, q.n, mac)
	}
}

// learnNA learns from a neighbor advertisement a container sent (to the
// gateway's solicitation, or unsolicited): its target at its target
// link-layer address.
func (g *Gateway) learnNA(m wire.ICMP, ethSrc [6]byte) {
	nd, err := wire.ParseND(m)
	if err != nil || nd.Type != wire.ICMPv6NeighborAdvertisement {
		return
	}
	mac := ethSrc
	if nd.HasTargetLL {
		mac = nd.TargetLL
	}
	g.learn6(nd.Target, mac)
}

// resolve6 returns the MAC of the container dst, or queues q (which it
// then owns) and sends a neighbor solicitation; ok is false then.
func (g *Gateway) resolve6(dst [16]byte, q qframe) (mac [6]byte, ok bool) {
	now := g.clock()
	if mac, st := g.v6.neigh.Lookup(dst, now); st != neigh.Missing {
		return mac, true
	}
	if g.queued(g.v6.neigh.Queue(dst, q, now), q) {
		g.sendNS(dst)
	}
	return mac, false
}

// sendNS multicasts a neighbor solicitation for target to its
// solicited-node group, from the gateway's global address (RFC 4861 7.2.2).
func (g *Gateway) sendNS(target [16]byte) {
	n := wire.NSLen + wire.NDLLOptLen
	grp := wire.SolicitedNode(target)
	buf, out := g.answer6(wire.MulticastMAC(grp), g.v6.addr, grp, wire.ProtoICMPv6, wire.NDHopLimit, n)
	wire.PutNS(out, target, g.mac)
	wire.ICMP(out).UpdateChecksum6(checksum.PseudoHeaderIPv6(g.v6.addr, grp, wire.ProtoICMPv6, uint32(n)))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+n) {
		g.stats.inc(cntNeighSolicits)
	}
}

// sendTo6 puts an Ethernet header to mac in front of the IPv6 packet of n
// bytes at UplinkHeadroom in buf and queues it for Read.
func (g *Gateway) sendTo6(buf *[]byte, n int, mac [6]byte) {
	off := UplinkHeadroom - wire.EthernetLen
	wire.PutEthernet((*buf)[off:], mac, g.mac, wire.EtherTypeIPv6)
	g.enqueueAt(buf, off, wire.EthernetLen+n)
}

// deliver6 sends the IPv6 packet of n bytes in buf at UplinkHeadroom to
// the container its destination names, resolving its MAC with ND when it
// is unknown. It takes ownership of buf.
func (g *Gateway) deliver6(buf *[]byte, n int) {
	dst := wire.IPv6((*buf)[UplinkHeadroom : UplinkHeadroom+n]).Dst()
	if !g.isNeighbor6(dst) {
		g.stats.inc(cntMartian)
		g.putBuf(buf)
		return
	}
	g.stats.inc(cntToContainer6)
	if mac, ok := g.resolve6(dst, qframe{p: buf, off: UplinkHeadroom, n: n}); ok {
		g.sendTo6(buf, n, mac)
	}
}

// forget6 removes the container a from the IPv6 neighbours and drops what
// waits for it.
func (g *Gateway) forget6(a netip.Addr) {
	if g.v6 == nil || !a.Is6() {
		return
	}
	for _, q := range g.v6.neigh.Forget(a.As16()) {
		g.stats.inc(cntPendingExpired)
		g.putBuf(q.p)
	}
}
