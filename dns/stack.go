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
	tcp  *gonet.TCPListener

	addr  [4]byte        // the gateway's, the source of answers
	ipID  atomic.Uint32  // IPv4 identification of the next UDP answer
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
// (udp.go); TCP goes into the netstack, which verifies its checksums.
func (s *Server) Deliver(datagram []byte) {
	st := s.stack.Load()
	if st == nil {
		return
	}
	h, err := wire.ParseIPv4(datagram)
	if err != nil {
		s.stats.malformed.Add(1)
		return
	}
	if h.Protocol() == wire.ProtoUDP {
		s.deliverUDP(st, h)
		return
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(h)})
	st.link.InjectInbound(ipv4.ProtocolNumber, pb)
	pb.DecRef()
}

// Start starts serving: send is how the netstack's datagrams reach the
// containers (gateway.SendLocal); it must not block or keep its argument.
// Start must be called once, before the gateway delivers anything.
func (s *Server) Start(send func(pkt []byte)) error {
	ns, err := newNetStack(s.cfg.Addr, s.cfg.Subnet, s.cfg.MTU, send)
	if err != nil {
		return err
	}
	ns.wg.Add(1)
	go s.serveTCP(ns)
	s.stack.Store(ns)
	return nil
}

// Close stops serving and waits for the server's goroutines.
func (s *Server) Close() error {
	ns := s.stack.Swap(nil)
	if ns == nil {
		return nil
	}
	ns.tcp.Close()
	ns.closeConns()
	ns.wg.Wait()
	ns.forwards.Wait()
	ns.s.Close()
	return nil
}

func newNetStack(addr netip.Addr, subnet netip.Prefix, mtu int, send func([]byte)) (*netStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	l := &link{Endpoint: channel.New(1, uint32(mtu), ""), send: send}
	if err := s.CreateNIC(nicID, l); err != nil {
		return nil, fmt.Errorf("dns netstack nic: %s", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(addr.As4()).WithPrefix(),
	}
	pa.AddressWithPrefix.PrefixLen = subnet.Bits()
	if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("dns netstack address: %s", err)
	}
	sub, err := tcpip.NewSubnet(tcpip.AddrFrom4(subnet.Masked().Addr().As4()),
		tcpip.MaskFromBytes(net.CIDRMask(subnet.Bits(), 32)))
	if err != nil {
		return nil, fmt.Errorf("dns netstack route: %w", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: nicID}})
	local := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(addr.As4()), Port: Port}
	t, err := gonet.ListenTCP(s, local, ipv4.ProtocolNumber)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("dns netstack tcp: %w", err)
	}
	return &netStack{s: s, link: l, tcp: t, addr: addr.As4(), conns: make(chan struct{}, maxTCPConns), open: map[net.Conn]struct{}{}}, nil
}

func clientOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// serveTCP accepts connections and answers their queries in turn (RFC
// 7766 6.2.1), closing a connection idle for tcpIdle.
func (s *Server) serveTCP(ns *netStack) {
	defer ns.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		nc, err := ns.tcp.Accept()
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
