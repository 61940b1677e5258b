package gateway

import (
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/wire"
)

// LocalService serves TCP or UDP ports on the gateway's own address, for
// the containers only: the embedded DNS server (package dns) is one.
// Datagrams the uplink receives never reach it, so it is never a service
// of the outside.
type LocalService interface {
	// Claims reports whether the service takes datagrams of the IP
	// protocol proto (wire.ProtoTCP, wire.ProtoUDP) to port. It is
	// called for every unfragmented TCP and UDP datagram to the
	// gateway's address, and must be cheap and safe for concurrent use.
	Claims(proto uint8, port uint16) bool
	// Deliver hands over one IPv4 datagram or IPv6 packet (header
	// included, cut to its total or payload length, transport checksum
	// not verified) that a container sent to the gateway's address (its
	// IPv4 one, or its global IPv6 one when it has IPv6). It must not
	// block and must not keep datagram or answer after it returns.
	//
	// When answer is not nil (at least the gateway's MTU long) the
	// service may write its answer to datagram there at once, an IP
	// packet from the gateway's address to datagram's source, and return
	// its length; the gateway sends it to the MAC datagram came from.
	// Otherwise, and for answers that come later, it returns 0 and sends
	// them with SendLocal.
	Deliver(datagram, answer []byte) int
}

// answer is where an answer at once goes (WriteAnswer): buf takes the
// frame, virtio_net_hdr included; n is its length, 0 for none.
type answer struct {
	buf []byte
	n   int
}

// claimedLocal reports whether v, addressed to the gateway, is for its
// LocalService: TCP or UDP, not a fragment, to a port the service claims.
// It comes before the host loopback, which otherwise takes all TCP and
// UDP to the gateway's address.
func (g *Gateway) claimedLocal(v *ipv4View) bool {
	if g.local == nil || v.isFragment() || len(v.payload) < wire.UDPLen {
		return false
	}
	switch v.proto {
	case wire.ProtoUDP:
		return g.local.Claims(v.proto, wire.UDP(v.payload).DstPort())
	case wire.ProtoTCP:
		// The ports are the first 4 bytes of TCP too; the service
		// parses the rest.
		return g.local.Claims(v.proto, wire.TCP(v.payload).DstPort())
	}
	return false
}

// serveLocal hands v, from ethSrc, to the LocalService, with a's room for
// an answer at once.
func (g *Gateway) serveLocal(v *ipv4View, ethSrc [6]byte, a *answer) {
	g.stats.inc(cntLocalIn)
	const hdr = vswitch.VnetHdrLen + wire.EthernetLen
	if a == nil || len(a.buf) < hdr+g.mtu {
		g.local.Deliver(v.datagram, nil)
		return
	}
	pkt := a.buf[hdr : hdr+g.mtu]
	n := g.local.Deliver(v.datagram, pkt)
	if n == 0 {
		return
	}
	h, err := wire.ParseIPv4(pkt[:min(n, len(pkt))])
	if err != nil || len(h) != n || h.Src() != g.addr || h.Dst() != v.src {
		g.stats.inc(cntMalformed)
		return
	}
	clear(a.buf[:vswitch.VnetHdrLen])
	wire.PutEthernet(a.buf[vswitch.VnetHdrLen:], ethSrc, g.mac, wire.EtherTypeIPv4)
	a.n = hdr + n
	g.stats.inc(cntLocalOut)
}

// serveLocal6 hands ip, an IPv6 packet from ethSrc to the gateway's
// global address, to the LocalService if it claims it (u is its upper
// layer), and reports whether it did.
func (g *Gateway) serveLocal6(ip wire.IPv6, u *wire.IPv6Upper, ethSrc [6]byte) bool {
	if g.local == nil || u.Fragment || !u.HasHeader() || len(ip) < u.Offset+wire.UDPLen || ip.Src() == [16]byte{} ||
		u.Proto != wire.ProtoUDP && u.Proto != wire.ProtoTCP ||
		!g.local.Claims(u.Proto, wire.UDP(ip[u.Offset:]).DstPort()) { // TCP's ports are where UDP's are
		return false
	}
	g.learn6(ip.Src(), ethSrc)
	g.stats.inc(cntLocalIn)
	g.local.Deliver(ip, nil)
	return true
}

// SendLocal sends the IPv4 datagram or IPv6 packet pkt, which the
// LocalService built with the gateway's address as its source, to the
// container it is addressed to: over IPv4 at its MAC from the neighbour
// table, or ARP; over IPv6 at its MAC from the IPv6 neighbour cache (which
// learnt it from the query), or a neighbor solicitation. It does not keep
// pkt. Packets that are malformed, larger than the MTU, not from the
// gateway's address or not for a host of the subnet are dropped and
// counted. SendLocal is safe for concurrent use and never blocks.
func (g *Gateway) SendLocal(pkt []byte) {
	h, err := wire.ParseIPv4(pkt)
	if err != nil && g.v6 != nil {
		g.sendLocal6(pkt)
		return
	}
	if err != nil || len(h) > g.mtu || h.Src() != g.addr {
		g.stats.inc(cntMalformed)
		return
	}
	if buf, n, ok := g.takeLocal(h); ok {
		g.deliver(buf, n)
	}
}

// takeLocal copies pkt, from the LocalService, behind UplinkHeadroom into
// a buffer of the pool, which it returns with pkt's length, and counts
// it; ok is false after Close.
func (g *Gateway) takeLocal(pkt []byte) (buf *[]byte, n int, ok bool) {
	select {
	case <-g.done:
		return nil, 0, false
	default:
	}
	buf = g.getBuf()
	n = copy((*buf)[UplinkHeadroom:], pkt)
	g.stats.inc(cntLocalOut)
	return buf, n, true
}

// sendLocal6 is SendLocal for an IPv6 packet.
func (g *Gateway) sendLocal6(pkt []byte) {
	ip, err := wire.ParseIPv6(pkt)
	if err != nil || len(ip) > g.mtu || ip.Src() != g.v6.addr || !g.isNeighbor6(ip.Dst()) {
		g.stats.inc(cntMalformed)
		return
	}
	buf, n, ok := g.takeLocal(ip)
	if !ok {
		return
	}
	if mac, ok := g.resolve6(ip.Dst(), qframe{p: buf, off: UplinkHeadroom, n: n}); ok {
		g.sendTo6(buf, n, mac)
	}
}
