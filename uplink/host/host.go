package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/wire"
)

// nicID is the netstack's IPv4 NIC, nicID6 its IPv6 one (ipv6.go).
const (
	nicID  tcpip.NICID = 1
	nicID6 tcpip.NICID = 2
)

// maxPacket is the largest IPv4 datagram.
const maxPacket = 65535

// Uplink is the host-socket uplink. Send is safe for concurrent use; Start
// is called once; Close ends every connection, socket, listener and
// goroutine the uplink started.
type Uplink struct {
	// Capture is the uplink's capture point (`tapswitch capture
	// uplink`): IPv4 packets (LINKTYPE_RAW) as they leave for the host and
	// come back, after NAT.
	Capture capture.Point

	cfg       Config
	log       *slog.Logger
	addr      [4]byte
	loopback  [4]byte
	loopback6 [16]byte

	stack *stack.Stack
	link  *linkEndpoint
	link6 *linkEndpoint // IPv6's NIC (ipv6.go)

	handle    atomic.Pointer[func(pkt []byte)]
	handleGSO atomic.Pointer[func(parts [][]byte, mss int)]
	pool      sync.Pool // *[]byte of maxPacket+headroom, for packets built for handle

	mu     sync.Mutex // guards closed, conns, pubs, and writes of replies6
	closed bool
	conns  map[carried]struct{} // TCP connections carried (tcp.go)
	pubs   map[pubKey]*listener
	// replies6 are the IPv6 UDP listeners by the container's address and
	// port they deliver to: a datagram from there is a reply to their
	// client (IPv6 is not translated, so the host port is not in it). An
	// immutable map, replaced under mu, read without a lock per datagram.
	replies6 atomic.Pointer[map[netip.AddrPort]*listener]

	local localSplices // published ports' loopback clients (splice_linux.go)

	udp   flows      // UDP sockets by mapped port
	icmp  flows      // ICMP sockets by mapped identifier
	reasm reassembly // UDP and ICMP datagrams sent fragmented

	pingWarn sync.Once

	done chan struct{}
	// life ends when the uplink is closed (endLife): dials in progress
	// are abandoned.
	life    context.Context
	endLife context.CancelFunc
	wg      sync.WaitGroup

	stats counters

	// now is the clock flows are stamped with (unix nanoseconds),
	// refreshed by expireLoop every tick rather than read per datagram.
	now atomic.Int64
}

// clock returns the uplink's coarse clock (see Uplink.now).
func (u *Uplink) clock() int64 { return u.now.Load() }

// New returns a host uplink, not yet started: call Start. cfg is validated
// first.
func New(cfg Config) (*Uplink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &Uplink{
		cfg:       cfg,
		log:       cfg.Logger,
		addr:      cfg.Addr.As4(),
		loopback:  cfg.Loopback.As4(),
		loopback6: cfg.Loopback6.As16(),
		conns:     map[carried]struct{}{},
		pubs:      map[pubKey]*listener{},
		done:      make(chan struct{}),
	}
	u.replies6.Store(&map[netip.AddrPort]*listener{})
	u.now.Store(time.Now().UnixNano())
	u.life, u.endLife = context.WithCancel(context.Background())
	u.Capture.Link = capture.LinkRaw
	u.pool.New = func() any { b := make([]byte, maxPacket+64); return &b }
	u.udp.init(wire.ProtoUDP)
	u.icmp.init(wire.ProtoICMP)
	if err := u.newStack(); err != nil {
		return nil, err
	}
	return u, nil
}

// newStack creates the netstack that terminates TCP: one NIC, promiscuous
// and spoofing (it answers for every address), routes everything to it, and
// hands every SYN to the forwarder.
func (u *Uplink) newStack() error {
	s := stack.New(stack.Options{
		// IPv6 with its zero options: no RS, no MLD, no SLAAC, no DAD
		// (the NIC has no address of its own).
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocolWithOptions(ipv6.Options{})},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	u.link = &linkEndpoint{Endpoint: channel.New(1, uint32(u.cfg.MTU), ""), u: u}
	// The packets come from containers' kernels through NAT, whose
	// incremental checksum updates are exact: the netstack need not
	// verify them again.
	u.link.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	// IPv6 has a NIC of its own, without GSO: the gateway takes
	// super-segments for TCP/IPv4 only.
	u.link6 = &linkEndpoint{Endpoint: channel.New(1, uint32(u.cfg.MTU), ""), u: u, v6: true}
	u.link6.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	for _, n := range []struct {
		id tcpip.NICID
		ep *linkEndpoint
	}{{nicID, u.link}, {nicID6, u.link6}} {
		if err := s.CreateNIC(n.id, n.ep); err != nil {
			return fmt.Errorf("host uplink: netstack nic: %s", err)
		}
		if err := s.SetPromiscuousMode(n.id, true); err != nil {
			return fmt.Errorf("host uplink: promiscuous: %s", err)
		}
		if err := s.SetSpoofing(n.id, true); err != nil {
			return fmt.Errorf("host uplink: spoofing: %s", err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID6},
	})
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 1 << 20, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: 1 << 20, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod)
	fwd := tcp.NewForwarder(s, 0, 1024, u.forwardTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	u.stack = s
	return nil
}

// Config returns the uplink's configuration, defaults filled in.
func (u *Uplink) Config() Config { return u.cfg }

// Addr returns the uplink's address (NAT's external address).
func (u *Uplink) Addr() netip.Addr { return u.cfg.Addr }

// MTU returns the largest datagram Send takes.
func (u *Uplink) MTU() int { return u.cfg.MTU }

// Start starts the uplink. handle is called with each IPv4 datagram that
// comes back from the host for the uplink's address, from several
// goroutines at once; it may modify the packet but must not keep it. gone
// is never called (the host does not go away); it is there so that the
// daemon treats every uplink alike.
func (u *Uplink) Start(handle func(pkt []byte), gone func(error)) {
	u.handle.Store(&handle)
	u.wg.Add(1)
	go u.expireLoop()
}

// SetGSOHandler makes the netstack send TCP super-segments (up to 64 KiB,
// with a partial checksum: the pseudo-header sum only) to h instead of
// MTU-sized segments to Start's handle; mss is the payload size of the
// segments they stand for. A super-segment comes in parts (the netstack's
// header and payload buffers, in order) that h gathers, so that it is
// copied once on its way. h must not modify nor keep the parts (gateway's
// FromUplinkGSOSlices is one). It must be called before Start, if at all.
func (u *Uplink) SetGSOHandler(h func(parts [][]byte, mss int)) {
	u.handleGSO.Store(&h)
}

// Close ends every connection, socket and listener of the uplink and waits
// for its goroutines.
func (u *Uplink) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	close(u.done)
	u.endLife()
	conns := make([]carried, 0, len(u.conns))
	for c := range u.conns {
		conns = append(conns, c)
	}
	pubs := make([]*listener, 0, len(u.pubs))
	for _, l := range u.pubs {
		pubs = append(pubs, l)
	}
	u.mu.Unlock()
	for _, l := range pubs {
		l.close()
	}
	for _, c := range conns {
		c.abort()
	}
	u.udp.closeAll()
	u.icmp.closeAll()
	u.wg.Wait()
	u.stack.Close()
	u.stack.Wait()
	return nil
}

// hold counts a goroutine the uplink did not start (the netstack's
// forwarder starts one per SYN) in u.wg, so that Close waits for it, and
// reports whether it did: false once Close was called. A goroutine held
// calls u.wg.Done when it returns.
func (u *Uplink) hold() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.wg.Add(1)
	return true
}

// isClosed reports whether Close was called.
func (u *Uplink) isClosed() bool {
	select {
	case <-u.done:
		return true
	default:
		return false
	}
}

// Send carries the IPv4 datagram buf[off:], translated by NAT (its source
// is the uplink's address), to the host. It does not keep buf. It returns
// net.ErrClosed after Close.
func (u *Uplink) Send(buf []byte, off int) error {
	if u.isClosed() {
		return net.ErrClosed
	}
	pkt := buf[off:]
	ip, err := wire.ParseIPv4(pkt)
	if err != nil {
		u.stats.malformed.Add(1)
		return errMalformed
	}
	pkt = ip
	hl, tl := ip.HeaderLen(), len(ip)
	u.Capture.Deliver(capture.Out, pkt)
	u.stats.txPackets.Add(1)
	u.stats.txBytes.Add(uint64(tl))
	if ip.Dst()[0] == 127 {
		// Never the host's loopback itself (see target).
		u.stats.loopbackRefused.Add(1)
		return nil
	}
	fragment := ip.IsFragment()
	switch proto := ip.Protocol(); proto {
	case wire.ProtoTCP:
		// The netstack reassembles fragments.
		u.link.inject(ipv4.ProtocolNumber, pkt)
		return nil
	case wire.ProtoUDP, wire.ProtoICMP:
		if fragment {
			whole, dropped := u.reasm.add(pkt, hl, time.Now())
			if dropped {
				u.stats.fragDropped.Add(1)
			}
			if whole == nil {
				return nil
			}
			u.stats.reassembled.Add(1)
			pkt, hl = whole, ipHdrLen
		}
		if proto == wire.ProtoUDP {
			return u.sendUDP(pkt, hl)
		}
		return u.sendICMP(pkt, hl)
	}
	u.stats.otherDropped.Add(1)
	return nil
}

var errMalformed = errors.New("host uplink: malformed IPv4 packet")

// target maps the destination a container asked for to the host's address
// to use, and says whether it may be reached: Loopback is the host's
// 127.0.0.1 with HostLoopback, and never otherwise; 127.0.0.0/8 itself, the
// uplink's own address and non-unicast addresses are never reached.
func (u *Uplink) target(dst [4]byte) (netip.Addr, bool) {
	switch {
	case dst == u.loopback:
		if !u.cfg.HostLoopback {
			u.stats.loopbackRefused.Add(1)
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	case dst[0] == 127:
		u.stats.loopbackRefused.Add(1)
		return netip.Addr{}, false
	case dst == u.addr || !hostAddr(dst):
		u.stats.otherDropped.Add(1)
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(dst), true
}

// clientAddr maps the address of a host client of a published port to the
// address the container sees: its own, or Loopback for the host's
// loopback.
func (u *Uplink) clientAddr(a netip.Addr) ([4]byte, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return [4]byte{}, false
	}
	b := a.As4()
	if b[0] == 127 {
		return u.loopback, true
	}
	return b, true
}

// hostAddrOf is clientAddr's inverse for replies: Loopback goes back to
// 127.0.0.1.
func (u *Uplink) hostAddrOf(b [4]byte) netip.Addr {
	if b == u.loopback {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.AddrFrom4(b)
}

// deliver hands pkt, a datagram for the uplink's address, to the gateway.
func (u *Uplink) deliver(pkt []byte) {
	h := u.handle.Load()
	if h == nil {
		return
	}
	u.stats.rxPackets.Add(1)
	u.stats.rxBytes.Add(uint64(len(pkt)))
	u.Capture.Deliver(capture.In, pkt)
	(*h)(pkt)
}

// deliverGSO hands parts, a TCP super-segment with a partial checksum in
// pieces, to the GSO handler.
func (u *Uplink) deliverGSO(parts [][]byte, mss int) {
	h := u.handleGSO.Load()
	if h == nil {
		return
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	u.stats.rxPackets.Add(1)
	u.stats.rxBytes.Add(uint64(n))
	if u.Capture.Active() {
		bp := u.getBuf()
		b := (*bp)[:0]
		for _, p := range parts {
			b = append(b, p...)
		}
		u.Capture.Deliver(capture.In, b)
		u.putBuf(bp)
	}
	(*h)(parts, mss)
}

func (u *Uplink) getBuf() *[]byte  { return u.pool.Get().(*[]byte) }
func (u *Uplink) putBuf(b *[]byte) { u.pool.Put(b) }

// expireLoop closes idle UDP and ICMP sockets.
func (u *Uplink) expireLoop() {
	defer u.wg.Done()
	every := min(u.cfg.UDPTimeout, u.cfg.ICMPTimeout) / 4
	every = min(max(every, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-u.done:
			return
		case now := <-t.C:
			u.now.Store(now.UnixNano())
			// A flow's stamp lags its last datagram by up to one
			// tick: give it that tick, never less than its timeout.
			u.udp.expire(now, u.cfg.UDPTimeout+every)
			u.icmp.expire(now, u.cfg.ICMPTimeout+every)
			u.stats.fragDropped.Add(uint64(u.reasm.expire(now)))
		}
	}
}

// linkEndpoint is the netstack's NIC: packets the netstack sends go to the
// gateway (through deliver), packets from the gateway are injected.
type linkEndpoint struct {
	*channel.Endpoint
	u  *Uplink
	v6 bool // IPv6's NIC: no GSO
}

// inject hands the netstack the packet pkt of proto (copied) as received.
func (l *linkEndpoint) inject(proto tcpip.NetworkProtocolNumber, pkt []byte) {
	v := buffer.NewViewWithData(pkt)
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	l.InjectInbound(proto, pb)
	pb.DecRef()
}

// gsoMaxSize is the largest super-segment the netstack sends, headers
// included, below the IPv4 limit.
const gsoMaxSize = 65000

// SupportedGSO implements stack.GSOEndpoint: the netstack sends TCP
// super-segments (with a partial checksum) when a GSO handler is set.
func (l *linkEndpoint) SupportedGSO() stack.SupportedGSO {
	if !l.v6 && l.u.handleGSO.Load() != nil {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize implements stack.GSOEndpoint.
func (l *linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// WritePackets hands the netstack's packets to the gateway, synchronously.
// Super-segments go in parts, which the gateway gathers into its frame.
func (l *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if g := pkt.GSOOptions; g.Type == stack.GSOTCPv4 && g.NeedsCsum {
			l.u.deliverGSO(pkt.AsSlices(), int(g.MSS))
			n++
			continue
		}
		bp := l.u.getBuf()
		b := (*bp)[:0]
		for _, s := range pkt.AsSlices() {
			b = append(b, s...)
		}
		l.u.deliver(b)
		l.u.putBuf(bp)
		n++
	}
	return n, nil
}

// pubKey names a published host port of one family.
type pubKey struct {
	proto nat.Proto
	port  uint16
	v6    bool
}

// SendGSO is Send for a TCP super-segment (uplink.GSOSender): the
// netstack takes it whole, larger than the MTU, whatever mss, and does not
// verify its checksum (the NIC has RX checksum offload), which is partial.
func (u *Uplink) SendGSO(buf []byte, off, _ int) error { return u.Send(buf, off) }
