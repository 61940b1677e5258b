package host

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// IPv6 comes untranslated (uplink.Sender6): the gateway routes what a
// container sends outside its /64 here with the container's own address
// as its source, and the uplink hands back packets addressed to it. The
// host sockets are the translation, as for IPv4 after NAT: TCP is
// terminated in the netstack (its IPv6 NIC) and dialled from an AF_INET6
// socket, UDP uses one socket per container address and port (the ICMPv6
// errors about it carried back, IPV6_RECVERR), ICMPv6 echo one ping socket
// per container address and identifier.

// ip6HdrLen is the length of the IPv6 headers the uplink builds.
const ip6HdrLen = wire.IPv6Len

var errMalformed6 = errors.New("host uplink: malformed IPv6 packet")

// Send6 carries the IPv6 packet buf[off:], as a container sent it, to the
// host (uplink.Sender6). It does not keep buf. It returns net.ErrClosed
// after Close. UDP and ICMPv6 fragments are dropped and counted (not
// reassembled); the netstack reassembles TCP's.
func (u *Uplink) Send6(buf []byte, off int) error {
	if u.isClosed() {
		return net.ErrClosed
	}
	ip, err := wire.ParseIPv6(buf[off:])
	if err != nil {
		u.stats.malformed.Add(1)
		return errMalformed6
	}
	up, err := ip.Upper()
	if err != nil {
		u.stats.malformed.Add(1)
		return errMalformed6
	}
	u.Capture.Deliver(capture.Out, ip)
	u.stats.txPackets.Add(1)
	u.stats.txBytes.Add(uint64(len(ip)))
	switch up.Proto {
	case wire.ProtoTCP:
		u.link6.inject(ipv6.ProtocolNumber, ip)
		return nil
	case wire.ProtoUDP, wire.ProtoICMPv6:
		if up.Fragment {
			u.stats.fragDropped.Add(1)
			return nil
		}
		if up.Proto == wire.ProtoUDP {
			return u.sendUDP6(ip, up.Offset)
		}
		return u.sendICMP6(ip, up.Offset)
	}
	u.stats.otherDropped.Add(1)
	return nil
}

// target6 is target for IPv6: Loopback6 is the host's ::1 with
// HostLoopback, and never otherwise; ::1 itself, IPv4-mapped addresses
// (which an AF_INET6 socket would take to IPv4, loopback included),
// link-local and multicast addresses are never reached.
func (u *Uplink) target6(dst [16]byte) (netip.Addr, bool) {
	a := netip.AddrFrom16(dst)
	switch {
	case dst == u.loopback6:
		if !u.cfg.HostLoopback {
			u.stats.loopbackRefused.Add(1)
			return netip.Addr{}, false
		}
		return netip.IPv6Loopback(), true
	case a.IsLoopback() || a.Is4In6():
		u.stats.loopbackRefused.Add(1)
		return netip.Addr{}, false
	case !hostAddr6(dst):
		u.stats.otherDropped.Add(1)
		return netip.Addr{}, false
	}
	return a, true
}

// clientAddr6 maps the address of a host's IPv6 peer (a client of a
// published port, a server answering) to the address the container sees:
// its own, or Loopback6 for ::1. An IPv4-mapped address is not one.
func (u *Uplink) clientAddr6(a netip.Addr) ([16]byte, bool) {
	if !a.Is6() || a.Is4In6() {
		return [16]byte{}, false
	}
	if a.IsLoopback() {
		return u.loopback6, true
	}
	return a.As16(), true
}

// hostAddrOf6 is clientAddr6's inverse for replies: Loopback6 goes back
// to ::1.
func (u *Uplink) hostAddrOf6(b [16]byte) netip.Addr {
	if b == u.loopback6 {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom16(b)
}

// sendUDP6 sends the payload of the UDP datagram at off in ip from the
// host socket of the container's address and port, or, for a reply of a
// published port, from that port's listener.
func (u *Uplink) sendUDP6(ip wire.IPv6, off int) error {
	sport, dport, payload, ok := u.parseUDP(ip[off:])
	if !ok {
		return errMalformed6
	}
	src, dst := ip.Src(), ip.Dst()
	if l := u.reply6(netip.AddrPortFrom(netip.AddrFrom16(src), sport)); l != nil {
		u.writeUDP(l.udp, payload, netip.AddrPortFrom(u.hostAddrOf6(dst), dport))
		return nil
	}
	if addr, ok := u.target6(dst); ok {
		u.sendFlowUDP(flowKey{addr: src, port: sport}, true, payload, netip.AddrPortFrom(addr, dport))
	}
	return nil
}

// reply6 returns the IPv6 UDP listener whose datagrams go to the
// container's address and port from, or nil. It takes no lock.
func (u *Uplink) reply6(from netip.AddrPort) *listener {
	m := *u.replies6.Load()
	if len(m) == 0 {
		return nil
	}
	return m[from]
}

// readUDP6 hands every datagram the socket of f receives, from any IPv6
// sender, back to the container's address and port, until the socket is
// closed; b is its buffer.
func (u *Uplink) readUDP6(f *flow, c *net.UDPConn, b []byte) {
	u.receiveUDP(f, c, b, ip6HdrLen+wire.UDPLen, func(n int, from netip.AddrPort) {
		if src, ok := u.clientAddr6(from.Addr()); ok {
			u.deliverUDP6(b, n, src, from.Port(), f.key.addr, f.key.port)
		}
	})
}

// sendICMP6 sends the ICMPv6 echo request at off in ip from the ping
// socket of the container's address and identifier. The kernel puts the
// socket's own identifier in and computes the checksum. Other ICMPv6
// messages are dropped and counted.
func (u *Uplink) sendICMP6(ip wire.IPv6, off int) error {
	m, err := wire.ParseICMP(ip[off:])
	if err != nil || m.Type() != wire.ICMPv6EchoRequest || m.Code() != 0 {
		u.stats.otherDropped.Add(1)
		return nil
	}
	addr, ok := u.target6(ip.Dst())
	if !ok {
		return nil
	}
	u.sendEcho(flowKey{addr: ip.Src(), port: m.ID()}, true, m, addr)
	return nil
}

// readICMP6 hands the echo replies the socket of f receives back to the
// container, with its identifier put back, until the socket is closed; b
// is its buffer.
func (u *Uplink) readICMP6(f *flow, c *icmp.PacketConn, b []byte) {
	u.receiveICMP(c, b, ip6HdrLen, wire.ICMPv6EchoReply, func(m wire.ICMP, from net.IP) {
		a, ok := netip.AddrFromSlice(from)
		if !ok {
			return
		}
		src, ok := u.clientAddr6(a)
		if !ok {
			return
		}
		f.touch(u.clock())
		m.SetID(f.key.port)
		m.UpdateChecksum6(checksum.PseudoHeaderIPv6(src, f.key.addr, wire.ProtoICMPv6, uint32(len(m))))
		u.deliverIPv6(b, len(m), wire.ProtoICMPv6, src, f.key.addr)
	})
}

// deliverUDP6 builds a UDP datagram from src to dst around the payload at
// b[48:48+n] and hands it to the gateway (deliverIPv6).
func (u *Uplink) deliverUDP6(b []byte, n int, src [16]byte, sport uint16, dst [16]byte, dport uint16) {
	ul := wire.UDPLen + n
	wire.PutUDP(b[ip6HdrLen:], ul, sport, dport, checksum.PseudoHeaderIPv6(src, dst, wire.ProtoUDP, uint32(ul)))
	u.deliverIPv6(b, ul, wire.ProtoUDP, src, dst)
}

// deliverIPv6 puts an IPv6 header from src to dst in front of the l4 bytes
// of proto at b[40:40+l4] and hands the packet to the gateway, in
// fragments of at most the MTU when it is larger (RFC 8200 4.5: the uplink
// is the packet's source towards the container).
func (u *Uplink) deliverIPv6(b []byte, l4 int, proto uint8, src, dst [16]byte) {
	n := ip6HdrLen + l4
	if l4 > 0xffff {
		u.stats.otherDropped.Add(1)
		return
	}
	h := wire.IPv6Header{PayloadLen: uint16(l4), NextHeader: proto, HopLimit: wire.DefaultTTL, Src: src, Dst: dst}
	h.Put(b)
	if n <= u.cfg.MTU {
		u.deliver(b[:n])
		return
	}
	var f wire.Fragmenter6
	if f.Reset(wire.IPv6(b[:n]), u.cfg.MTU, ipID.Add(1)) != nil {
		u.stats.otherDropped.Add(1)
		return
	}
	u.deliverFragments(f.Next)
}
