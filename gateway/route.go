package gateway

import (
	"time"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/wire"
)

// UplinkHeadroom is the room an uplink's Send may use in front of a
// packet: uplink.Headroom, a virtio_net_hdr and an Ethernet header.
const UplinkHeadroom = uplink.Headroom

// route is the gateway's routing state: immutable after New.
type route struct {
	nat   *nat.Table
	up    uplink.Sender
	ext   [4]byte // the uplink's address
	mtu   int     // the uplink's MTU
	clock func() int64
	gso   uplink.GSOSender // up, when it takes super-segments; else nil
	// hostLo is Config.HostLoopback, when hasHostLo.
	hostLo    [4]byte
	hasHostLo bool
}

func newRoute(t *nat.Table, up uplink.Sender, clock func() int64) *route {
	if clock == nil {
		epoch := time.Now()
		clock = func() int64 { return int64(time.Since(epoch)) }
	}
	r := &route{nat: t, up: up, ext: up.Addr().As4(), mtu: up.MTU(), clock: clock}
	r.gso, _ = up.(uplink.GSOSender)
	return r
}

// forward routes a datagram a container sent to the gateway's MAC for a
// destination outside the subnet (RFC 1812 5.2/5.3): TTL checked and
// decremented, then NAT, then the uplink or, hairpinned, a container.
func (g *Gateway) forward(v *ipv4View, ethSrc [6]byte) {
	r := g.route
	if v.ip.TTL() <= 1 {
		// RFC 1812 5.3.1: time exceeded in transit.
		g.stats.inc(cntTTLExceeded)
		g.sendError(v, ethSrc, wire.ICMPTimeExceeded, 0, 0)
		return
	}
	toUplink := v.dst != r.ext
	if toUplink && len(v.datagram) > r.mtu && v.ip.DontFragment() {
		// RFC 1191: fragmentation needed, with the next-hop MTU.
		g.stats.inc(cntFragNeeded)
		g.sendError(v, ethSrc, wire.ICMPUnreachable, wire.ICMPCodeFragNeeded, uint32(r.mtu))
		return
	}
	buf := g.getBuf()
	pkt, res := g.outbound(v, buf, false)
	g.dispatch(buf, pkt, res)
}

// outbound copies the datagram v a container routes through the gateway
// into buf at UplinkHeadroom, decrements its TTL, readdresses it to the
// host's loopback when it is for the gateway's address (toHostLoopback or
// forwardGSO decided so), and translates it (NAT FromInternal). With
// partial, its TCP checksum field holds the pseudo-header sum only.
func (g *Gateway) outbound(v *ipv4View, buf *[]byte, partial bool) ([]byte, nat.Result) {
	r := g.route
	pkt := (*buf)[UplinkHeadroom : UplinkHeadroom+len(v.datagram)]
	copy(pkt, v.datagram)
	wire.IPv4(pkt).DecTTL()
	if v.dst == g.addr {
		rewriteAddr(pkt, false, r.hostLo, partial)
	}
	return pkt, r.nat.FromInternal(pkt, partial, r.clock())
}

// FromUplink handles a datagram the uplink received for its address: NAT
// (FromExternal), then delivery to a container; or an IPv6 packet (version
// 6) an uplink.Sender6 hands back for a container, delivered without NAT
// (route6.go). pkt may be modified; it is not kept. FromUplink is safe for concurrent use; it does nothing if the
// gateway has no route.
func (g *Gateway) FromUplink(pkt []byte) {
	r := g.route
	if r == nil {
		return
	}
	g.stats.inc(cntUplinkIn)
	if wire.IPVersion(pkt) == 6 {
		g.fromUplink6(pkt)
		return
	}
	v, reason := parseIPv4(pkt)
	if reason != cntNone {
		g.stats.inc(reason)
		return
	}
	if v.ip.TTL() <= 1 {
		// The gateway does not answer the outside with ICMP errors:
		// counted and dropped.
		g.stats.inc(cntTTLExceeded)
		return
	}
	res := r.nat.FromExternal(v.datagram, false, r.clock())
	if res.Action == nat.Drop {
		if res.Reason == nat.DropICMPType && g.echoFromOutside(&v) {
			return
		}
		g.stats.inc(cntNATDrops)
		return
	}
	if len(v.datagram) > g.mtu {
		g.stats.inc(cntTooBig)
		return
	}
	buf := g.getBuf()
	out := (*buf)[UplinkHeadroom : UplinkHeadroom+len(v.datagram)]
	copy(out, v.datagram)
	wire.IPv4(out).DecTTL()
	if r.hasHostLo && wire.IPv4(out).Src() == r.hostLo {
		rewriteAddr(out, true, g.addr, false)
	}
	g.dispatch(buf, out, res)
}

// toHostLoopback reports whether v, addressed to the gateway, goes to the
// host's loopback instead (Config.HostLoopback): TCP and UDP, not
// fragments (their later fragments could not follow).
func (g *Gateway) toHostLoopback(v *ipv4View) bool {
	r := g.route
	return r != nil && r.hasHostLo && (v.proto == wire.ProtoTCP || v.proto == wire.ProtoUDP) && !v.isFragment()
}

// rewriteAddr replaces the source (src) or destination IPv4 address of
// the datagram p with a, updating the header checksum and the TCP or UDP
// checksum (its pseudo-header) incrementally (RFC 1624). With partial, the
// TCP or UDP checksum field holds the pseudo-header sum only
// (VIRTIO_NET_HDR_F_NEEDS_CSUM), updated as such.
func rewriteAddr(p []byte, src bool, a [4]byte, partial bool) {
	ip := wire.IPv4(p)
	old := ip.Dst()
	if src {
		old = ip.Src()
	}
	delta := checksum.DeltaAddr4(old, a)
	if src {
		ip.SetSrc(a)
	} else {
		ip.SetDst(a)
	}
	ip.AdjustChecksum(delta)
	if ip.FragOff() != 0 {
		return // a later fragment: no L4 header
	}
	l4 := p[ip.HeaderLen():]
	switch ip.Protocol() {
	case wire.ProtoTCP:
		if len(l4) >= wire.TCPChecksumOffset+2 {
			t := wire.TCP(l4)
			if partial {
				t.SetChecksum(checksum.UpdatePartial(t.Checksum(), delta))
			} else {
				t.SetChecksum(checksum.Update(t.Checksum(), delta))
			}
		}
	case wire.ProtoUDP:
		if len(l4) < wire.UDPLen {
			return
		}
		u := wire.UDP(l4)
		switch c := u.Checksum(); {
		case partial:
			u.SetChecksum(checksum.UpdatePartial(c, delta))
		case c != 0:
			c = checksum.Update(c, delta)
			if c == 0 {
				c = 0xffff
			}
			u.SetChecksum(c)
		}
	}
}

// dispatch sends the translated datagram pkt, which lives in buf at
// UplinkHeadroom, where res says, and takes ownership of buf.
func (g *Gateway) dispatch(buf *[]byte, pkt []byte, res nat.Result) {
	switch res.Action {
	case nat.ToExternal:
		g.toUplink(buf, pkt)
	case nat.ToInternal:
		g.stats.inc(cntToContainer)
		g.deliver(buf, len(pkt))
	default:
		g.stats.inc(cntNATDrops)
		g.putBuf(buf)
	}
}

// toUplink sends pkt (in buf at UplinkHeadroom) through the uplink,
// fragmenting it when it is over the uplink's MTU (DF was checked before
// translation), and takes ownership of buf.
func (g *Gateway) toUplink(buf *[]byte, pkt []byte) {
	r := g.route
	defer g.putBuf(buf)
	if len(pkt) <= r.mtu {
		if err := r.up.Send((*buf)[:UplinkHeadroom+len(pkt)], UplinkHeadroom); err != nil {
			g.stats.inc(cntUplinkErrors)
			return
		}
		g.stats.inc(cntForwarded)
		return
	}
	g.fragment(pkt)
}

// fragment sends pkt through the uplink as fragments of at most the
// uplink's MTU (RFC 791 3.2). Datagrams with options are dropped and
// counted rather than fragmented.
func (g *Gateway) fragment(pkt []byte) {
	r := g.route
	var f wire.Fragmenter
	if f.Reset(wire.IPv4(pkt), r.mtu) != nil {
		g.stats.inc(cntTooBig)
		return
	}
	fb := g.getBuf()
	defer g.putBuf(fb)
	for {
		n := f.Next((*fb)[UplinkHeadroom:])
		if n == 0 {
			break
		}
		if err := r.up.Send((*fb)[:UplinkHeadroom+n], UplinkHeadroom); err != nil {
			g.stats.inc(cntUplinkErrors)
		} else {
			g.stats.inc(cntFragmentsSent)
		}
	}
	g.stats.inc(cntForwarded)
}

// deliver sends the datagram of n bytes in buf at UplinkHeadroom to the
// container its destination names, resolving its MAC through the neighbour
// table, or ARP when it is unknown. It takes ownership of buf.
func (g *Gateway) deliver(buf *[]byte, n int) {
	pkt := (*buf)[UplinkHeadroom : UplinkHeadroom+n]
	dst := wire.IPv4(pkt).Dst()
	if !g.isNeighborAddr(dst) {
		g.stats.inc(cntMartian)
		g.putBuf(buf)
		return
	}
	if mac, ok := g.resolve(dst, qframe{p: buf, off: UplinkHeadroom, n: n}); ok {
		g.sendTo(buf, n, mac)
	}
}

// sendTo puts an Ethernet header to mac in front of the datagram of n bytes
// at UplinkHeadroom in buf and queues it for Read.
func (g *Gateway) sendTo(buf *[]byte, n int, mac [6]byte) {
	off := UplinkHeadroom - wire.EthernetLen
	wire.PutEthernet((*buf)[off:], mac, g.mac, wire.EtherTypeIPv4)
	g.enqueueAt(buf, off, wire.EthernetLen+n)
}

// echoFromOutside answers an ICMP echo request from outside to the uplink's
// address, as the host the uplink is on the link (RFC 1122 3.2.2.6), and
// reports whether v was one.
func (g *Gateway) echoFromOutside(v *ipv4View) bool {
	r := g.route
	m := wire.ICMP(v.payload)
	if v.proto != wire.ProtoICMP || v.isFragment() || v.dst != r.ext || len(m) < wire.ICMPLen ||
		m.Type() != wire.ICMPEchoRequest || !m.Valid4() || !isHostAddr(v.src) {
		return false
	}
	buf := g.getBuf()
	if UplinkHeadroom+wire.IPv4MinLen+len(m) > len(*buf) {
		g.putBuf(buf)
		return false
	}
	ip := (*buf)[UplinkHeadroom : UplinkHeadroom+wire.IPv4MinLen+len(m)]
	h := wire.IPv4Header{
		TOS:      v.ip.TOS() &^ 0x03,
		TotalLen: uint16(len(ip)),
		ID:       g.nextID(),
		TTL:      wire.DefaultTTL,
		Protocol: wire.ProtoICMP,
		Src:      r.ext,
		Dst:      v.src,
	}
	h.Put(ip)
	reply := wire.ICMP(ip[wire.IPv4MinLen:])
	copy(reply, m)
	reply.SetType(wire.ICMPEchoReply, 0)
	reply.UpdateChecksum4()
	g.stats.inc(cntEchoReplies)
	g.toUplink(buf, ip)
	return true
}
