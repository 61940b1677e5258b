package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

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
	bind netip.Addr // the host address listened on (0.0.0.0 for any)
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

// Publish opens the host listeners of p, one per host port of its range,
// on p.HostIP (every address of the host when zero): TCP connections and
// UDP datagrams they accept are delivered through NAT, which must hold the
// same publish (with HostIP zero), to the container. All or none are
// opened; a port some other socket has fails with ErrHostPortInUse.
func (u *Uplink) Publish(p nat.Publish) error {
	if p.Proto != nat.TCP && p.Proto != nat.UDP {
		return fmt.Errorf("%w %s: protocol must be tcp or udp", nat.ErrBadPublish, p)
	}
	bind := p.HostIP
	if !bind.IsValid() {
		bind = netip.IPv4Unspecified()
	}
	var opened []*listener
	undo := func() {
		for _, l := range opened {
			l.close()
		}
	}
	for port := int(p.HostPort); port <= int(p.HostPortEnd); port++ {
		l := &listener{key: pubKey{p.Proto, uint16(port)}, bind: bind}
		ap := netip.AddrPortFrom(bind, uint16(port))
		var err error
		if p.Proto == nat.TCP {
			l.tcp, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		} else {
			l.udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
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
	}
	for _, l := range opened {
		u.pubs[l.key] = l
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
		k := pubKey{p.Proto, uint16(port)}
		if l := u.pubs[k]; l != nil {
			ls = append(ls, l)
			delete(u.pubs, k)
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
	l := u.pubs[pubKey{proto, port}]
	if l == nil {
		return netip.Addr{}, false
	}
	if l.bind.IsUnspecified() {
		return netip.Addr{}, true
	}
	return l.bind, true
}

// publishedUDP returns the UDP listener of host port, or nil.
func (u *Uplink) publishedUDP(port uint16) *listener {
	u.mu.Lock()
	l := u.pubs[pubKey{nat.UDP, port}]
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
	if from.Addr().Unmap().IsLoopback() && u.spliceLocal(c, hostPort) {
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
	if err != nil {
		u.stats.pubFailed.Add(1)
		abortHost(c)
		return
	}
	u.splice(ep, wq, c)
}

// readPublishedUDP delivers every datagram l receives to the container,
// from the client's address, until l is closed.
func (u *Uplink) readPublishedUDP(l *listener) {
	defer u.wg.Done()
	defer u.stats.listeners.Add(^uint64(0))
	bp := u.getBuf()
	defer u.putBuf(bp)
	b := *bp
	for {
		n, from, err := l.udp.ReadFromUDPAddrPort(b[ipHdrLen+8 : maxPacket-ipHdrLen-8])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.stats.errors.Add(1)
			continue
		}
		client, ok := u.clientAddr(from.Addr())
		if !ok {
			continue
		}
		u.deliverUDP(b, n, client, from.Port(), u.addr, l.key.port)
	}
}
