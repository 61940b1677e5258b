package host

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapswitch/tapswitch/nat"
)

// Published ports on IPv6: a listener on [::] (or an IPv6 HOSTIP) delivers
// to the container's IPv6 address (nat.Publish.Target6) with the client's
// address kept (::1 shown as Loopback6), without NAT: the netstack dials
// the container from the client's address, and UDP datagrams are built
// from it. A container without IPv6 gets TCP connections over IPv4, from
// Loopback (the client's IPv6 address cannot be shown to it), through
// NAT's publish as IPv4 clients are, as Docker's proxy does.

// publishBinds returns the host addresses p's listeners bind: p.HostIP, or
// 0.0.0.0 and :: without one (:: only for TCP or a container with IPv6:
// UDP over IPv6 reaches IPv6 containers only).
func publishBinds(p nat.Publish) ([]netip.Addr, error) {
	switch h := p.HostIP; {
	case !h.IsValid():
		if p.Proto == nat.UDP && !p.Target6.IsValid() {
			return []netip.Addr{netip.IPv4Unspecified()}, nil
		}
		return []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}, nil
	case h.Is6() && p.Proto == nat.UDP && !p.Target6.IsValid():
		return nil, fmt.Errorf("%w %s: UDP published on IPv6 needs a container with an IPv6 address (the daemon's --ipv6)", nat.ErrBadPublish, p)
	}
	return []netip.Addr{p.HostIP}, nil
}

// listen opens l's socket on ap: IPv6-only for an IPv6 address, so that
// [::] and 0.0.0.0 are two sockets (Go sets IPV6_V6ONLY for "tcp6").
func (l *listener) listen(ap netip.AddrPort) error {
	network := "4"
	if ap.Addr().Is6() {
		network = "6"
	}
	var err error
	if l.key.proto == nat.TCP {
		l.tcp, err = net.ListenTCP("tcp"+network, net.TCPAddrFromAddrPort(ap))
	} else {
		l.udp, err = net.ListenUDP("udp"+network, net.UDPAddrFromAddrPort(ap))
	}
	return err
}

// noIPv6 reports whether err, from listening on [::], says that the host
// has no IPv6 (disabled, or no address family support).
func noIPv6(err error) bool {
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// replyTakenLocked fails when l is an IPv6 UDP listener whose container
// address and port another listener already delivers to: the container's
// replies, untranslated, could not tell the two apart. u.mu is held.
func (u *Uplink) replyTakenLocked(l *listener) error {
	if l.udp == nil || !l.to6.IsValid() {
		return nil
	}
	if o := (*u.replies6.Load())[l.to6]; o != nil {
		return fmt.Errorf("%w: udp %s is already published on IPv6 as host port %d: a container port takes one IPv6 UDP publish", nat.ErrPublishOverlap, l.to6, o.key.port)
	}
	return nil
}

// setReply6Locked makes l (nil: none) the listener that carries the
// replies from the container's address and port to, in a new map. u.mu is
// held.
func (u *Uplink) setReply6Locked(to netip.AddrPort, l *listener) {
	m := maps.Clone(*u.replies6.Load())
	if l == nil {
		delete(m, to)
	} else {
		m[to] = l
	}
	u.replies6.Store(&m)
}

// publishedTCP6 opens the connection into the container for c, accepted
// on the IPv6 listener l, and splices the two: to the container's IPv6
// address from the client's, or, for a container without IPv6, over IPv4
// from Loopback through NAT's publish. A client of ::1 is spliced into
// the container's namespace where it can be (splice_linux.go), to the
// same address as the netstack would connect to. A container that refuses
// or does not answer resets c.
func (u *Uplink) publishedTCP6(c *net.TCPConn, l *listener) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		u.stats.pubFailed.Add(1)
		abortHost(c)
		return
	}
	from := ra.AddrPort()
	if from.Addr().IsLoopback() && u.spliceLocal(c, l.key.port, l.to6.IsValid()) {
		return
	}
	if u.stats.tcpActive.Load() >= uint64(u.cfg.MaxTCP) {
		u.stats.pubFailed.Add(1)
		abortHost(c)
		return
	}
	ctx, cancel := u.dialContext()
	defer cancel()
	var (
		ep  tcpip.Endpoint
		wq  *waiter.Queue
		err error
	)
	if l.to6.IsValid() {
		client, ok := u.clientAddr6(from.Addr())
		if !ok {
			u.stats.pubFailed.Add(1)
			abortHost(c)
			return
		}
		ep, wq, err = u.dialNetstack(ctx, tcpip.AddrFrom16(client), from.Port(), tcpip.AddrFrom16(l.to6.Addr().As16()), l.to6.Port())
	} else {
		ep, wq, err = u.dialNetstack(ctx, tcpip.AddrFrom4(u.loopback), 0, tcpip.AddrFrom4(u.addr), l.key.port)
	}
	cancel()
	u.splicePublished(c, ep, wq, err)
}

// deliverPublished6 delivers the datagram of n bytes at b[48:] that the
// IPv6 listener l received from the client from to the container's IPv6
// address.
func (u *Uplink) deliverPublished6(l *listener, b []byte, n int, from netip.AddrPort) {
	if client, ok := u.clientAddr6(from.Addr()); ok {
		u.deliverUDP6(b, n, client, from.Port(), l.to6.Addr().As16(), l.to6.Port())
	}
}
