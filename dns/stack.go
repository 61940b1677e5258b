package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tapswitch/tapswitch/wire"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Port is the DNS port the server claims on the gateway's address.
const Port = 53

const (
	nicID = 1
	// tcpIdle closes a TCP connection without a query for this long
	// (RFC 7766 6.2.3 suggests seconds).
	tcpIdle = 10 * time.Second
	// maxTCPConns bounds the open TCP connections.
	maxTCPConns = 256
)

// netStack is the server's own TCP stack: one NIC whose address is the
// gateway's, fed by Deliver and sending through the function Start gave;
// and the state of the UDP answers built without it (udp.go).
type netStack struct {
	s    *stack.Stack
	link *link
	tcp  []*gonet.TCPListener // on the IPv4 address, and the IPv6 one

	ipID  atomic.Uint32  // IPv4 identification of the next UDP answer
	bufs  sync.Pool      // *[]byte of headerLen6+MTU bytes, for UDP answers
	wg    sync.WaitGroup // the TCP accept loop and connections
	conns chan struct{}  // a token per open TCP connection
	// forwards are the UDP queries waiting for upstreams.
	forwards sync.WaitGroup

	mu     sync.Mutex // guards open and closed, and forwards.Add
	open   map[net.Conn]struct{}
	closed bool
}

// track adds c to the open connections, or reports false after Close.
func (ns *netStack) track(c net.Conn) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return false
	}
	ns.open[c] = struct{}{}
	return true
}

func (ns *netStack) untrack(c net.Conn) {
	ns.mu.Lock()
	delete(ns.open, c)
	ns.mu.Unlock()
}

// goForward runs f, a UDP query waiting for upstreams, on a goroutine of
// its own that Close waits for, and reports false after Close.
func (ns *netStack) goForward(f func()) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return false
	}
	ns.forwards.Add(1)
	go func() {
		defer ns.forwards.Done()
		f()
	}()
	return true
}

// closeConns closes every open TCP connection, and those accepted later,
// and refuses later forwarded queries (goForward).
func (ns *netStack) closeConns() {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.closed = true
	for c := range ns.open {
		c.Close()
	}
}

// link is the NIC: what the netstack sends goes to send.
type link struct {
	*channel.Endpoint
	send func(pkt []byte)
}

// WritePackets hands the netstack's datagrams to the gateway, synchronously.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		l.send(v.AsSlice())
		v.Release()
		n++
	}
	return n, nil
}

// Claims implements gateway.LocalService: UDP and TCP to port 53.
func (s *Server) Claims(proto uint8, port uint16) bool {
	return port == Port && (proto == wire.ProtoTCP || proto == wire.ProtoUDP) && s.stack.Load() != nil
}

// Deliver implements gateway.LocalService. A UDP query is answered
// here, on the caller's goroutine, when the answer needs no upstream
// (udp.go): into answer when it is not nil. TCP goes into the netstack,
// which verifies its checksums.
func (s *Server) Deliver(datagram, answer []byte) int {
	st := s.stack.Load()
	if st == nil {
		return 0
	}
	if h, err := wire.ParseIPv4(datagram); err == nil {
		if h.Protocol() == wire.ProtoUDP {
			return s.deliverUDP(st, h, answer)
		}
		st.inject(ipv4.ProtocolNumber, h)
		return 0
	}
	h, err := wire.ParseIPv6(datagram)
	if err != nil || !s.cfg.Addr6.IsValid() {
		s.stats.malformed.Add(1)
		return 0
	}
	u, err := h.Upper()
	if err != nil || !u.HasHeader() || u.Fragment {
		s.stats.malformed.Add(1)
		return 0
	}
	if u.Proto == wire.ProtoUDP {
		return s.deliverUDP6(st, h, u.Offset, answer)
	}
	st.inject(ipv6.ProtocolNumber, h)
	return 0
}

// inject hands the netstack a packet of the network protocol proto.
func (ns *netStack) inject(proto tcpip.NetworkProtocolNumber, pkt []byte) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	ns.link.InjectInbound(proto, pb)
	pb.DecRef()
}

// Start starts serving: send is how the netstack's datagrams reach the
// containers (gateway.SendLocal); it must not block or keep its argument.
// Start must be called once, before the gateway delivers anything.
func (s *Server) Start(send func(pkt []byte)) error {
	ns, err := newNetStack(&s.cfg, send)
	if err != nil {
		return err
	}
	for _, l := range ns.tcp {
		ns.wg.Add(1)
		go s.serveTCP(ns, l)
	}
	s.stack.Store(ns)
	return nil
}

// Close stops serving and waits for the server's goroutines.
func (s *Server) Close() error {
	ns := s.stack.Swap(nil)
	if ns == nil {
		return nil
	}
	for _, l := range ns.tcp {
		l.Close()
	}
	ns.closeConns()
	ns.wg.Wait()
	ns.forwards.Wait()
	ns.s.Close()
	return nil
}

// newNetStack makes the netstack of cfg: its NIC has the gateway's
// addresses, with a route to the subnets, and listens on port 53 of each.
func newNetStack(cfg *Config, send func([]byte)) (*netStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	l := &link{Endpoint: channel.New(1, uint32(cfg.MTU), ""), send: send}
	if err := s.CreateNIC(nicID, l); err != nil {
		return nil, fmt.Errorf("dns netstack nic: %s", err)
	}
	ns := &netStack{s: s, link: l, conns: make(chan struct{}, maxTCPConns), open: map[net.Conn]struct{}{}}
	ns.bufs.New = func() any {
		b := make([]byte, headerLen6+cfg.MTU)
		return &b
	}
	var routes []tcpip.Route
	for _, a := range []struct {
		addr   netip.Addr
		subnet netip.Prefix
		proto  tcpip.NetworkProtocolNumber
	}{
		{cfg.Addr, cfg.Subnet, ipv4.ProtocolNumber},
		{cfg.Addr6, cfg.Subnet6, ipv6.ProtocolNumber},
	} {
		if !a.addr.IsValid() {
			continue
		}
		addr := tcpip.AddrFromSlice(a.addr.AsSlice())
		pa := tcpip.ProtocolAddress{Protocol: a.proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: a.subnet.Bits()}}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			s.Close()
			return nil, fmt.Errorf("dns netstack address %s: %s", a.addr, err)
		}
		sub, err := tcpip.NewSubnet(tcpip.AddrFromSlice(a.subnet.Masked().Addr().AsSlice()),
			tcpip.MaskFromBytes(net.CIDRMask(a.subnet.Bits(), a.addr.BitLen())))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("dns netstack route %s: %w", a.subnet, err)
		}
		routes = append(routes, tcpip.Route{Destination: sub, NIC: nicID})
		t, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: nicID, Addr: addr, Port: Port}, a.proto)
		if err != nil {
			for _, t := range ns.tcp {
				t.Close()
			}
			s.Close()
			return nil, fmt.Errorf("dns netstack tcp %s: %w", a.addr, err)
		}
		ns.tcp = append(ns.tcp, t)
	}
	s.SetRouteTable(routes)
	return ns, nil
}

func clientOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// serveTCP accepts connections on l and answers their queries in turn
// (RFC 7766 6.2.1), closing a connection idle for tcpIdle.
func (s *Server) serveTCP(ns *netStack, l *gonet.TCPListener) {
	defer ns.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		select {
		case ns.conns <- struct{}{}:
		default:
			nc.Close()
			continue
		}
		if !ns.track(nc) {
			nc.Close()
			<-ns.conns
			continue
		}
		conns.Add(1)
		go func() {
			defer func() { nc.Close(); ns.untrack(nc); <-ns.conns; conns.Done() }()
			s.serveConn(nc)
		}()
	}
}

func (s *Server) serveConn(nc net.Conn) {
	co := &dns.Conn{Conn: nc}
	client := clientOf(nc.RemoteAddr())
	buf := make([]byte, dns.MaxMsgSize)
	for {
		nc.SetReadDeadline(time.Now().Add(tcpIdle))
		n, err := co.Read(buf)
		if err != nil {
			// EOF, the idle timeout, or a length under a header.
			if errors.Is(err, dns.ErrShortRead) {
				s.stats.malformed.Add(1)
			}
			return
		}
		out := s.handle(buf[:n], client, true)
		if out == nil {
			return
		}
		nc.SetWriteDeadline(time.Now().Add(tcpIdle))
		if _, err := co.Write(out); err != nil {
			return
		}
	}
}
