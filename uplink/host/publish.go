package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// ErrHostPortInUse is returned (wrapped, with the address) by Publish when
// a host port cannot be listened on: another socket of the host has it.
// It is uplink.ErrHostPortInUse.
var ErrHostPortInUse = uplink.ErrHostPortInUse

// listener is a host socket of one published port.
type listener struct {
	key  pubKey
	bind netip.Addr // the host address listened on (0.0.0.0 or :: for any)
	any  bool       // published without a host address: both families
	// to6 is where an IPv6 listener delivers: the container's IPv6
	// address and port; zero for a container without IPv6, reached over
	// IPv4 (publish6.go).
	to6  netip.AddrPort
	tcp  *net.TCPListener
	udp  *net.UDPConn
	once sync.Once
}

func (l *listener) close() {
	l.once.Do(func() {
		if l.tcp != nil {
			l.tcp.Close()
		} else {
			l.udp.Close()
		}
	})
}

// Publish opens the host listeners of p, one per host port of its range
// and family: on p.HostIP, or, when it is zero, on 0.0.0.0 and [::] (as
// Docker does; [::] is left out on a host without IPv6). IPv4 listeners
// deliver what they accept through NAT, which must hold the same publish
// (with HostIP zero), to the container; IPv6 ones deliver to p.Target6
// (publish6.go). All or none are opened; a port some other socket has
// fails with ErrHostPortInUse.
func (u *Uplink) Publish(p nat.Publish) error {
	if p.Proto != nat.TCP && p.Proto != nat.UDP {
		return fmt.Errorf("%w %s: protocol must be tcp or udp", nat.ErrBadPublish, p)
	}
	binds, err := publishBinds(p)
	if err != nil {
		return err
	}
	var opened []*listener
	undo := func() {
		for _, l := range opened {
			l.close()
		}
	}
	for port := int(p.HostPort); port <= int(p.HostPortEnd); port++ {
		for _, bind := range binds {
			l := &listener{key: pubKey{p.Proto, uint16(port), bind.Is6()}, bind: bind, any: !p.HostIP.IsValid()}
			if bind.Is6() && p.Target6.IsValid() {
				l.to6 = netip.AddrPortFrom(p.Target6, p.TargetPort+uint16(port)-p.HostPort)
			}
			ap := netip.AddrPortFrom(bind, uint16(port))
			err := l.listen(ap)
			if err != nil && l.any && bind.Is6() && noIPv6(err) {
				continue // a host without IPv6: IPv4 only
			}
			if err != nil {
				undo()
				if errors.Is(err, errAddrInUse) {
					return fmt.Errorf("%w: %s/%s", ErrHostPortInUse, ap, p.Proto)
				}
				if errors.Is(err, os.ErrPermission) {
					return fmt.Errorf("listen on %s/%s: %w (a port below net.ipv4.ip_unprivileged_port_start needs privilege)", ap, p.Proto, err)
				}
				return fmt.Errorf("listen on %s/%s: %w", ap, p.Proto, err)
			}
			opened = append(opened, l)
		}
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		undo()
		return net.ErrClosed
	}
	for _, l := range opened {
		if u.pubs[l.key] != nil {
			u.mu.Unlock()
			undo()
			return fmt.Errorf("%w: %d/%s is already published", ErrHostPortInUse, l.key.port, l.key.proto)
		}
		if err := u.replyTakenLocked(l); err != nil {
			u.mu.Unlock()
			undo()
			return err
		}
	}
	for _, l := range opened {
		u.pubs[l.key] = l
		if l.udp != nil && l.to6.IsValid() {
			u.setReply6Locked(l.to6, l)
		}
		u.stats.listeners.Add(1)
		u.wg.Add(1)
		if l.tcp != nil {
			go u.acceptTCP(l)
		} else {
			go u.readPublishedUDP(l)
		}
	}
	u.mu.Unlock()
	return nil
}

// Unpublish closes the host listeners of p's host ports. Connections they
// accepted live on.
func (u *Uplink) Unpublish(p nat.Publish) {
	u.mu.Lock()
	var ls []*listener
	for port := int(p.HostPort); port <= int(p.HostPortEnd); port++ {
		for _, v6 := range []bool{false, true} {
			k := pubKey{p.Proto, uint16(port), v6}
			if l := u.pubs[k]; l != nil {
				ls = append(ls, l)
				delete(u.pubs, k)
				if (*u.replies6.Load())[l.to6] == l {
					u.setReply6Locked(l.to6, nil)
				}
			}
		}
	}
	u.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
}

// HostIP returns the host address the published port of proto and port
// listens on (zero for every address), and whether it is published.
func (u *Uplink) HostIP(proto nat.Proto, port uint16) (netip.Addr, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.pubs[pubKey{proto, port, false}]
	if l == nil {
		l = u.pubs[pubKey{proto, port, true}]
	}
	if l == nil {
		return netip.Addr{}, false
	}
	if l.any {
		return netip.Addr{}, true
	}
	return l.bind, true
}

// publishedUDP returns the UDP listener of host port, or nil.
func (u *Uplink) publishedUDP(port uint16) *listener {
	u.mu.Lock()
	l := u.pubs[pubKey{nat.UDP, port, false}]
	u.mu.Unlock()
	return l
}

// acceptTCP accepts connections on l until it is closed and delivers each
// to the container.
func (u *Uplink) acceptTCP(l *listener) {
	defer u.wg.Done()
	defer u.stats.listeners.Add(^uint64(0))
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.stats.errors.Add(1)
			continue
		}
		u.stats.pubAccepted.Add(1)
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			if l.key.v6 {
				u.publishedTCP6(c, l)
				return
			}
			u.publishedTCP(c, l.key.port)
		}()
	}
}

// publishedTCP opens the connection into the container for c, accepted on
// hostPort, from the client's address, and splices the two; a container
// that refuses or does not answer resets c.
func (u *Uplink) publishedTCP(c *net.TCPConn, hostPort uint16) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		abortHost(c)
		return
	}
	from := ra.AddrPort()
	if from.Addr().Unmap().IsLoopback() && u.spliceLocal(c, hostPort, false) {
		return
	}
	client, ok := u.clientAddr(from.Addr())
	if !ok || u.stats.tcpActive.Load() >= uint64(u.cfg.MaxTCP) {
		u.stats.pubFailed.Add(1)
		abortHost(c)
		return
	}
	ctx, cancel := u.dialContext()
	ep, wq, err := u.dialContainer(ctx, client, from.Port(), hostPort)
	cancel()
	u.splicePublished(c, ep, wq, err)
}

// splicePublished splices the accepted c with ep, its connection into the
// container, or resets c when that dial failed (err).
func (u *Uplink) splicePublished(c *net.TCPConn, ep tcpip.Endpoint, wq *waiter.Queue, err error) {
	if err != nil {
		u.stats.pubFailed.Add(1)
		abortHost(c)
		return
	}
	u.splice(ep, wq, c)
}

// readPublishedUDP delivers every datagram l receives to the container,
// from the client's address, until l is closed (an IPv6 listener's to the
// container's IPv6 address, publish6.go).
func (u *Uplink) readPublishedUDP(l *listener) {
	defer u.wg.Done()
	defer u.stats.listeners.Add(^uint64(0))
	bp := u.getBuf()
	defer u.putBuf(bp)
	b := *bp
	hl := ipHdrLen
	if l.key.v6 {
		hl = ip6HdrLen
	}
	for {
		n, from, err := l.udp.ReadFromUDPAddrPort(b[hl+8 : maxPacket-hl-8])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.stats.errors.Add(1)
			continue
		}
		if l.key.v6 {
			u.deliverPublished6(l, b, n, from)
			continue
		}
		client, ok := u.clientAddr(from.Addr())
		if !ok {
			continue
		}
		u.deliverUDP(b, n, client, from.Port(), u.addr, l.key.port)
	}
}
