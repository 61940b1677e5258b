package gateway

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/wire"
)

// out6 is the gateway's IPv6 route to an uplink that carries IPv6
// untranslated (uplink.Sender6, the host uplink): immutable after New.
type out6 struct {
	up  uplink.Sender6
	mtu int // the uplink's MTU
	// hostLo is the uplink's Loopback6 when Config.HostLoopback is set
	// (hasHostLo): the gateway's IPv6 address stands for the host's ::1.
	hostLo    [16]byte
	hasHostLo bool
	// neigh holds the containers' MACs by IPv6 address, and the packets
	// from the uplink waiting for one (resolved with NS, RFC 4861 7.2).
	neigh *neigh.Cache[[16]byte, qframe]
}

// setupOut6 gives the gateway its IPv6 route when it has IPv6 and its
// uplink carries IPv6 (uplink.Sender6). It runs after setup6 and the IPv4
// route.
func (g *Gateway) setupOut6(cfg *Config, timeout time.Duration, limit int) error {
	up, ok := cfg.Uplink.(uplink.Sender6)
	if g.v6 == nil || g.route == nil || !ok {
		return nil
	}
	o := &out6{up: up, mtu: cfg.Uplink.MTU(), neigh: neigh.New[[16]byte, qframe](neigh.Config{Timeout: timeout, Limit: limit})}
	if o.mtu < wire.IPv6MinMTU {
		return fmt.Errorf("uplink mtu %d: IPv6 needs at least %d: %w", o.mtu, wire.IPv6MinMTU, ErrInvalidConfig)
	}
	lo := up.Loopback6()
	if !lo.Is6() || lo.Is4In6() || g.v6.prefix.Contains(lo) || lo.IsLoopback() || lo.IsMulticast() || lo.IsLinkLocalUnicast() {
		return fmt.Errorf("the uplink's IPv6 loopback %s: not an IPv6 unicast address outside the /64: %w", lo, ErrInvalidConfig)
	}
	if g.route.hasHostLo {
		o.hostLo, o.hasHostLo = lo.As16(), true
	}
	g.v6.out = o
	return nil
}

// toHostLoopback6 reports whether a packet to one of the gateway's own
// addresses goes to the host's ::1 instead (Config.HostLoopback, as
// toHostLoopback does for IPv4): TCP and UDP to its global address, not
// fragments.
func (g *Gateway) toHostLoopback6(ip wire.IPv6, u wire.IPv6Upper) bool {
	o := g.v6.out
	return o != nil && o.hasHostLo && ip.Dst() == g.v6.addr && !u.Fragment &&
		(u.Proto == wire.ProtoTCP || u.Proto == wire.ProtoUDP)
}

// forward6 routes ip, which a container at ethSrc sent to the gateway's MAC
// for a destination outside the /64 (or, with hostLo, to the gateway's
// address: the host's ::1), to the uplink: from an address of the /64 only
// (a link-local source never leaves the link, RFC 4291 2.5.6), packet too
// big over the uplink's MTU (RFC 8201: routers never fragment), the hop
// limit decremented (it was checked), the source learned as a neighbour.
func (g *Gateway) forward6(ip wire.IPv6, ethSrc [6]byte, hostLo bool) {
	o := g.v6.out
	if !g.isNeighbor6(ip.Src()) {
		g.stats.inc(cntMartian)
		return
	}
	if len(ip) > o.mtu {
		g.stats.inc(cntFragNeeded)
		g.sendError6(ip, ethSrc, wire.ICMPv6PacketTooBig, 0, uint32(o.mtu))
		return
	}
	g.learn6(ip.Src(), ethSrc)
	buf := g.getBuf()
	defer g.putBuf(buf)
	pkt := wire.IPv6((*buf)[UplinkHeadroom : UplinkHeadroom+len(ip)])
	copy(pkt, ip)
	pkt.SetHopLimit(pkt.HopLimit() - 1)
	if hostLo {
		rewriteAddr6(pkt, false, o.hostLo)
	}
	if err := o.up.Send6((*buf)[:UplinkHeadroom+len(pkt)], UplinkHeadroom); err != nil {
		g.stats.inc(cntUplinkErrors)
		return
	}
	g.stats.inc(cntForwarded6)
}

// fromUplink6 handles an IPv6 packet the uplink hands back for a
// container: the hop limit decremented, the host's ::1 (hostLo) shown as
// the gateway's address, then delivered to the container, whose MAC is
// resolved with NS when unknown.
func (g *Gateway) fromUplink6(pkt []byte) {
	o := g.outRoute6()
	if o == nil {
		g.stats.inc(cntIPv6)
		return
	}
	ip, err := wire.ParseIPv6(pkt)
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if len(ip) > g.mtu {
		g.stats.inc(cntTooBig)
		return
	}
	if ip.HopLimit() <= 1 {
		g.stats.inc(cntTTLExceeded)
		return
	}
	dst := ip.Dst()
	if !g.isNeighbor6(dst) {
		g.stats.inc(cntMartian)
		return
	}
	buf := g.getBuf()
	out := wire.IPv6((*buf)[UplinkHeadroom : UplinkHeadroom+len(ip)])
	copy(out, ip)
	out.SetHopLimit(out.HopLimit() - 1)
	if o.hasHostLo && out.Src() == o.hostLo {
		rewriteAddr6(out, true, g.v6.addr)
	}
	g.stats.inc(cntToContainer6)
	if mac, ok := g.resolve6(dst, qframe{p: buf, off: UplinkHeadroom, n: len(out)}); ok {
		g.sendTo6(buf, len(out), mac)
	}
}

// outRoute6 returns the IPv6 route, or nil without one.
func (g *Gateway) outRoute6() *out6 {
	if g.v6 == nil {
		return nil
	}
	return g.v6.out
}

// isNeighbor6 reports whether a can be a container's address: in the /64,
// not the gateway's own, not the subnet-router anycast address.
func (g *Gateway) isNeighbor6(a [16]byte) bool {
	return g.v6.prefix.Contains(netip.AddrFrom16(a)) && a != g.v6.addr && a != g.v6.prefix.Addr().As16()
}

// learn6 records a container's address at mac (port security checked that
// the address is the port's) and sends what waited for it.
func (g *Gateway) learn6(a [16]byte, mac [6]byte) {
	o := g.v6.out
	if o == nil || !g.isNeighbor6(a) || !isUnicastMAC(mac) {
		return
	}
	for _, q := range g.learned(o.neigh.Learn(a, mac, g.clock(), true)) {
		g.sendTo6(q.p, q.n, mac)
	}
}

// learnNA learns from a neighbor advertisement a container sent (to the
// gateway's solicitation): its target at its target link-layer address.
func (g *Gateway) learnNA(m wire.ICMP, ethSrc [6]byte) {
	if g.v6.out == nil {
		return
	}
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
	o := g.v6.out
	now := g.clock()
	if mac, st := o.neigh.Lookup(dst, now); st != neigh.Missing {
		return mac, true
	}
	if g.queued(o.neigh.Queue(dst, q, now), q) {
		g.sendNS(dst)
	}
	return mac, false
}

// sendNS multicasts a neighbor solicitation for target to its
// solicited-node group, from the gateway's global address (RFC 4861 7.2.2).
func (g *Gateway) sendNS(target [16]byte) {
	n := wire.NSLen + wire.NDLLOptLen
	grp := wire.SolicitedNode(target)
	buf, out := g.answer6(wire.MulticastMAC(grp), g.v6.addr, grp, wire.NDHopLimit, n)
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

// forget6 removes the container a from the IPv6 neighbours and drops what
// waits for it.
func (g *Gateway) forget6(a netip.Addr) {
	o := g.outRoute6()
	if o == nil || !a.Is6() {
		return
	}
	for _, q := range o.neigh.Forget(a.As16()) {
		g.stats.inc(cntPendingExpired)
		g.putBuf(q.p)
	}
}

// rewriteAddr6 replaces the source (src) or destination address of the
// IPv6 packet p with a, updating the TCP, UDP or ICMPv6 checksum (the
// pseudo-header's) incrementally (RFC 1624). A later fragment has no
// upper-layer header to update.
func rewriteAddr6(p wire.IPv6, src bool, a [16]byte) {
	old := p.Dst()
	if src {
		old = p.Src()
		p.SetSrc(a)
	} else {
		p.SetDst(a)
	}
	u, err := p.Upper()
	if err != nil || !u.HasHeader() {
		return
	}
	delta := checksum.DeltaAddr6(old, a)
	l4 := p[u.Offset:]
	switch u.Proto {
	case wire.ProtoTCP:
		if len(l4) >= wire.TCPChecksumOffset+2 {
			t := wire.TCP(l4)
			t.SetChecksum(checksum.Update(t.Checksum(), delta))
		}
	case wire.ProtoUDP:
		if len(l4) >= wire.UDPLen {
			d := wire.UDP(l4)
			c := checksum.Update(d.Checksum(), delta)
			if c == 0 {
				c = 0xffff
			}
			d.SetChecksum(c)
		}
	}
}
