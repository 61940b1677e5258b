package host

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// forwardTCP handles a SYN a container sent (through NAT) to an outside
// address: it dials the host connection first, so that a refused connect
// becomes a RST, then completes the handshake and splices the two. It runs
// on its own goroutine (the forwarder starts one per SYN), which Close
// waits for like the uplink's own.
func (u *Uplink) forwardTCP(r *tcp.ForwarderRequest) {
	if !u.hold() {
		r.Complete(true)
		return
	}
	defer u.wg.Done()
	id := r.ID()
	network, dst, ok := "tcp4", netip.Addr{}, false
	if id.LocalAddress.Len() == 16 {
		network = "tcp6"
		dst, ok = u.target6(id.LocalAddress.As16())
	} else {
		dst, ok = u.target(id.LocalAddress.As4())
	}
	if !ok {
		r.Complete(true)
		return
	}
	if u.stats.tcpActive.Load() >= uint64(u.cfg.MaxTCP) {
		u.stats.tcpLimit.Add(1)
		r.Complete(true)
		return
	}
	ctx, cancel := u.dialContext()
	var d net.Dialer
	hc, err := d.DialContext(ctx, network, netip.AddrPortFrom(dst, id.LocalPort).String())
	cancel()
	if err != nil {
		u.stats.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The container gave up (or reset) during the connect.
		r.Complete(true)
		abortHost(hc.(*net.TCPConn))
		u.stats.errors.Add(1)
		return
	}
	r.Complete(false)
	u.splice(ep, &wq, hc.(*net.TCPConn))
}

// dialContext is the context of one dial: it ends after DialTimeout, or
// when the uplink is closed.
func (u *Uplink) dialContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(u.life, u.cfg.DialTimeout)
}

// dialContainer opens a netstack connection from the client's address to
// the uplink's address and host port, which NAT's published port turns into
// the container's port. It returns the endpoint too, to abort it.
func (u *Uplink) dialContainer(ctx context.Context, client [4]byte, cport, hostPort uint16) (tcpip.Endpoint, *waiter.Queue, error) {
	return u.dialNetstack(ctx, tcpip.AddrFrom4(client), cport, tcpip.AddrFrom4(u.addr), hostPort)
}

// dialNetstack opens a netstack connection from from:fport (port 0: any)
// to to:port, of IPv4 or IPv6 as the addresses are, and returns its
// endpoint.
func (u *Uplink) dialNetstack(ctx context.Context, from tcpip.Address, fport uint16, to tcpip.Address, port uint16) (tcpip.Endpoint, *waiter.Queue, error) {
	proto, nic := ipv4.ProtocolNumber, nicID
	if to.Len() == 16 {
		proto, nic = ipv6.ProtocolNumber, nicID6
	}
	wq := new(waiter.Queue)
	ep, terr := u.stack.NewEndpoint(tcp.ProtocolNumber, proto, wq)
	if terr != nil {
		return nil, nil, errors.New(terr.String())
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if terr := ep.Bind(tcpip.FullAddress{NIC: nic, Addr: from, Port: fport}); terr != nil {
		ep.Close()
		return nil, nil, errors.New(terr.String())
	}
	terr = ep.Connect(tcpip.FullAddress{NIC: nic, Addr: to, Port: port})
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Abort()
			ep.Close()
			return nil, nil, ctx.Err()
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, nil, errors.New(terr.String())
	}
	return ep, wq, nil
}

// splice is one TCP connection carried between the netstack (the
// container's side) and a host socket.
type splice struct {
	ep   tcpip.Endpoint
	in   *gonet.TCPConn
	out  *net.TCPConn
	once sync.Once
}

// abort ends both sides with a reset.
func (s *splice) abort() {
	s.once.Do(func() {
		s.ep.Abort()
		abortHost(s.out)
	})
}

// abortHost closes a host connection with a RST (SO_LINGER 0).
func abortHost(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// splice copies both ways between the netstack endpoint ep and the host
// connection out until both directions are done, mapping FIN to FIN
// (half-close) and a reset or error on one side to a reset on the other.
// It returns when the connection has ended and both sockets are closed.
func (u *Uplink) splice(ep tcpip.Endpoint, wq *waiter.Queue, out *net.TCPConn) {
	s := &splice{ep: ep, in: gonet.NewTCPConn(wq, ep), out: out}
	carried := u.carry(s, func() {
		// host -> container
		if err := copyHalf(s.in, s.out); err != nil {
			u.reset(s)
			return
		}
		s.in.CloseWrite()
	}, func() {
		// container -> host
		if err := copyHalf(s.out, s.in); err != nil {
			u.reset(s)
		} else {
			s.out.CloseWrite()
		}
	})
	if !carried {
		return
	}
	s.once.Do(func() {}) // ended: no reset from here on
	// After a reset too: Abort resets a connected endpoint but leaves it
	// to Close to free it.
	s.in.Close()
	s.out.Close()
}

// carried is a TCP connection the uplink carries: Close aborts it (with
// resets both ways).
type carried interface{ abort() }

// carry runs the two directions of c, one on a goroutine of its own, until
// both return, with c counted (active, total) and known to Close
// meanwhile. It returns false, having aborted c, after Close.
func (u *Uplink) carry(c carried, one, other func()) bool {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		c.abort()
		return false
	}
	u.conns[c] = struct{}{}
	u.mu.Unlock()
	u.stats.tcpTotal.Add(1)
	u.stats.tcpActive.Add(1)
	defer func() {
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
		u.stats.tcpActive.Add(^uint64(0))
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		one()
	}()
	other()
	wg.Wait()
	return true
}

// reset ends s with resets both ways, counted once.
func (u *Uplink) reset(s *splice) {
	done := true
	s.once.Do(func() {
		done = false
		s.ep.Abort()
		abortHost(s.out)
	})
	if !done {
		u.stats.tcpResets.Add(1)
	}
}

// copyHalf copies src to dst until src's EOF (nil) or an error on either.
func copyHalf(dst io.Writer, src io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	return err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
