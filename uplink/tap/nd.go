package tap

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/internal/neigh"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/wire"
)

// The uplink as an IPv6 host on its link (Config.Addr6, RFC 4861): it
// answers neighbor solicitations for its addresses (Addr6 and the
// link-local address of its MAC) and echo requests to them, resolves its
// next hops (Gateway6, or the destination on the link) with neighbor
// solicitations into its own ND cache, and hands the other IPv6 packets
// to its addresses to Start's handle (NAT66 translates them back). It
// sends no router solicitation and takes no configuration from router
// advertisements: its address and next hop are static. Duplicate address
// detection (RFC 4862 5.4) is not done for Addr6: the spec assigns it.

// ipv6 is the uplink's IPv6 state, fixed by newTAP.
type ipv6 struct {
	addr   [16]byte     // Config.Addr6's address
	ll     [16]byte     // the link-local address of the uplink's MAC
	prefix netip.Prefix // Config.Addr6, masked
	gw     [16]byte     // Config.Gateway6
	hasGW  bool
	// neigh holds the IPv6 next hops' MACs and the packets waiting for
	// one, as TAP.neigh does for IPv4.
	neigh *neigh.Cache[[16]byte, []byte]
}

// newIPv6 returns the IPv6 side of a uplink of cfg (valid), or nil without
// Addr6.
func newIPv6(cfg *Config) *ipv6 {
	if !cfg.Addr6.IsValid() {
		return nil
	}
	v := &ipv6{
		addr:   cfg.Addr6.Addr().As16(),
		ll:     wire.LinkLocal([6]byte(cfg.MAC)),
		prefix: cfg.Addr6.Masked(),
		neigh:  neigh.New[[16]byte, []byte](neighConfig),
	}
	if cfg.Gateway6.IsValid() {
		v.gw, v.hasGW = cfg.Gateway6.As16(), true
	}
	return v
}

// Addr6 implements uplink.NAT66: the uplink's IPv6 address, zero without
// one.
func (u *TAP) Addr6() netip.Addr {
	if u.v6 == nil {
		return netip.Addr{}
	}
	return u.cfg.Addr6.Addr()
}

// isOwn reports whether a is one of the uplink's IPv6 unicast addresses.
func (v *ipv6) isOwn(a [16]byte) bool { return a == v.addr || a == v.ll }

// onLink reports whether a is reached directly: in the link's prefix or
// link-local.
func (v *ipv6) onLink(a [16]byte) bool {
	b := netip.AddrFrom16(a)
	return v.prefix.Contains(b) || b.IsLinkLocalUnicast()
}

// input6 handles an IPv6 packet in the Ethernet frame eth from the link:
// ND and echo for the uplink's addresses are answered here, the other
// packets to Addr6 at the uplink's MAC go to handle.
func (u *TAP) input6(eth wire.Ethernet, handle func(pkt []byte)) {
	v := u.v6
	ip, err := wire.ParseIPv6(eth[wire.EthernetLen:])
	if v == nil || err != nil {
		u.stats.rxIgnored.Add(1)
		return
	}
	dst := ip.Dst()
	up, err := ip.Upper()
	if err != nil {
		u.stats.rxIgnored.Add(1)
		return
	}
	if up.Proto == wire.ProtoICMPv6 && up.HasHeader() && !up.Fragment &&
		(v.isOwn(dst) || dst == wire.AllNodes || dst == wire.SolicitedNode(v.addr) || dst == wire.SolicitedNode(v.ll)) &&
		u.icmp6(ip, up.Offset, eth.Src()) {
		return
	}
	if eth.Dst() != u.mac || dst != v.addr {
		u.stats.rxIgnored.Add(1)
		return
	}
	u.stats.rxPackets.Add(1)
	u.stats.rxBytes.Add(uint64(len(ip)))
	handle(ip)
}

// icmp6 handles the ICMPv6 message at off in ip that ND or echo covers
// and reports whether it did (false: an ordinary packet, for handle).
func (u *TAP) icmp6(ip wire.IPv6, off int, ethSrc [6]byte) bool {
	v := u.v6
	m, err := wire.ParseICMP(ip[off:])
	if err != nil {
		return false
	}
	switch m.Type() {
	case wire.ICMPv6NeighborSolicitation, wire.ICMPv6NeighborAdvertisement:
	case wire.ICMPv6EchoRequest:
		if !v.isOwn(ip.Dst()) {
			return false
		}
	default:
		return false
	}
	if checksum.Checksum(m, ip.PseudoSum(wire.ProtoICMPv6, len(m))) != 0 {
		u.stats.rxIgnored.Add(1)
		return true
	}
	switch m.Type() {
	case wire.ICMPv6EchoRequest:
		u.echo6(ip, m, ethSrc)
	case wire.ICMPv6NeighborSolicitation:
		u.handleNS(ip, m, ethSrc)
	default:
		u.handleNA(ip, m, ethSrc)
	}
	return true
}

// handleNS answers a neighbor solicitation for one of the uplink's
// addresses (RFC 4861 7.1.1 checks, 7.2.4 reply), learning the solicitor
// from its source link-layer option (7.2.3). A solicitation from the
// unspecified address (another node's duplicate address detection) is
// answered to all nodes, so that it gives the address up.
func (u *TAP) handleNS(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	v := u.v6
	nd, err := wire.ParseND(m)
	src := ip.Src()
	dad := src == [16]byte{}
	if err != nil || ip.HopLimit() != wire.NDHopLimit || nd.Target[0] == 0xff ||
		dad && (nd.HasSourceLL || ip.Dst() != wire.SolicitedNode(nd.Target)) {
		u.stats.rxIgnored.Add(1)
		return
	}
	u.stats.ndIn.Add(1)
	if !v.isOwn(nd.Target) {
		return
	}
	if dad {
		u.advertise(wire.MulticastMAC(wire.AllNodes), wire.AllNodes, nd.Target, wire.NAFlagOverride)
		return
	}
	mac := ethSrc
	if nd.HasSourceLL {
		mac = nd.SourceLL
		if v.onLink(src) && mac[0]&1 == 0 && mac != u.mac {
			u.learn6(src, mac, true)
		}
	}
	u.advertise(mac, src, nd.Target, wire.NAFlagSolicited|wire.NAFlagOverride)
}

// handleNA learns the target of a neighbor advertisement (RFC 4861 7.2.5)
// when the uplink knows it or waits for it; an advertisement does not
// create an entry otherwise.
func (u *TAP) handleNA(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	nd, err := wire.ParseND(m)
	if err != nil || ip.HopLimit() != wire.NDHopLimit || nd.Target[0] == 0xff {
		u.stats.rxIgnored.Add(1)
		return
	}
	u.stats.ndIn.Add(1)
	mac := ethSrc
	if nd.HasTargetLL {
		mac = nd.TargetLL
	}
	if u.v6.onLink(nd.Target) && !u.v6.isOwn(nd.Target) && mac[0]&1 == 0 && mac != u.mac {
		u.learn6(nd.Target, mac, false)
	}
}

// learn6 records a at mac, as learn does for IPv4.
func (u *TAP) learn6(a [16]byte, mac [6]byte, add bool) {
	for _, p := range u.v6.neigh.Learn(a, mac, u.clock(), add).Waiting {
		u.transmit(p, Headroom, mac)
	}
}

// echo6 answers an echo request to one of the uplink's addresses (RFC 4443
// 4.2), from that address.
func (u *TAP) echo6(ip wire.IPv6, m wire.ICMP, ethSrc [6]byte) {
	src := ip.Src()
	if src == [16]byte{} || src[0] == 0xff {
		u.stats.rxIgnored.Add(1)
		return
	}
	frame, out := u.icmp6Frame(ethSrc, ip.Dst(), src, 64, len(m))
	copy(out, m)
	r := wire.ICMP(out)
	r.SetType(wire.ICMPv6EchoReply, 0)
	r.UpdateChecksum6(checksum.PseudoHeaderIPv6(ip.Dst(), src, wire.ProtoICMPv6, uint32(len(m))))
	if u.write(frame) {
		u.stats.echo6.Add(1)
	}
}

// advertise sends a neighbor advertisement for target (one of the
// uplink's addresses, which is its source) to dst at ethDst.
func (u *TAP) advertise(ethDst [6]byte, dst, target [16]byte, flags uint8) {
	frame, out := u.icmp6Frame(ethDst, target, dst, wire.NDHopLimit, wire.NALen+wire.NDLLOptLen)
	n := wire.PutNA(out, target, flags, u.mac)
	wire.ICMP(out).UpdateChecksum6(checksum.PseudoHeaderIPv6(target, dst, wire.ProtoICMPv6, uint32(n)))
	if u.write(frame) {
		u.stats.ndOut.Add(1)
	}
}

// solicit sends a neighbor solicitation for target: to its solicited-node
// group (ethDst its multicast MAC) to resolve it, or unicast to its known
// MAC to confirm it (RFC 4861 7.2.2, 7.3.3). The source is the
// link-local address for a link-local target, else Addr6.
func (u *TAP) solicit(target [16]byte, ethDst [6]byte) {
	v := u.v6
	src, dst := v.addr, target
	if netip.AddrFrom16(target).IsLinkLocalUnicast() {
		src = v.ll
	}
	if ethDst[0]&1 != 0 {
		dst = wire.SolicitedNode(target)
	}
	frame, out := u.icmp6Frame(ethDst, src, dst, wire.NDHopLimit, wire.NSLen+wire.NDLLOptLen)
	n := wire.PutNS(out, target, u.mac)
	wire.ICMP(out).UpdateChecksum6(checksum.PseudoHeaderIPv6(src, dst, wire.ProtoICMPv6, uint32(n)))
	if u.write(frame) {
		u.stats.ndOut.Add(1)
	}
}

// icmp6Frame returns a new frame (virtio_net_hdr, Ethernet, IPv6) for an
// ICMPv6 message of n bytes from src to dst, and the message to fill in.
func (u *TAP) icmp6Frame(ethDst [6]byte, src, dst [16]byte, hopLimit uint8, n int) ([]byte, []byte) {
	frame := make([]byte, Headroom+wire.IPv6Len+n)
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], ethDst, u.mac, wire.EtherTypeIPv6)
	h := wire.IPv6Header{PayloadLen: uint16(n), NextHeader: wire.ProtoICMPv6, HopLimit: hopLimit, Src: src, Dst: dst}
	h.Put(frame[Headroom:])
	return frame, frame[Headroom+wire.IPv6Len:]
}

// write writes a frame the uplink built (ND, echo) and reports whether it
// went out.
func (u *TAP) write(frame []byte) bool {
	u.Capture.Deliver(capture.Out, frame[vswitch.VnetHdrLen:])
	if _, err := u.dev.Write(frame, 0); err != nil {
		u.stats.txErrors.Add(1)
		return false
	}
	return true
}

// send6 sends the IPv6 packet buf[off:] as send does for IPv4: to its
// destination on the link, or to Gateway6.
func (u *TAP) send6(buf []byte, off int) error {
	v := u.v6
	ip, err := wire.ParseIPv6(buf[off:])
	if v == nil || err != nil {
		u.stats.txErrors.Add(1)
		return ErrNoRoute
	}
	hop := ip.Dst()
	if !v.onLink(hop) {
		if !v.hasGW {
			u.stats.noRoute.Add(1)
			return ErrNoRoute
		}
		hop = v.gw
	}
	return resolveAndSend(u, v.neigh, hop, buf[off-Headroom:], askND)
}

// askND is resolveAndSend's ask for IPv6: a neighbor solicitation, to the
// solicited-node group unless the MAC is known.
func askND(u *TAP, hop [16]byte, mac [6]byte, known bool) {
	if !known {
		mac = wire.MulticastMAC(wire.SolicitedNode(hop))
	}
	u.solicit(hop, mac)
}
