package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// Router advertisement timing and contents (RFC 4861 6.2.1, the kernel's
// and radvd's defaults).
const (
	// raMinInterval and raMaxInterval bound the time between unsolicited
	// RAs (MinRtrAdvInterval, MaxRtrAdvInterval).
	raMinInterval = 200 * time.Second
	raMaxInterval = 600 * time.Second
	// raRouterLifetime is AdvDefaultLifetime, 3 * MaxRtrAdvInterval.
	raRouterLifetime = 1800
	// raPrefixValid and raPrefixPreferred are the on-link prefix's
	// lifetimes (AdvValidLifetime, AdvPreferredLifetime).
	raPrefixValid     = 2592000
	raPrefixPreferred = 604800
	// hopLimit6 is the hop limit of what the gateway originates, other
	// than ND, and the Cur Hop Limit it advertises.
	hopLimit6 = 64
	// maxICMPv6ErrorLen bounds an ICMPv6 error packet: the IPv6 minimum
	// MTU (RFC 4443 2.4 (c)).
	maxICMPv6ErrorLen = wire.IPv6MinMTU
)

// ipv6 is the gateway's IPv6 state, fixed by New.
type ipv6 struct {
	prefix netip.Prefix // the containers' /64, Addr6 masked
	addr   [16]byte     // Addr6's address
	ll     [16]byte     // link-local, from the MAC
	ra     bool         // send router advertisements
	neigh  *neighCache6 // the containers' MACs (neigh6.go)
	out    *out6        // the route to an uplink carrying IPv6 (route6.go); nil without
}

// setup6 validates the IPv6 part of cfg and, with Addr6 set, queues the
// unsolicited NAs (RFC 4861 7.2.6) and, unless NoRA, the first RA.
func (g *Gateway) setup6(cfg *Config) error {
	p := cfg.Addr6
	if !p.IsValid() {
		if cfg.NoRA {
			return fmt.Errorf("NoRA without Addr6: %w", ErrInvalidConfig)
		}
		return nil
	}
	a := p.Addr()
	if !a.Is6() || a.Is4In6() || a.Zone() != "" || a.IsMulticast() || a.IsLinkLocalUnicast() ||
		a.IsLoopback() || a.IsUnspecified() || a == p.Masked().Addr() {
		return fmt.Errorf("addr6 %s is not a unicast IPv6 host address of its prefix: %w", p, ErrInvalidConfig)
	}
	if p.Bits() != 64 {
		return fmt.Errorf("addr6 %s: the prefix must be a /64: %w", p, ErrInvalidConfig)
	}
	if g.mtu < wire.IPv6MinMTU {
		return fmt.Errorf("mtu %d: IPv6 needs at least %d: %w", g.mtu, wire.IPv6MinMTU, ErrInvalidConfig)
	}
	g.v6 = &ipv6{prefix: p.Masked(), addr: a.As16(), ll: wire.LinkLocal(g.mac), ra: !cfg.NoRA}
	for _, t := range [][16]byte{g.v6.ll, g.v6.addr} {
		g.sendNA(wire.MulticastMAC(wire.AllNodes), wire.AllNodes, t, wire.NAFlagRouter|wire.NAFlagOverride)
	}
	if g.v6.ra {
		g.sendRA(wire.MulticastMAC(wire.AllNodes), wire.AllNodes)
	}
	return nil
}

// start6 starts the periodic RAs, once New can no longer fail.
func (g *Gateway) start6() {
	if g.v6 != nil && g.v6.ra {
		go g.advertise()
	}
}

// Addr6 returns the gateway's IPv6 address and prefix; zero without IPv6.
func (g *Gateway) Addr6() netip.Prefix {
	if g.v6 == nil {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(netip.AddrFrom16(g.v6.addr), 64)
}

// LinkLocal returns the gateway's link-local address; zero without IPv6.
func (g *Gateway) LinkLocal() netip.Addr {
	if g.v6 == nil {
		return netip.Addr{}
	}
	return netip.AddrFrom16(g.v6.ll)
}

// advertise sends an unsolicited RA to all nodes every raMinInterval to
// raMaxInterval (uniformly random, RFC 4861 6.2.4) until Close.
func (g *Gateway) advertise() {
	for {
		d := raMinInterval + rand.N(raMaxInterval-raMinInterval)
		t := time.NewTimer(d)
		select {
		case <-g.done:
			t.Stop()
			return
		case <-t.C:
			g.sendRA(wire.MulticastMAC(wire.AllNodes), wire.AllNodes)
		}
	}
}

// isOwn6 reports whether a is one of the gateway's unicast addresses.
func (v *ipv6) isOwn6(a [16]byte) bool { return a == v.addr || a == v.ll }

// forGateway6 reports whether a packet to dst is one the gateway reads:
// to one of its addresses, to all nodes, all routers, or the solicited-node
// group of one of its addresses.
func (v *ipv6) forGateway6(dst [16]byte) bool {
	return v.isOwn6(dst) || dst == wire.AllNodes || dst == wire.AllRouters ||
		dst == wire.SolicitedNode(v.addr) || dst == wire.SolicitedNode(v.ll)
}

// handleIPv6 handles an IPv6 packet in the Ethernet frame eth from ethSrc.
func (g *Gateway) handleIPv6(eth []byte, ethSrc [6]byte) {
	ip, err := wire.ParseIPv6(eth[wire.EthernetLen:])
	switch {
	case errors.Is(err, wire.ErrTooShort):
		g.stats.inc(cntMalformed)
		return
	case err != nil:
		g.stats.inc(cntBadIPv4) // a bad IP header, of either version
		return
	}
	src, dst := ip.Src(), ip.Dst()
	if src[0] == 0xff || netip.AddrFrom16(src).IsLoopback() || g.v6.isOwn6(src) {
		g.stats.inc(cntMartian)
		return
	}
	v := g.v6
	if !v.forGateway6(dst) {
		if [6]byte(eth[0:6]) != g.mac {
			// Multicast to groups the gateway is not in (MLD
			// reports, other solicited-node groups), or unicast
			// between containers that the switch flooded.
			g.stats.inc(cntNotForUs)
			return
		}
		g.route6(ip, ethSrc)
		return
	}
	u, err := ip.Upper()
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if !u.HasHeader() || u.Fragment {
		g.stats.inc(cntFragments)
		return
	}
	if dst == v.addr && g.serveLocal6(ip, &u, ethSrc) {
		return
	}
	// The local service (DNS) first, then the host loopback, as for IPv4.
	if g.toHostLoopback6(ip, u) {
		g.forward6(ip, ethSrc, true)
		return
	}
	switch u.Proto {
	case wire.ProtoICMPv6:
		g.handleICMPv6(ip, u.Offset, ethSrc)
	case wire.ProtoUDP:
		if v.isOwn6(dst) {
			// Nothing listens on the gateway (RFC 4443 3.1 code 4).
			g.sendError6(ip, ethSrc, wire.ICMPv6Unreachable, 4, 0)
			return
		}
		g.stats.inc(cntIgnored)
	case wire.ProtoTCP:
		if v.isOwn6(dst) {
			g.reset6(ip, u.Offset, ethSrc)
			return
		}
		g.stats.inc(cntIgnored)
	default:
		g.stats.inc(cntIgnored)
	}
}

// route6 handles a packet to the gateway's MAC for another address: an
// expired hop limit is answered with time exceeded, the rest goes through
// NAT66 when the gateway has it (nat6.go), to an uplink that carries IPv6
// (forward6), or, without either, is answered with no route to
// destination (RFC 4443 3.1 code 0, 3.3).
func (g *Gateway) route6(ip wire.IPv6, ethSrc [6]byte) {
	dst := ip.Dst()
	if dst[0] == 0xff {
		g.stats.inc(cntNoErrorAllowed)
		return
	}
	if netip.AddrFrom16(dst).IsLinkLocalUnicast() || g.v6.prefix.Contains(netip.AddrFrom16(dst)) {
		// On-link: the container should have asked ND, not the router.
		g.stats.inc(cntNotForUs)
		return
	}
	if ip.HopLimit() <= 1 {
		g.stats.inc(cntTTLExceeded)
		g.sendError6(ip, ethSrc, wire.ICMPv6TimeExceeded, 0, 0)
		return
	}
	switch {
	case g.route != nil && g.route.has6:
		g.forwardNAT6(ip, ethSrc)
		return
	case g.v6.out != nil:
		g.forward6(ip, ethSrc, false)
		return
	}
	g.sendError6(ip, ethSrc, wire.ICMPv6Unreachable, 0, 0)
}

// handleICMPv6 handles the ICMPv6 message at off in ip, sent to one of the
// gateway's addresses or groups.
func (g *Gateway) handleICMPv6(ip wire.IPv6, off int, ethSrc [6]byte) {
	m, err := wire.ParseICMP(ip[off:])
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if checksum.Checksum(m, ip.PseudoSum(wire.ProtoICMPv6, len(m))) != 0 {
		g.stats.inc(cntBadChecksum)
		return
	}
	switch m.Type() {
	case wire.ICMPv6EchoRequest:
		g.echo6(ip, m, ethSrc)
	case wire.ICMPv6NeighborSolicitation:
		g.handleNS(ip, m, ethSrc)
	case wire.ICMPv6RouterSolicitation:
		g.handleRS(ip, m, ethSrc)
	case wire.ICMPv6NeighborAdvertisement:
		// A container's answer to the gateway's solicitation
		// (neigh6.go); nothing to send back.
		g.learnNA(m, ethSrc)
		g.stats.inc(cntIgnored)
	default:
		// NAs, RAs of others (port security drops those of
		// containers), MLD, errors: nothing to answer.
		g.stats.inc(cntIgnored)
	}
}

// echo6 answers an echo request to one of the gateway's unicast addresses
// from that address (RFC 4443 4.2); a request to a group is ignored.
func (g *Gateway) echo6(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	if !g.v6.isOwn6(ip.Dst()) || ip.Src() == [16]byte{} {
		g.stats.inc(cntIgnored)
		return
	}
	buf, out := g.answer6(ethSrc, ip.Dst(), ip.Src(), wire.ProtoICMPv6, hopLimit6, len(m))
	copy(out, m)
	r := wire.ICMP(out)
	r.SetType(wire.ICMPv6EchoReply, 0)
	r.UpdateChecksum6(checksum.PseudoHeaderIPv6(ip.Dst(), ip.Src(), wire.ProtoICMPv6, uint32(len(m))))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+len(m)) {
		g.stats.inc(cntEchoReplies)
	}
}

// handleNS answers a neighbor solicitation for one of the gateway's
// addresses (RFC 4861 7.1.1 checks, 7.2.4 reply). A solicitation from the
// unspecified address is another node's duplicate address detection for
// an address the gateway has (RFC 4862 5.4.3): it is answered to all
// nodes, without the solicited flag, so that the node gives it up.
func (g *Gateway) handleNS(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	nd, err := wire.ParseND(m)
	src := ip.Src()
	dad := src == [16]byte{}
	switch {
	case err != nil, ip.HopLimit() != wire.NDHopLimit, nd.Target[0] == 0xff,
		dad && (nd.HasSourceLL || ip.Dst() != wire.SolicitedNode(nd.Target)):
		g.stats.inc(cntMalformed)
		return
	case !g.v6.isOwn6(nd.Target):
		g.stats.inc(cntIgnored)
		return
	}
	flags := wire.NAFlagRouter | wire.NAFlagOverride
	if dad {
		g.sendNA(wire.MulticastMAC(wire.AllNodes), wire.AllNodes, nd.Target, flags)
		return
	}
	mac := ethSrc
	if nd.HasSourceLL {
		mac = nd.SourceLL
	}
	g.learn6(src, mac) // RFC 4861 7.2.3; a link-local source is not kept
	g.sendNA(mac, src, nd.Target, flags|wire.NAFlagSolicited)
}

// handleRS answers a router solicitation (RFC 4861 6.1.1 checks) with an
// RA to the solicitor, or to all nodes for one from the unspecified
// address (6.2.6), within the error rate limit.
func (g *Gateway) handleRS(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	nd, err := wire.ParseND(m)
	src := ip.Src()
	if err != nil || ip.HopLimit() != wire.NDHopLimit || src == [16]byte{} && nd.HasSourceLL {
		g.stats.inc(cntMalformed)
		return
	}
	if !g.v6.ra {
		g.stats.inc(cntIgnored)
		return
	}
	if !g.limiter.allow(g.now()) {
		g.stats.inc(cntRateLimited)
		return
	}
	if src == [16]byte{} {
		g.sendRA(wire.MulticastMAC(wire.AllNodes), wire.AllNodes)
		return
	}
	g.sendRA(ethSrc, src)
}

// sendNA sends a neighbor advertisement for target, from the link-local
// address, to dst at ethDst.
func (g *Gateway) sendNA(ethDst [6]byte, dst, target [16]byte, flags uint8) {
	n := wire.NALen + wire.NDLLOptLen
	buf, out := g.answer6(ethDst, g.v6.ll, dst, wire.ProtoICMPv6, wire.NDHopLimit, n)
	wire.PutNA(out, target, flags, g.mac)
	wire.ICMP(out).UpdateChecksum6(checksum.PseudoHeaderIPv6(g.v6.ll, dst, wire.ProtoICMPv6, uint32(n)))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+n) {
		g.stats.inc(cntNeighAdverts)
	}
}

// sendRA sends a router advertisement, from the link-local address (RFC
// 4861 6.1.2), to dst at ethDst: the gateway as default router, the MTU,
// and the /64 on link with SLAAC off (addresses are given by attach).
func (g *Gateway) sendRA(ethDst [6]byte, dst [16]byte) {
	ra := wire.RA{
		HopLimit:          hopLimit6,
		RouterLifetime:    raRouterLifetime,
		SourceLL:          g.mac,
		MTU:               uint32(g.mtu),
		Prefix:            g.v6.prefix.Addr().As16(),
		PrefixLen:         64,
		ValidLifetime:     raPrefixValid,
		PreferredLifetime: raPrefixPreferred,
	}
	n := ra.Len()
	buf, out := g.answer6(ethDst, g.v6.ll, dst, wire.ProtoICMPv6, wire.NDHopLimit, n)
	wire.PutRA(out, &ra)
	wire.ICMP(out).UpdateChecksum6(checksum.PseudoHeaderIPv6(g.v6.ll, dst, wire.ProtoICMPv6, uint32(n)))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+n) {
		g.stats.inc(cntRouterAdverts)
	}
}

// sendError6 answers ip with an ICMPv6 error (RFC 4443 2.4): not about an
// error or a redirect, a packet to a group (the packet too big aside) or
// from the unspecified address, within the rate limit, quoting as much of
// ip as fits in the IPv6 minimum MTU, from the gateway's global address.
func (g *Gateway) sendError6(ip wire.IPv6, ethSrc [6]byte, typ, code uint8, rest uint32) {
	src, dst := ip.Src(), ip.Dst()
	if src == [16]byte{} || dst[0] == 0xff && typ != wire.ICMPv6PacketTooBig || isICMPv6Error(ip) {
		g.stats.inc(cntNoErrorAllowed)
		return
	}
	if !g.limiter.allow(g.now()) {
		g.stats.inc(cntRateLimited)
		return
	}
	quote := []byte(ip)
	if limit := maxICMPv6ErrorLen - wire.IPv6Len - wire.ICMPLen; len(quote) > limit {
		quote = quote[:limit]
	}
	n := wire.ICMPLen + len(quote)
	buf, out := g.answer6(ethSrc, g.v6.addr, src, wire.ProtoICMPv6, hopLimit6, n)
	e := wire.ICMP(out)
	e.SetType(typ, code)
	e.SetRest(rest)
	copy(e.Body(), quote)
	e.UpdateChecksum6(checksum.PseudoHeaderIPv6(g.v6.addr, src, wire.ProtoICMPv6, uint32(n)))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+n) {
		g.stats.inc(cntICMPErrors)
	}
}

// isICMPv6Error reports whether ip is an ICMPv6 error or redirect, about
// which no error is sent (RFC 4443 2.4 (e)); a packet whose upper layer
// cannot be found counts as one.
func isICMPv6Error(ip wire.IPv6) bool {
	u, err := ip.Upper()
	if err != nil {
		return true
	}
	if u.Proto != wire.ProtoICMPv6 || !u.HasHeader() {
		return false
	}
	if u.Offset >= len(ip) {
		return true
	}
	t := ip[u.Offset]
	return t < 128 || t == wire.ICMPv6Redirect
}

// answer6 takes a buffer for a packet from src to dst (at MAC ethDst) with
// hop limit hl, writes its Ethernet and IPv6 headers for a payload of
// protocol proto and n bytes, and returns the buffer and the payload to
// fill in.
func (g *Gateway) answer6(ethDst [6]byte, src, dst [16]byte, proto, hl uint8, n int) (*[]byte, []byte) {
	buf := g.getBuf()
	out := *buf
	wire.PutEthernet(out, ethDst, g.mac, wire.EtherTypeIPv6)
	h := wire.IPv6Header{PayloadLen: uint16(n), NextHeader: proto, HopLimit: hl, Src: src, Dst: dst}
	h.Put(out[wire.EthernetLen:])
	off := wire.EthernetLen + wire.IPv6Len
	return buf, out[off : off+n]
}

// reset6 answers a TCP segment to one of the gateway's addresses, where
// nothing listens, as a host in the CLOSED state does (RFC 9293
// 3.10.7.1): a reset unless the segment is one. Its checksum is checked
// first.
func (g *Gateway) reset6(ip wire.IPv6, off int, ethSrc [6]byte) {
	s, err := wire.ParseTCP(ip[off:])
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	// A segment from the unspecified address has nobody to answer.
	if !g.resetAllowed(s, checksum.Checksum(s, ip.PseudoSum(wire.ProtoTCP, len(s))), ip.Src() == [16]byte{}) {
		return
	}
	src, dst := ip.Dst(), ip.Src()
	buf, t := g.answer6(ethSrc, src, dst, wire.ProtoTCP, hopLimit6, wire.TCPMinLen)
	putReset(t, s)
	binary.BigEndian.PutUint16(t[16:18], checksum.Checksum(t, checksum.PseudoHeaderIPv6(src, dst, wire.ProtoTCP, wire.TCPMinLen)))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv6Len+wire.TCPMinLen) {
		g.stats.inc(cntTCPResets)
	}
}
