package gateway

import (
	"fmt"

	"github.com/tapswitch/tapswitch/internal/checksum"
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
}

// setupOut6 gives the gateway its IPv6 route when it has IPv6 and its
// uplink carries IPv6 (uplink.Sender6). It runs after setup6 and the IPv4
// route.
func (g *Gateway) setupOut6(cfg *Config) error {
	up, ok := cfg.Uplink.(uplink.Sender6)
	if g.v6 == nil || g.route == nil || !ok {
		return nil
	}
	o := &out6{up: up, mtu: cfg.Uplink.MTU()}
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
