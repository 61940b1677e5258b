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
	udp, err := wire.ParseUDP(pkt[hl:])
	if err != nil {
		u.stats.malformed.Add(1)
		return errMalformed
	}
	sport, dport, ul := udp.SrcPort(), udp.DstPort(), udp.Length()
	if ul < wire.UDPLen || ul > len(udp) {
		u.stats.malformed.Add(1)
		return errMalformed
	}
	payload := udp[wire.UDPLen:ul]
	dst := wire.IPv4(pkt).Dst()
	if l := u.publishedUDP(sport); l != nil {
		// A container's reply to a client of a published port.
		to := netip.AddrPortFrom(u.hostAddrOf(dst), dport)
		if _, err := l.udp.WriteToUDPAddrPort(payload, to); err != nil {
			u.stats.udpDropped.Add(1)
		}
		return nil
	}
	addr, ok := u.target(dst)
	if !ok {
		return nil
	}
	key := flowKey{port: sport}
	f := u.udp.get(key)
	if f == nil {
		if f = u.newUDPFlow(key, false); f == nil {
			u.stats.udpDropped.Add(1)
			return nil
		}
	}
	f.touch(u.clock())
	if _, err := f.conn.(*net.UDPConn).WriteToUDPAddrPort(payload, netip.AddrPortFrom(addr, dport)); err != nil {
		u.stats.udpDropped.Add(1)
	}
	return nil
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
	if !v6 {
		// ICMP errors, IPv4's only (udperr_linux.go).
		if err := setRecvErr(c); err != nil {
			u.stats.errors.Add(1)
		}
	}
	f := &flow{key: key, conn: c}
	return u.startFlow(&u.udp, f, u.cfg.MaxUDP, &u.stats.udpSockets, &u.stats.udpTotal, func(b []byte) { read(f, c, b) })
}

// readUDP hands every datagram the socket of f receives, from any sender,
// back to the mapping (NAT filters), until the socket is closed; b is its
// buffer.
func (u *Uplink) readUDP(f *flow, c *net.UDPConn, b []byte) {
	for {
		n, from, err := c.ReadFromUDPAddrPort(b[ipHdrLen+8 : maxPacket-ipHdrLen-8])
		if err != nil {
			if !transient(err) {
				return
			}
			// An ICMP error about a datagram of the flow.
			u.drainErrors(f, c, b)
			continue
		}
		f.touch(u.clock())
		src, ok := nat.EndpointFrom(from)
		if !ok {
			continue
		}
		if src.Addr[0] == 127 {
			// Only a host loopback server answers from there; the
			// container asked for Loopback.
			src.Addr = u.loopback
		}
		u.deliverUDP(b, n, src.Addr, src.Port, u.addr, f.key.port)
	}
}
