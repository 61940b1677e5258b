package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/wire"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultMTU          = 1500
	DefaultNeighTimeout = 5 * time.Minute
	DefaultErrorRate    = 100
	DefaultQueueLen     = 256
	DefaultMaxNeighbors = 4096
)

// ErrInvalidConfig is returned by New when the Config cannot describe a
// gateway; the error wrapping it says which field is wrong.
var ErrInvalidConfig = errors.New("invalid gateway config")

// Config configures a Gateway. Zero values select the documented defaults.
type Config struct {
	// MAC is the gateway's unicast hardware address (the daemon picks a
	// locally administered one).
	MAC net.HardwareAddr

	// Addr is the gateway's IPv4 address and the subnet of the
	// containers, e.g. 10.90.0.1/16. The prefix must be between /1 and
	// /30, and the address a host address in it (neither the network nor
	// the broadcast address).
	Addr netip.Prefix

	// MTU is the largest IPv4 datagram the gateway accepts and sends;
	// 0 means DefaultMTU (1500). It must be between 576 and 65535.
	MTU int

	// NeighTimeout is how long a neighbour stays valid after it was last
	// heard from; 0 means DefaultNeighTimeout (5 minutes). The kernel
	// keeps an entry REACHABLE for about 30 s (base_reachable_time) and
	// then re-verifies it with ARP before use; the gateway sends ARP
	// requests only for neighbours it does not know (neigh.go), never
	// to re-verify one it knows, so it keeps entries as long as the Linux
	// bridge keeps an FDB entry (300 s) and relies on the daemon calling
	// Forget when a container is detached.
	NeighTimeout time.Duration

	// ErrorRate is the number of ICMP errors (and TCP resets) per second
	// the gateway sends, with a burst of one second's worth; 0 means
	// DefaultErrorRate (100). Like the kernel's icmp_ratelimit, it keeps
	// a misbehaving container from turning the gateway into an amplifier.
	ErrorRate int

	// QueueLen is the number of replies that can wait for Read; 0 means
	// DefaultQueueLen (256). When the queue is full, replies are dropped
	// and counted in Stats.QueueDrops.
	QueueLen int

	// MaxNeighbors bounds the neighbour table; 0 means
	// DefaultMaxNeighbors (4096, the order of the kernel's gc_thresh3).
	// A new neighbour in a full table evicts the least recently heard
	// one.
	MaxNeighbors int

	// Now is the clock used for rate limiting and, when set, for
	// neighbour ages (otherwise Clock is); nil means time.Now. Tests
	// inject a fake clock here.
	Now func() time.Time

	// NAT and Uplink, both set or both nil, make the gateway a router:
	// datagrams to destinations outside the subnet (and to the uplink's
	// own address: hairpin) go through NAT.FromInternal, and datagrams
	// the uplink receives come in through FromUplink (see route.go).
	// Without them, every destination outside the subnet is answered
	// with ICMP network unreachable. With Addr6, an Uplink that is also
	// an uplink.Sender6 carries IPv6 too, untranslated (route6.go).
	NAT    *nat.Table
	Uplink uplink.Sender

	// HostLoopback, with NAT and Uplink, makes the gateway's own address
	// stand for the host's loopback (slirp4netns's 10.0.2.2): TCP and UDP
	// datagrams a container sends to the gateway's address are routed
	// with their destination rewritten to HostLoopback, the address the
	// host uplink carries to 127.0.0.1, and datagrams from the uplink
	// whose source is HostLoopback reach the container with the
	// gateway's address as their source. ICMP to the gateway is still
	// answered by the gateway. Zero: off, the gateway answers TCP with a
	// reset and UDP with port unreachable.
	HostLoopback netip.Addr

	// Addr6 is the gateway's IPv6 address and the containers' /64 (e.g.
	// fd42:1::1/64), which makes it dual-stack (ipv6.go): it answers ND
	// for Addr6 and its link-local address from MAC, ICMPv6 echo, and
	// sends router advertisements. Zero: IPv6 frames are counted
	// (Stats.IPv6) and dropped.
	Addr6 netip.Prefix

	// NoRA turns router advertisements off (RFC 4861 6.2.2: AdvSendAdvertisements).
	NoRA bool

	// Clock is the monotonic clock, in nanoseconds, passed to NAT and,
	// unless Now is set, used for neighbour ages, read once per routed
	// datagram; nil means one of the process's own. The daemon passes
	// the switch's coarse clock (Switch.Now), which it also runs
	// NAT.Expire with.
	Clock func() int64

	// Local, if set, serves ports on the gateway's address for the
	// containers (local.go): the embedded DNS server. Datagrams to the
	// ports it claims go to it, before the host loopback.
	Local LocalService
}

// Gateway is the containers' default router as a port of the switch. It
// answers ARP for its address, keeps a neighbour table, replies to pings and
// answers everything else with the ICMP error or TCP reset a host or router
// would send. Its replies wait in a bounded queue for Read.
//
// Write is safe for concurrent use; Read is called by one goroutine at a
// time; all other methods are safe for concurrent use.
type Gateway struct {
	mac    [6]byte
	prefix netip.Prefix
	addr   [4]byte // gateway address
	bcast  [4]byte // directed broadcast address of the subnet
	mtu    int
	now    func() time.Time

	neigh   *neighCache  // containers' MACs, datagrams waiting for one
	clock   func() int64 // of neighbour ages (neighClock)
	limiter *tokenBucket
	ipID    atomic.Uint32 // identification of the next originated datagram

	pool  sync.Pool   // of *[]byte, cap UplinkHeadroom+mtu
	queue chan qframe // frames waiting for Read

	route *route       // nil without NAT and uplink
	v6    *ipv6        // nil without Config.Addr6
	local LocalService // nil: no service on the gateway's address

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	stats counters
}

var (
	_ vswitch.Port     = (*Gateway)(nil)
	_ vswitch.Answerer = (*Gateway)(nil)
)

// New returns a Gateway configured by cfg, after applying defaults and
// validating it. Errors wrap ErrInvalidConfig.
func New(cfg Config) (*Gateway, error) {
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("mac %q is not 6 bytes: %w", cfg.MAC, ErrInvalidConfig)
	}
	var mac [6]byte
	copy(mac[:], cfg.MAC)
	if !isUnicastMAC(mac) {
		return nil, fmt.Errorf("mac %s is not unicast: %w", cfg.MAC, ErrInvalidConfig)
	}
	p := cfg.Addr
	if !p.IsValid() || !p.Addr().Is4() {
		return nil, fmt.Errorf("addr %s is not an IPv4 prefix: %w", p, ErrInvalidConfig)
	}
	if p.Bits() < 1 || p.Bits() > 30 {
		return nil, fmt.Errorf("addr %s: prefix length must be between 1 and 30: %w", p, ErrInvalidConfig)
	}
	g := &Gateway{
		mac:    mac,
		prefix: p,
		addr:   p.Addr().As4(),
		mtu:    cmp.Or(cfg.MTU, DefaultMTU),
		now:    cfg.Now,
		done:   make(chan struct{}),
	}
	g.bcast = broadcastOf(p)
	network := p.Masked().Addr().As4()
	if g.addr == network || g.addr == g.bcast || !isHostAddr(g.addr) {
		return nil, fmt.Errorf("addr %s is not a host address of its subnet: %w", p, ErrInvalidConfig)
	}
	if g.mtu < maxICMPErrorLen || g.mtu > 65535 {
		return nil, fmt.Errorf("mtu %d out of range [576, 65535]: %w", g.mtu, ErrInvalidConfig)
	}
	if g.now == nil {
		g.now = time.Now
	}
	timeout := cmp.Or(cfg.NeighTimeout, DefaultNeighTimeout)
	rate := cmp.Or(cfg.ErrorRate, DefaultErrorRate)
	qlen := cmp.Or(cfg.QueueLen, DefaultQueueLen)
	maxNeigh := cmp.Or(cfg.MaxNeighbors, DefaultMaxNeighbors)
	if timeout < 0 || rate < 0 || qlen < 0 || maxNeigh < 0 {
		return nil, fmt.Errorf("negative NeighTimeout, ErrorRate, QueueLen or MaxNeighbors: %w", ErrInvalidConfig)
	}
	g.neigh, g.clock = newNeighCache(timeout, maxNeigh), neighClock(&cfg)
	g.limiter = newTokenBucket(rate, g.now())
	g.queue = make(chan qframe, qlen)
	// Room for a datagram of the MTU behind the uplink's headers; an
	// Ethernet frame the gateway builds starts at 0.
	size := UplinkHeadroom + g.mtu
	g.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	if err := g.setup6(&cfg); err != nil {
		return nil, err
	}
	if g.v6 != nil {
		g.v6.neigh = neigh.New[[16]byte, qframe](neigh.Config{Timeout: timeout, Limit: maxNeigh})
	}
	if (cfg.NAT == nil) != (cfg.Uplink == nil) {
		return nil, fmt.Errorf("NAT and Uplink must be set together: %w", ErrInvalidConfig)
	}
	g.local = cfg.Local
	if cfg.NAT != nil {
		g.route = newRoute(cfg.NAT, cfg.Uplink, cfg.Clock)
		g.route.setupNAT6(g, cfg.Uplink)
		if cfg.HostLoopback.IsValid() {
			if !cfg.HostLoopback.Is4() || cfg.Addr.Contains(cfg.HostLoopback) || !isHostAddr(cfg.HostLoopback.As4()) {
				return nil, fmt.Errorf("host loopback %s: not an IPv4 host address outside the subnet: %w", cfg.HostLoopback, ErrInvalidConfig)
			}
			g.route.hostLo, g.route.hasHostLo = cfg.HostLoopback.As4(), true
		}
	} else if cfg.HostLoopback.IsValid() {
		return nil, fmt.Errorf("HostLoopback needs NAT and Uplink: %w", ErrInvalidConfig)
	}
	if err := g.setupOut6(&cfg); err != nil {
		return nil, err
	}
	g.start6()
	return g, nil
}

// Name returns "gateway".
func (g *Gateway) Name() string { return "gateway" }

// MAC returns the gateway's hardware address. The caller may modify the
// returned slice.
func (g *Gateway) MAC() net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), g.mac[:]...)) }

// Addr returns the gateway's address and subnet.
func (g *Gateway) Addr() netip.Prefix { return g.prefix }

// MTU returns the largest IPv4 datagram the gateway accepts and sends.
func (g *Gateway) MTU() int { return g.mtu }

// Stats returns a snapshot of the gateway's counters.
func (g *Gateway) Stats() Stats { return g.stats.snapshot() }

// Close makes a blocked Read, and every later Read and Write, return
// net.ErrClosed. Replies still queued are discarded. Close is idempotent
// and safe to call while Write runs on other goroutines.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return nil
}

// Read blocks until a reply frame is ready and copies it into buf[offset:]
// behind a zero virtio_net_hdr, returning VnetHdrLen plus the frame length.
// It does not keep buf. After Close it returns an error wrapping
// net.ErrClosed. If buf[offset:] is too small for the frame, the frame is
// dropped and Read returns io.ErrShortBuffer.
func (g *Gateway) Read(buf []byte, offset int) (int, error) {
	if offset < 0 || offset > len(buf) {
		return 0, fmt.Errorf("gateway read: offset %d out of range: %w", offset, io.ErrShortBuffer)
	}
	select {
	case <-g.done:
		return 0, fmt.Errorf("gateway read: %w", net.ErrClosed)
	default:
	}
	select {
	case <-g.done:
		return 0, fmt.Errorf("gateway read: %w", net.ErrClosed)
	case q := <-g.queue:
		defer g.putBuf(q.p)
		frame := (*q.p)[q.off : q.off+q.n]
		out := buf[offset:]
		if len(out) < vswitch.VnetHdrLen+len(frame) {
			return 0, fmt.Errorf("gateway read: %d bytes for a %d-byte frame: %w",
				len(out), vswitch.VnetHdrLen+len(frame), io.ErrShortBuffer)
		}
		if q.vnet {
			copy(out[:vswitch.VnetHdrLen], (*q.p)[q.off-vswitch.VnetHdrLen:q.off])
		} else {
			clear(out[:vswitch.VnetHdrLen])
		}
		n := copy(out[vswitch.VnetHdrLen:], frame)
		return vswitch.VnetHdrLen + n, nil
	}
}

// Write handles the frame buf[offset:] (virtio_net_hdr and Ethernet frame)
// synchronously and queues any reply; it never blocks and does not keep
// buf. Frames the gateway ignores or finds malformed are counted in Stats
// and are not errors. Write returns vswitch.ErrFrameTooBig for a frame
// larger than the MTU allows, and an error wrapping net.ErrClosed after
// Close.
//
// Offloads: without an uplink.GSOSender the gateway accepts none (see Offloads),
// and a frame whose virtio_net_hdr has VIRTIO_NET_HDR_F_NEEDS_CSUM set or
// a gso_type other than VIRTIO_NET_HDR_GSO_NONE is counted (Stats.Offload)
// and dropped. With one, TCP super-frames to the outside are forwarded
// whole and other such frames are completed and segmented first.
//
// Write is safe for concurrent use.
func (g *Gateway) Write(buf []byte, offset int) (int, error) {
	return g.write(buf, offset, nil)
}

// WriteAnswer implements vswitch.Answerer: Write, with the answer of the
// LocalService to a UDP query, when it has one at once, put in
// ans[ansOff:] (a zero virtio_net_hdr and the Ethernet frame, to the MAC
// the query came from) instead of queued for Read.
func (g *Gateway) WriteAnswer(buf []byte, offset int, ans []byte, ansOff int) (int, int, error) {
	if ansOff < 0 || ansOff > len(ans) {
		return 0, 0, fmt.Errorf("gateway write: answer offset %d out of range", ansOff)
	}
	a := answer{buf: ans[ansOff:]}
	n, err := g.write(buf, offset, &a)
	return n, a.n, err
}

// write is Write, with a place for an answer at once when a is not nil.
func (g *Gateway) write(buf []byte, offset int, a *answer) (int, error) {
	if offset < 0 || offset > len(buf) {
		return 0, fmt.Errorf("gateway write: offset %d out of range", offset)
	}
	select {
	case <-g.done:
		return 0, fmt.Errorf("gateway write: %w", net.ErrClosed)
	default:
	}
	frame := buf[offset:]
	n := len(frame)
	if len(frame) < vswitch.VnetHdrLen {
		g.stats.inc(cntMalformed)
		return n, nil
	}
	if h := gso.ParseHdr(frame); h.Flags&gso.FlagNeedsCsum != 0 || h.GSOType != gso.TypeNone {
		g.writeOffloaded(frame)
		return n, nil
	}
	eth := frame[vswitch.VnetHdrLen:]
	// 4 bytes of slack for a VLAN tag, which the gateway does not
	// interpret but must not call too big.
	if len(eth) > wire.EthernetLen+4+g.mtu {
		g.stats.inc(cntTooBig)
		return 0, vswitch.ErrFrameTooBig
	}
	g.handleEthernet(eth, a)
	return n, nil
}

// getBuf returns a reply buffer of length wire.EthernetLen+mtu.
func (g *Gateway) getBuf() *[]byte {
	p := g.pool.Get().(*[]byte)
	*p = (*p)[:cap(*p)]
	return p
}

func (g *Gateway) putBuf(p *[]byte) {
	if cap(*p) >= UplinkHeadroom+maxDatagram+8 {
		bigPool.Put(p) // a super-segment's (offload.go)
		return
	}
	g.pool.Put(p)
}

// answer takes a buffer for a packet from the gateway to dst (at MAC
// ethDst), writes its Ethernet and IPv4 headers for a payload of n bytes of
// proto, and returns the buffer and the payload to fill in. The frame is
// wire.EthernetLen+wire.IPv4MinLen+n bytes long.
func (g *Gateway) answer(ethDst [6]byte, dst [4]byte, tos, proto uint8, n int) (*[]byte, []byte) {
	buf := g.getBuf()
	out := *buf
	wire.PutEthernet(out, ethDst, g.mac, wire.EtherTypeIPv4)
	ip := out[wire.EthernetLen:]
	h := wire.IPv4Header{
		TOS:      tos,
		TotalLen: uint16(wire.IPv4MinLen + n),
		ID:       g.nextID(),
		TTL:      wire.DefaultTTL,
		Protocol: proto,
		Src:      g.addr,
		Dst:      dst,
	}
	h.Put(ip)
	return buf, ip[wire.IPv4MinLen : wire.IPv4MinLen+n]
}

// qframe is a frame waiting for Read: (*p)[off:off+n].
type qframe struct {
	p      *[]byte
	off, n int
	// vnet: the virtio_net_hdr Read gives the frame is the VnetHdrLen
	// bytes before off (a super-segment, FromUplinkGSO), not zero.
	vnet bool
}

// enqueue queues the first n bytes of the reply p for Read and takes
// ownership of p. It reports whether the reply was queued; a full queue
// drops it and counts Stats.QueueDrops.
func (g *Gateway) enqueue(p *[]byte, n int) bool {
	return g.enqueueAt(p, 0, n)
}

// enqueueAt is enqueue for the frame (*p)[off:off+n].
func (g *Gateway) enqueueAt(p *[]byte, off, n int) bool {
	select {
	case g.queue <- qframe{p: p, off: off, n: n}:
		return true
	default:
		g.stats.inc(cntQueueDrops)
		g.putBuf(p)
		return false
	}
}

// nextID returns the IPv4 identification of the next datagram the gateway
// originates.
func (g *Gateway) nextID() uint16 { return uint16(g.ipID.Add(1)) }

// isNeighborAddr reports whether ip can be a neighbour: inside the subnet,
// neither the gateway's own address nor the network or broadcast address.
func (g *Gateway) isNeighborAddr(ip [4]byte) bool {
	a := netip.AddrFrom4(ip)
	return g.prefix.Contains(a) && ip != g.addr && ip != g.bcast && a != g.prefix.Masked().Addr()
}

// broadcastOf returns the directed broadcast address of the IPv4 prefix p.
func broadcastOf(p netip.Prefix) [4]byte {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// isUnicastMAC reports whether mac is neither multicast (broadcast
// included) nor all zeros.
func isUnicastMAC(mac [6]byte) bool {
	return mac[0]&1 == 0 && mac != [6]byte{}
}

// isHostAddr reports whether ip can be the address of a single host: not
// 0.0.0.0/8, loopback, multicast, class E or the limited broadcast (RFC 1812
// 4.3.2.7 and 5.3.7).
func isHostAddr(ip [4]byte) bool {
	switch {
	case ip[0] == 0, ip[0] == 127, ip[0] >= 224:
		return false
	}
	return true
}

// Queued returns the number of replies waiting for Read.
func (g *Gateway) Queued() int { return len(g.queue) }
