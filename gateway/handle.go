package gateway

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/wire"
)

// handleEthernet dispatches one Ethernet frame (virtio_net_hdr removed);
// a, if not nil, takes an answer at once (WriteAnswer).
func (g *Gateway) handleEthernet(eth []byte, a *answer) {
	if len(eth) < wire.EthernetLen {
		g.stats.inc(cntMalformed)
		return
	}
	dst := [6]byte(eth[0:6])
	src := [6]byte(eth[6:12])
	if !isUnicastMAC(src) || src == g.mac {
		g.stats.inc(cntMartian)
		return
	}
	switch binary.BigEndian.Uint16(eth[12:14]) {
	case wire.EtherTypeARP:
		// ARP is handled whatever the destination MAC: requests are
		// broadcast, and the switch floods unknown unicast.
		g.handleARP(eth[wire.EthernetLen:])
		return
	case wire.EtherTypeIPv6:
		if g.v6 == nil {
			g.stats.inc(cntIPv6)
			return
		}
		g.handleIPv6(eth, src)
		return
	}
	if dst != g.mac {
		g.stats.inc(cntNotForUs)
		return
	}
	if binary.BigEndian.Uint16(eth[12:14]) != wire.EtherTypeIPv4 {
		g.stats.inc(cntOtherEtherType)
		return
	}
	g.handleIPv4(eth[wire.EthernetLen:], src, a)
}

// handleARP answers ARP requests for the gateway's address and learns the
// sender of every valid ARP packet (RFC 826) as a neighbour when its address
// is a host of the subnet. ARP probes (sender 0.0.0.0, RFC 5227) for the
// gateway's address are answered too, as the kernel does, so that a host
// does not take it.
func (g *Gateway) handleARP(b []byte) {
	var p arp.Packet
	if err := p.UnmarshalBinary(b); err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if p.HardwareType != 1 || p.ProtocolType != wire.EtherTypeIPv4 ||
		p.HardwareAddrLength != 6 || p.IPLength != 4 ||
		(p.Operation != arp.OperationRequest && p.Operation != arp.OperationReply) {
		g.stats.inc(cntMalformed)
		return
	}
	sha := [6]byte(p.SenderHardwareAddr)
	spa := p.SenderIP.As4()
	if !isUnicastMAC(sha) || sha == g.mac {
		g.stats.inc(cntMartian)
		return
	}
	if spa == g.addr {
		g.stats.inc(cntARPConflicts)
		return
	}
	g.learn(spa, sha)
	if p.Operation != arp.OperationRequest || p.TargetIP.As4() != g.addr {
		g.stats.inc(cntARPOther)
		return
	}
	g.stats.inc(cntARPRequests)

	reply := arp.Packet{
		HardwareType:       1,
		ProtocolType:       wire.EtherTypeIPv4,
		HardwareAddrLength: 6,
		IPLength:           4,
		Operation:          arp.OperationReply,
		SenderHardwareAddr: net.HardwareAddr(g.mac[:]),
		SenderIP:           netip.AddrFrom4(g.addr),
		TargetHardwareAddr: p.SenderHardwareAddr,
		TargetIP:           p.SenderIP,
	}
	body, _ := reply.MarshalBinary() // never fails
	buf := g.getBuf()
	out := *buf
	wire.PutEthernet(out, sha, g.mac, wire.EtherTypeARP)
	n := wire.EthernetLen + copy(out[wire.EthernetLen:], body)
	if g.enqueue(buf, n) {
		g.stats.inc(cntARPReplies)
	}
}

// handleIPv4 handles a datagram sent to the gateway's MAC from ethSrc.
func (g *Gateway) handleIPv4(b []byte, ethSrc [6]byte, a *answer) {
	v, reason := parseIPv4(b)
	if reason != cntNone {
		g.stats.inc(reason)
		return
	}
	if len(v.datagram) > g.mtu {
		g.stats.inc(cntTooBig)
		return
	}
	if v.src == g.addr || v.src == g.bcast || !isHostAddr(v.src) {
		g.stats.inc(cntMartian)
		return
	}
	g.learn(v.src, ethSrc)
	switch {
	case v.dst == g.addr && g.claimedLocal(&v):
		g.serveLocal(&v, ethSrc, a)
	case v.dst == g.addr && g.toHostLoopback(&v):
		// The host's loopback, through the uplink.
		g.forward(&v, ethSrc)
	case v.dst == g.addr:
		g.handleLocal(&v, ethSrc)
	case g.isBroadcastOrMulticast(v.dst):
		// Nothing the gateway serves is sent to a broadcast or
		// multicast address, and RFC 1812 4.3.2.7 forbids an error.
		g.stats.inc(cntNoErrorAllowed)
	case !isHostAddr(v.dst):
		g.stats.inc(cntMartian)
	case g.route != nil && !g.prefix.Contains(netip.AddrFrom4(v.dst)):
		// Outside the subnet (the uplink's address included):
		// through NAT to the uplink, or hairpinned back in.
		g.forward(&v, ethSrc)
	default:
		// No route: without an uplink every other destination is
		// unreachable, and the gateway does not route between hosts
		// of its own subnet.
		g.sendUnreachable(&v, ethSrc, wire.ICMPCodeNet)
	}
}

// handleLocal handles a datagram addressed to the gateway's own address.
func (g *Gateway) handleLocal(v *ipv4View, ethSrc [6]byte) {
	if v.isFragment() {
		g.stats.inc(cntFragments)
		return
	}
	switch v.proto {
	case wire.ProtoICMP:
		g.handleICMP(v, ethSrc)
	case wire.ProtoUDP:
		if !g.validUDP(v) {
			return
		}
		// No UDP service listens on the gateway (RFC 1122 3.2.2.1).
		g.sendUnreachable(v, ethSrc, wire.ICMPCodePort)
	case wire.ProtoTCP:
		g.handleTCP(v, ethSrc)
	default:
		g.sendUnreachable(v, ethSrc, wire.ICMPCodeProtocol)
	}
}

// handleICMP answers echo requests (RFC 792) and ignores all other ICMP.
func (g *Gateway) handleICMP(v *ipv4View, ethSrc [6]byte) {
	m, err := wire.ParseICMP(v.payload)
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if !m.Valid4() {
		g.stats.inc(cntBadChecksum)
		return
	}
	if m.Type() != wire.ICMPEchoRequest {
		g.stats.inc(cntIgnored)
		return
	}
	// The request's DSCP; ECN is not echoed.
	buf, reply := g.answer(ethSrc, v.src, v.ip.TOS()&^0x03, wire.ProtoICMP, len(m))
	copy(reply, m) // identifier, sequence number and data stay the same
	r := wire.ICMP(reply)
	r.SetType(wire.ICMPEchoReply, 0)
	r.UpdateChecksum4()
	if g.enqueue(buf, wire.EthernetLen+wire.IPv4MinLen+len(m)) {
		g.stats.inc(cntEchoReplies)
	}
}

// validUDP checks the UDP header and checksum of v, counting failures.
func (g *Gateway) validUDP(v *ipv4View) bool {
	u, err := wire.ParseUDP(v.payload)
	if err != nil {
		g.stats.inc(cntMalformed)
		return false
	}
	ulen := u.Length()
	if ulen < wire.UDPLen || ulen > len(u) {
		g.stats.inc(cntMalformed)
		return false
	}
	// A zero checksum means the sender computed none (RFC 768).
	if u.Checksum() != 0 && transportChecksum(u[:ulen], wire.ProtoUDP, v.src, v.dst) != 0 {
		g.stats.inc(cntBadChecksum)
		return false
	}
	return true
}

// handleTCP answers a segment to the gateway, where nothing listens, as a
// host in the CLOSED state does (RFC 9293 3.10.7.1): a reset unless the
// segment is one.
func (g *Gateway) handleTCP(v *ipv4View, ethSrc [6]byte) {
	s, err := wire.ParseTCP(v.payload)
	if err != nil {
		g.stats.inc(cntMalformed)
		return
	}
	if !g.resetAllowed(s, transportChecksum(s, wire.ProtoTCP, v.src, v.dst), false) {
		return
	}
	// The ECN field is not echoed.
	buf, t := g.answer(ethSrc, v.src, v.ip.TOS()&^0x03, wire.ProtoTCP, wire.TCPMinLen)
	putReset(t, s)
	binary.BigEndian.PutUint16(t[16:18], transportChecksum(t, wire.ProtoTCP, g.addr, v.src))
	if g.enqueue(buf, wire.EthernetLen+wire.IPv4MinLen+wire.TCPMinLen) {
		g.stats.inc(cntTCPResets)
	}
}

// resetAllowed reports whether the gateway answers the segment s with a
// reset, sum being s's checksum with its pseudo-header (0 when valid): not
// when sum is wrong, when s is a reset itself or ignore is set, nor without
// a token of the rate limiter. It counts the segments it turns down.
func (g *Gateway) resetAllowed(s wire.TCP, sum uint16, ignore bool) bool {
	switch {
	case sum != 0:
		g.stats.inc(cntBadChecksum)
	case ignore || s.Flags()&wire.TCPFlagRST != 0:
		g.stats.inc(cntIgnored)
	case !g.limiter.allow(g.now()):
		g.stats.inc(cntRateLimited)
	default:
		return true
	}
	return false
}

// resetFor returns the sequence and acknowledgment numbers and the flags
// of the reset answering s (RFC 9293 3.10.7.1).
func resetFor(s wire.TCP) (seq, ack uint32, flags uint8) {
	if s.Flags()&wire.TCPFlagACK != 0 {
		// <SEQ=SEG.ACK><CTL=RST>
		return s.Ack(), 0, wire.TCPFlagRST
	}
	// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SYN and FIN count
	// in SEG.LEN.
	segLen := uint32(len(s.Payload()))
	if s.Flags()&wire.TCPFlagSYN != 0 {
		segLen++
	}
	if s.Flags()&wire.TCPFlagFIN != 0 {
		segLen++
	}
	return 0, s.Seq() + segLen, wire.TCPFlagRST | wire.TCPFlagACK
}

// putReset writes into t (TCPMinLen bytes) the header of the reset
// answering s (resetFor), its checksum zero.
func putReset(t []byte, s wire.TCP) {
	seq, ack, flags := resetFor(s)
	copy(t[0:2], s[2:4]) // source port: the segment's destination port
	copy(t[2:4], s[0:2])
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = (wire.TCPMinLen / 4) << 4
	t[13] = flags
	clear(t[14:20]) // window, checksum, urgent pointer
}

// sendUnreachable answers v with an ICMP destination unreachable of the
// given code, if RFC 1812 4.3.2.7 allows an error about v and the rate
// limiter has a token. The message quotes as much of v as fits in 576 bytes
// (RFC 1812 4.3.2.3), at least its header and 8 bytes of payload (RFC 792).
func (g *Gateway) sendUnreachable(v *ipv4View, ethSrc [6]byte, code uint8) {
	g.sendError(v, ethSrc, wire.ICMPUnreachable, code, 0)
}

// sendError answers v with an ICMP error of type typ and code; rest is the
// second word of the ICMP header (the next-hop MTU of fragmentation needed,
// RFC 1191). Otherwise as sendUnreachable.
func (g *Gateway) sendError(v *ipv4View, ethSrc [6]byte, typ, code uint8, rest uint32) {
	if !g.errorAllowed(v) {
		g.stats.inc(cntNoErrorAllowed)
		return
	}
	if !g.limiter.allow(g.now()) {
		g.stats.inc(cntRateLimited)
		return
	}
	quote := v.datagram
	if limit := maxICMPErrorLen - wire.IPv4MinLen - wire.ICMPLen; len(quote) > limit {
		quote = quote[:limit]
	}
	buf, m := g.answer(ethSrc, v.src, tosInternetControl, wire.ProtoICMP, wire.ICMPLen+len(quote))
	e := wire.ICMP(m)
	e.SetType(typ, code)
	e.SetRest(rest)
	copy(e.Body(), quote)
	e.UpdateChecksum4()
	if g.enqueue(buf, wire.EthernetLen+wire.IPv4MinLen+len(m)) {
		g.stats.inc(cntICMPErrors)
	}
}

// errorAllowed reports whether an ICMP error may be sent about v (RFC 1812
// 4.3.2.7): not about an ICMP error, a fragment other than the first, a
// datagram to a broadcast or multicast address, or one whose source is not
// a single host. Link-layer broadcasts never get here.
func (g *Gateway) errorAllowed(v *ipv4View) bool {
	if v.fragOff != 0 {
		return false
	}
	if !isHostAddr(v.src) || v.src == g.bcast || g.isBroadcastOrMulticast(v.dst) {
		return false
	}
	if v.proto == wire.ProtoICMP {
		// A first fragment too short to show its type is treated as
		// an error message.
		if len(v.payload) < 1 || !isICMPQuery(v.payload[0]) {
			return false
		}
	}
	return true
}

// isICMPQuery reports whether the ICMP type t is a query or a reply to one,
// about which errors may be sent. Error types and unknown types are not
// (the kernel's icmp_pointers[].error and its NR_ICMP_TYPES check).
func isICMPQuery(t uint8) bool {
	switch t {
	case 0, 8, // echo reply, echo request
		9, 10, // router advertisement, solicitation
		13, 14, // timestamp, timestamp reply
		15, 16, // information request, reply
		17, 18: // address mask request, reply
		return true
	}
	return false
}

// isBroadcastOrMulticast reports whether ip is the limited broadcast, the
// subnet's directed broadcast or a multicast address.
func (g *Gateway) isBroadcastOrMulticast(ip [4]byte) bool {
	return ip == [4]byte{255, 255, 255, 255} || ip == g.bcast || ip[0]&0xf0 == 224
}
