package gateway

import "github.com/tapswitch/tapswitch/wire"

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
	// Deliver hands over one IPv4 datagram (header included, cut to its
	// total length, transport checksum not verified) that a container
	// sent to the gateway's address. It must not block and must not keep
	// datagram after it returns.
	Deliver(datagram []byte)
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

// serveLocal hands v to the LocalService.
func (g *Gateway) serveLocal(v *ipv4View) {
	g.stats.inc(cntLocalIn)
	g.local.Deliver(v.datagram)
}

// SendLocal sends the IPv4 datagram pkt, which the LocalService built with
// the gateway's address as its source, to the container it is addressed to
// (its MAC from the neighbour table, or ARP). It does not keep pkt. Datagrams
// that are malformed, larger than the MTU, not from the gateway's address
// or not for a host of the subnet are dropped and counted. SendLocal is safe
// for concurrent use and never blocks.
func (g *Gateway) SendLocal(pkt []byte) {
	h, err := wire.ParseIPv4(pkt)
	if err != nil || len(h) > g.mtu || h.Src() != g.addr {
		g.stats.inc(cntMalformed)
		return
	}
	select {
	case <-g.done:
		return
	default:
	}
	buf := g.getBuf()
	n := copy((*buf)[UplinkHeadroom:], h)
	g.stats.inc(cntLocalOut)
	g.deliver(buf, n)
}
