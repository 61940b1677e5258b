package host

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// setRecvErr turns IP_RECVERR (IPV6_RECVERR for an AF_INET6 socket, v6)
// on for c: the ICMP errors about what it sends (port unreachable, ...) are
// queued on the socket instead of lost, as they are for an unconnected UDP
// socket otherwise (ip(7), ipv6(7)).
func setRecvErr(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
	if v6 {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	}); err != nil {
		return err
	}
	return serr
}

// transient reports whether err, from a read of a UDP socket, is an error
// reported by the network (an ICMP error waiting on the error queue)
// rather than the end of the socket.
func transient(err error) bool {
	var errno syscall.Errno
	return !errors.Is(err, net.ErrClosed) && errors.As(err, &errno)
}

// sizeofSockExtendedErr is the size of struct sock_extended_err.
const sizeofSockExtendedErr = 16

// drainErrors reads the error queue of c, the socket of flow f, and hands
// the gateway an ICMP error (RFC 792) for each ICMP error the host
// received about a datagram of the flow, quoting that datagram's headers as
// the container's NAT mapping sent them, so that NAT translates it to the
// container (RFC 5508); for an IPv6 flow, an ICMPv6 error straight to the
// container (icmp6Errors). b is scratch space of maxPacket bytes.
func (u *Uplink) drainErrors(f *flow, c *net.UDPConn, b []byte) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	oob := make([]byte, 256)
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), b[:maxPacket], oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			return true
		}); err != nil || rerr != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			continue
		}
		if to6, ok := from.(*unix.SockaddrInet6); ok {
			u.icmp6Errors(f, msgs, to6, n)
			continue
		}
		to, ok := from.(*unix.SockaddrInet4)
		if !ok {
			continue
		}
		for _, m := range msgs {
			if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < sizeofSockExtendedErr+8 {
				continue
			}
			d := m.Data
			if d[4] != unix.SO_EE_ORIGIN_ICMP {
				continue
			}
			typ, code := d[5], d[6]
			info := binary.NativeEndian.Uint32(d[8:12])
			// The offender: a sockaddr_in after the extended error.
			off := [4]byte(d[sizeofSockExtendedErr+4 : sizeofSockExtendedErr+8])
			u.deliverUDPError(f.key.port, to.Addr, uint16(to.Port), n, off, typ, code, info)
		}
	}
}

// deliverUDPError builds the ICMP error typ/code from offender about a UDP
// datagram of n payload bytes the mapping port sent to dst:dport, and
// hands it to the gateway.
func (u *Uplink) deliverUDPError(port uint16, dst [4]byte, dport uint16, n int, offender [4]byte, typ, code uint8, info uint32) {
	if dst[0] == 127 {
		dst = u.loopback
	}
	if offender[0] == 127 || offender == [4]byte{} {
		offender = dst
	}
	var p [ipHdrLen + wire.ICMPLen + ipHdrLen + wire.UDPLen]byte
	icmp := wire.ICMP(p[ipHdrLen:])
	icmp.SetType(typ, code)
	if typ == wire.ICMPUnreachable && code == wire.ICMPCodeFragNeeded {
		// Fragmentation needed: the next-hop MTU (RFC 1191).
		icmp.SetRest(info & 0xffff)
	}
	// The quoted datagram: its header and UDP header (checksum left 0).
	q := icmp.Body()
	putIPv4(q, ipHdrLen+wire.UDPLen+n, wire.ProtoUDP, u.addr, dst, 0, 0)
	quoted := wire.UDP(q[ipHdrLen:])
	quoted.SetSrcPort(port)
	quoted.SetDstPort(dport)
	quoted.SetLength(wire.UDPLen + n)
	icmp.UpdateChecksum4()
	putIPv4(p[:], len(p), wire.ProtoICMP, offender, u.addr, uint16(ipID.Add(1)), 0)
	u.stats.udpErrors.Add(1)
	u.deliver(p[:])
}

// icmp6Errors hands the container of the IPv6 flow f an ICMPv6 error
// (RFC 4443) for each one in msgs the host received about its datagram of
// n payload bytes to `to`, quoting that datagram as the container sent it,
// so that its kernel finds the socket (a UDP socket sees "connection
// refused").
func (u *Uplink) icmp6Errors(f *flow, msgs []unix.SocketControlMessage, to *unix.SockaddrInet6, n int) {
	for _, m := range msgs {
		d := m.Data
		// The offender: a sockaddr_in6 after the extended error.
		if m.Header.Level != unix.IPPROTO_IPV6 || m.Header.Type != unix.IPV6_RECVERR ||
			len(d) < sizeofSockExtendedErr+24 || d[4] != unix.SO_EE_ORIGIN_ICMP6 {
			continue
		}
		dst, ok := u.clientAddr6(netip.AddrFrom16(to.Addr))
		if !ok {
			continue
		}
		offender, ok := u.clientAddr6(netip.AddrFrom16([16]byte(d[sizeofSockExtendedErr+8 : sizeofSockExtendedErr+24])))
		if !ok || offender == [16]byte{} {
			offender = dst
		}
		typ, code, info := d[5], d[6], binary.NativeEndian.Uint32(d[8:12])
		var p [ip6HdrLen + wire.ICMPLen + ip6HdrLen + wire.UDPLen]byte
		icmp := wire.ICMP(p[ip6HdrLen:])
		icmp.SetType(typ, code)
		if typ == wire.ICMPv6PacketTooBig {
			icmp.SetRest(info) // the MTU
		}
		// The quoted packet: its header and UDP header (checksum 0).
		q := icmp.Body()
		h := wire.IPv6Header{PayloadLen: uint16(wire.UDPLen + n), NextHeader: wire.ProtoUDP, HopLimit: wire.DefaultTTL, Src: f.key.addr, Dst: dst}
		h.Put(q)
		quoted := wire.UDP(q[ip6HdrLen:])
		quoted.SetSrcPort(f.key.port)
		quoted.SetDstPort(uint16(to.Port))
		quoted.SetLength(wire.UDPLen + n)
		icmp.UpdateChecksum6(checksum.PseudoHeaderIPv6(offender, f.key.addr, wire.ProtoICMPv6, uint32(len(icmp))))
		u.stats.udpErrors.Add(1)
		u.deliverIPv6(p[:], len(icmp), wire.ProtoICMPv6, offender, f.key.addr)
	}
}
