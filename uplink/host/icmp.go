package host

import (
	"errors"
	"net"
	"net/netip"
	"os"

	"golang.org/x/net/icmp"

	"github.com/tapswitch/tapswitch/wire"
)

// sendICMP sends the ICMP echo request pkt (header length hl) from the
// unprivileged ICMP socket of its mapped identifier. The kernel puts the
// socket's own identifier in and computes the checksum.
func (u *Uplink) sendICMP(pkt []byte, hl int) error {
	m, err := wire.ParseICMP(pkt[hl:])
	if err != nil || m.Type() != wire.ICMPEchoRequest || m.Code() != 0 {
		u.stats.otherDropped.Add(1)
		return nil
	}
	addr, ok := u.target(wire.IPv4(pkt).Dst())
	if !ok {
		return nil
	}
	u.sendEcho(flowKey{port: m.ID()}, false, m, addr)
	return nil
}

// sendEcho sends the echo request m to addr from the ping socket of key,
// opened when it has none (v6: an ICMPv6 one).
func (u *Uplink) sendEcho(key flowKey, v6 bool, m wire.ICMP, addr netip.Addr) {
	f := u.icmp.get(key)
	if f == nil {
		if f = u.newICMPFlow(key, v6); f == nil {
			return
		}
	}
	f.touch(u.clock())
	if _, err := f.conn.(*icmp.PacketConn).WriteTo(m, &net.UDPAddr{IP: addr.AsSlice()}); err != nil {
		u.stats.icmpDropped.Add(1)
	}
}

// newICMPFlow opens the ICMP socket of key (an identifier mapping, or for
// IPv6 a container's address and identifier: an ICMPv6 socket) and starts
// its reader; nil when the kernel refuses (counted, warned about once:
// ICMPv6 echo sockets obey net.ipv4.ping_group_range too) or past
// MaxICMP.
func (u *Uplink) newICMPFlow(key flowKey, v6 bool) *flow {
	network, laddr, read := "udp4", "0.0.0.0", u.readICMP
	if v6 {
		network, laddr, read = "udp6", "::", u.readICMP6
	}
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			u.stats.icmpDenied.Add(1)
			u.pingWarn.Do(func() {
				u.log.Warn("host uplink: ping from containers is off: this user may not open ICMP echo sockets; allow its group in sysctl net.ipv4.ping_group_range (e.g. \"0 2147483647\")", "err", err)
			})
			return nil
		}
		u.stats.icmpDropped.Add(1)
		u.stats.errors.Add(1)
		return nil
	}
	f := &flow{key: key, conn: c}
	got := u.startFlow(&u.icmp, f, u.cfg.MaxICMP, &u.stats.icmpSockets, &u.stats.icmpTotal, func(b []byte) { read(f, c, b) })
	if got == nil {
		u.stats.icmpDropped.Add(1)
	}
	return got
}

// readICMP hands the echo replies the socket of f receives back to the
// mapping, with the mapped identifier put back, until the socket is closed;
// b is its buffer.
func (u *Uplink) readICMP(f *flow, c *icmp.PacketConn, b []byte) {
	u.receiveICMP(c, b, ipHdrLen, wire.ICMPEchoReply, func(m wire.ICMP, from net.IP) {
		ip4 := from.To4()
		if ip4 == nil {
			return
		}
		f.touch(u.clock())
		src := [4]byte(ip4)
		if src[0] == 127 {
			src = u.loopback
		}
		m.SetID(f.key.port)
		m.UpdateChecksum4()
		u.deliverIPv4(b, len(m), wire.ProtoICMP, src, u.addr)
	})
}

// receiveICMP is the read loop of readICMP and readICMP6: it reads each
// message of the ping socket c into b behind hdr bytes of room for the
// headers deliver puts in front (leaving as much room at the end), and
// hands the echo replies (type reply) on with their sender, until the
// socket is closed.
func (u *Uplink) receiveICMP(c *icmp.PacketConn, b []byte, hdr int, reply uint8, deliver func(m wire.ICMP, from net.IP)) {
	for {
		n, from, err := c.ReadFrom(b[hdr : maxPacket-hdr])
		if err != nil {
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok || n < wire.ICMPLen || b[hdr] != reply {
			continue
		}
		deliver(wire.ICMP(b[hdr:hdr+n]), ua.IP)
	}
}
