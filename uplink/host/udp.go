package host

import (
	"net"
	"net/netip"

	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/wire"
)

// sendUDP sends the payload of the UDP datagram pkt (header length hl)
// from the host socket of its mapping, or, for a reply of a published
// port, from that port's listener.
func (u *Uplink) sendUDP(pkt []byte, hl int) error {
	sport, dport, payload, ok := u.parseUDP(pkt[hl:])
	if !ok {
		return errMalformed
	}
	dst := wire.IPv4(pkt).Dst()
	if l := u.publishedUDP(sport); l != nil {
		// A container's reply to a client of a published port.
		u.writeUDP(l.udp, payload, netip.AddrPortFrom(u.hostAddrOf(dst), dport))
		return nil
	}
	if addr, ok := u.target(dst); ok {
		u.sendFlowUDP(flowKey{port: sport}, false, payload, netip.AddrPortFrom(addr, dport))
	}
	return nil
}

// parseUDP returns the ports and payload of the UDP datagram l4; false
// (counted) when it is malformed.
func (u *Uplink) parseUDP(l4 []byte) (sport, dport uint16, payload []byte, ok bool) {
	udp, err := wire.ParseUDP(l4)
	if err != nil {
		u.stats.malformed.Add(1)
		return 0, 0, nil, false
	}
	ul := udp.Length()
	if ul < wire.UDPLen || ul > len(udp) {
		u.stats.malformed.Add(1)
		return 0, 0, nil, false
	}
	return udp.SrcPort(), udp.DstPort(), udp[wire.UDPLen:ul], true
}

// sendFlowUDP sends payload to the host address to from the socket of the
// flow key, opening it first if need be.
func (u *Uplink) sendFlowUDP(key flowKey, v6 bool, payload []byte, to netip.AddrPort) {
	f := u.udp.get(key)
	if f == nil {
		if f = u.newUDPFlow(key, v6); f == nil {
			u.stats.udpDropped.Add(1)
			return
		}
	}
	f.touch(u.clock())
	u.writeUDP(f.conn.(*net.UDPConn), payload, to)
}

// writeUDP sends payload from c to to, counting a failure.
func (u *Uplink) writeUDP(c *net.UDPConn, payload []byte, to netip.AddrPort) {
	if _, err := c.WriteToUDPAddrPort(payload, to); err != nil {
		u.stats.udpDropped.Add(1)
	}
}

// newUDPFlow opens the host socket of key (a mapping's port, or for IPv6
// a container's address and port: an AF_INET6 socket) and starts its
// reader; nil past MaxUDP or when the socket cannot be opened.
func (u *Uplink) newUDPFlow(key flowKey, v6 bool) *flow {
	network, read := "udp4", u.readUDP
	if v6 {
		network, read = "udp6", u.readUDP6
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		u.stats.errors.Add(1)
		return nil
	}
	if err := setRecvErr(c, v6); err != nil {
		u.stats.errors.Add(1)
	}
	f := &flow{key: key, conn: c}
	return u.startFlow(&u.udp, f, u.cfg.MaxUDP, &u.stats.udpSockets, &u.stats.udpTotal, func(b []byte) { read(f, c, b) })
}

// readUDP hands every datagram the socket of f receives, from any sender,
// back to the mapping (NAT filters), until the socket is closed; b is its
// buffer.
func (u *Uplink) readUDP(f *flow, c *net.UDPConn, b []byte) {
	u.receiveUDP(f, c, b, ipHdrLen+8, func(n int, from netip.AddrPort) {
		src, ok := nat.EndpointFrom(from)
		if !ok || !src.Addr.Is4() {
			return
		}
		a := src.Addr.As4()
		if a[0] == 127 {
			// Only a host loopback server answers from there; the
			// container asked for Loopback.
			a = u.loopback
		}
		u.deliverUDP(b, n, a, src.Port, u.addr, f.key.port)
	})
}

// receiveUDP is the read loop of readUDP and readUDP6: it reads each
// datagram of f's socket into b behind hdr bytes of room for the headers
// deliver puts in front (leaving as much room at the end), refreshes f and
// hands it on, until the socket is closed. A transient error is an ICMP or
// ICMPv6 error about a datagram of the flow: drainErrors passes it on.
func (u *Uplink) receiveUDP(f *flow, c *net.UDPConn, b []byte, hdr int, deliver func(n int, from netip.AddrPort)) {
	for {
		n, from, err := c.ReadFromUDPAddrPort(b[hdr : maxPacket-hdr])
		if err != nil {
			if !transient(err) {
				return
			}
			u.drainErrors(f, c, b)
			continue
		}
		f.touch(u.clock())
		deliver(n, from)
	}
}
