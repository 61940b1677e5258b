package gateway

import (
	"encoding/binary"
	"time"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// UplinkHeadroom is the room an uplink's Send may use in front of a
// packet: uplink.Headroom, a virtio_net_hdr and an Ethernet header.
const UplinkHeadroom = uplink.Headroom

// Further ICMP types and codes the router sends (RFC 792, RFC 1191).
const (
	icmpTimeExceeded = 11
	codeFragNeeded   = 4
	flagDF           = 0x40 // in the high byte of the flags and fragment offset
	flagMF           = 0x20
)

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
	if v.hdr[8] <= 1 {
		// RFC 1812 5.3.1: time exceeded in transit.
		g.stats.inc(cntTTLExceeded)
		g.sendError(v, ethSrc, icmpTimeExceeded, 0, 0)
		return
	}
	toUplink := v.dst != r.ext
	if toUplink && len(v.datagram) > r.mtu && v.hdr[6]&flagDF != 0 {
		// RFC 1191: fragmentation needed, with the next-hop MTU.
		g.stats.inc(cntFragNeeded)
		g.sendError(v, ethSrc, icmpUnreachable, codeFragNeeded, uint32(r.mtu))
		return
	}
	buf := g.getBuf()
	pkt := (*buf)[UplinkHeadroom : UplinkHeadroom+len(v.datagram)]
	copy(pkt, v.datagram)
	decTTL(pkt)
	if v.dst == g.addr {
		// toHostLoopback said so.
		rewriteAddr(pkt, 16, r.hostLo, false)
	}
	res := r.nat.FromInternal(pkt, false, r.clock())
	g.dispatch(buf, pkt, res)
}

// FromUplink handles a datagram the uplink received for its address: NAT
// (FromExternal), then delivery to a container. pkt may be modified; it is
// not kept. FromUplink is safe for concurrent use; it does nothing if the
// gateway has no route.
func (g *Gateway) FromUplink(pkt []byte) {
	r := g.route
	if r == nil {
		return
	}
	g.stats.inc(cntUplinkIn)
	v, reason := parseIPv4(pkt)
	if reason != cntNone {
		g.stats.inc(reason)
		return
	}
	if v.hdr[8] <= 1 {
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
	decTTL(out)
	if r.hasHostLo && [4]byte(out[12:16]) == r.hostLo {
		rewriteAddr(out, 12, g.addr, false)
	}
	g.dispatch(buf, out, res)
}

// toHostLoopback reports whether v, addressed to the gateway, goes to the
// host's loopback instead (Config.HostLoopback): TCP and UDP, not
// fragments (their later fragments could not follow).
func (g *Gateway) toHostLoopback(v *ipv4View) bool {
	r := g.route
	return r != nil && r.hasHostLo && (v.proto == protoTCP || v.proto == protoUDP) && !v.isFragment()
}

// rewriteAddr replaces the IPv4 address at offset at (12: source, 16:
// destination) of the datagram p with a, updating the header checksum and
// the TCP or UDP checksum (its pseudo-header) incrementally (RFC 1624).
// With partial, the TCP or UDP checksum field holds the pseudo-header sum
// only (VIRTIO_NET_HDR_F_NEEDS_CSUM), updated as such.
func rewriteAddr(p []byte, at int, a [4]byte, partial bool) {
	old := [4]byte(p[at : at+4])
	delta := checksum.DeltaAddr4(old, a)
	copy(p[at:at+4], a[:])
	binary.BigEndian.PutUint16(p[10:12], checksum.Update(binary.BigEndian.Uint16(p[10:12]), delta))
	if binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
		return // a later fragment: no L4 header
	}
	hl := int(p[0]&0x0f) * 4
	switch p[9] {
	case protoTCP:
		if len(p) >= hl+18 {
			c := binary.BigEndian.Uint16(p[hl+16 : hl+18])
			if partial {
				c = checksum.UpdatePartial(c, delta)
			} else {
				c = checksum.Update(c, delta)
			}
			binary.BigEndian.PutUint16(p[hl+16:hl+18], c)
		}
	case protoUDP:
		if partial {
			if len(p) >= hl+8 {
				binary.BigEndian.PutUint16(p[hl+6:hl+8], checksum.UpdatePartial(binary.BigEndian.Uint16(p[hl+6:hl+8]), delta))
			}
			return
		}
		if len(p) >= hl+8 {
			if c := binary.BigEndian.Uint16(p[hl+6 : hl+8]); c != 0 {
				c = checksum.Update(c, delta)
				if c == 0 {
					c = 0xffff
				}
				binary.BigEndian.PutUint16(p[hl+6:hl+8], c)
			}
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
	const hl = ipv4MinHdr
	if int(pkt[0]&0x0f)*4 != hl {
		g.stats.inc(cntTooBig)
		return
	}
	ff := binary.BigEndian.Uint16(pkt[6:8])
	baseOff := int(ff & 0x1fff)
	lastMF := ff&(uint16(flagMF)<<8) != 0
	chunk := (r.mtu - hl) &^ 7
	payload := pkt[hl:]
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		fb := g.getBuf()
		f := (*fb)[UplinkHeadroom : UplinkHeadroom+hl+end-off]
		copy(f, pkt[:hl])
		copy(f[hl:], payload[off:end])
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		fo := uint16(baseOff + off/8)
		if end < len(payload) || lastMF {
			fo |= uint16(flagMF) << 8
		}
		binary.BigEndian.PutUint16(f[6:8], fo)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:12], ipv4HeaderChecksum(f[:hl]))
		if err := r.up.Send((*fb)[:UplinkHeadroom+len(f)], UplinkHeadroom); err != nil {
			g.stats.inc(cntUplinkErrors)
		} else {
			g.stats.inc(cntFragmentsSent)
		}
		g.putBuf(fb)
	}
	g.stats.inc(cntForwarded)
}

// deliver sends the datagram of n bytes in buf at UplinkHeadroom to the
// container its destination names, resolving its MAC through the neighbour
// table, or ARP when it is unknown. It takes ownership of buf.
func (g *Gateway) deliver(buf *[]byte, n int) {
	pkt := (*buf)[UplinkHeadroom : UplinkHeadroom+n]
	dst := [4]byte(pkt[16:20])
	if !g.isNeighborAddr(dst) {
		g.stats.inc(cntMartian)
		g.putBuf(buf)
		return
	}
	if mac, ok := g.neigh.lookup(dst, g.now()); ok {
		g.sendTo(buf, n, mac)
		return
	}
	ask, ok := g.pending.add(dst, qframe{p: buf, off: UplinkHeadroom, n: n}, g.now())
	if !ok {
		g.stats.inc(cntPendingDropped)
		g.putBuf(buf)
	} else {
		g.stats.inc(cntPendingQueued)
	}
	for _, q := range ask.expired {
		g.stats.inc(cntPendingExpired)
		g.putBuf(q.p)
	}
	if ask.request {
		g.sendARPRequest(dst)
	}
}

// sendTo puts an Ethernet header to mac in front of the datagram of n bytes
// at UplinkHeadroom in buf and queues it for Read.
func (g *Gateway) sendTo(buf *[]byte, n int, mac [6]byte) {
	off := UplinkHeadroom - ethHdrLen
	putEthernet((*buf)[off:], mac, g.mac, etherTypeIPv4)
	g.enqueueAt(buf, off, ethHdrLen+n)
}

// decTTL decrements the TTL of the IPv4 header p and updates its checksum
// incrementally (RFC 1624 equation 3).
func decTTL(p []byte) {
	old := binary.BigEndian.Uint16(p[8:10])
	p[8]--
	nw := binary.BigEndian.Uint16(p[8:10])
	hc := binary.BigEndian.Uint16(p[10:12])
	binary.BigEndian.PutUint16(p[10:12], ^checksum.Fold(uint32(^hc)+uint32(^old)+uint32(nw)))
}

// echoFromOutside answers an ICMP echo request from outside to the uplink's
// address, as the host the uplink is on the link (RFC 1122 3.2.2.6), and
// reports whether v was one.
func (g *Gateway) echoFromOutside(v *ipv4View) bool {
	r := g.route
	m := v.payload
	if v.proto != protoICMP || v.isFragment() || v.dst != r.ext || len(m) < icmpHdrLen ||
		m[0] != icmpEchoRequest || icmpChecksum(m) != 0 || !isHostAddr(v.src) {
		return false
	}
	buf := g.getBuf()
	if UplinkHeadroom+ipv4MinHdr+len(m) > len(*buf) {
		g.putBuf(buf)
		return false
	}
	ip := (*buf)[UplinkHeadroom : UplinkHeadroom+ipv4MinHdr+len(m)]
	h := ipv4Header{
		tos:      v.hdr[1] &^ 0x03,
		totalLen: uint16(len(ip)),
		id:       g.nextID(),
		ttl:      defaultTTL,
		proto:    protoICMP,
		src:      r.ext,
		dst:      v.src,
	}
	h.put(ip)
	reply := ip[ipv4MinHdr:]
	copy(reply, m)
	reply[0], reply[1] = icmpEchoReply, 0
	binary.BigEndian.PutUint16(reply[2:4], 0)
	binary.BigEndian.PutUint16(reply[2:4], icmpChecksum(reply))
	g.stats.inc(cntEchoReplies)
	g.toUplink(buf, ip)
	return true
}
