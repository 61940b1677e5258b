package tap

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/internal/neigh"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	tapdev "github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/wire"
)

// Headroom is the space Send needs in front of a packet: a virtio_net_hdr
// and an Ethernet header.
const Headroom = vswitch.VnetHdrLen + wire.EthernetLen

// Limits of the resolution queue and the neighbour cache.
const (
	// PendingPerHop is how many packets wait for one next hop's MAC.
	PendingPerHop = 32
	// PendingTotal is how many packets wait in all.
	PendingTotal = 256
	// ResolveTimeout is how long packets wait for an ARP reply before
	// they are dropped (the kernel retries 3 times a second apart).
	ResolveTimeout = 3 * time.Second
	// NeighTimeout is how long a neighbour stays usable after it was
	// last heard from; past half of it, using it sends a unicast ARP
	// request to refresh it (the kernel's STALE -> PROBE).
	NeighTimeout = 60 * time.Second
	// maxNeighbors bounds the cache; a full cache forgets its expired
	// entries, then its oldest.
	maxNeighbors = 1024
	// clockTick is how often the uplink's own clock is refreshed: Send
	// reads it instead of the system clock.
	clockTick = 100 * time.Millisecond
)

// ErrNoRoute is returned by Send for a destination off the link when the
// uplink has no gateway.
var ErrNoRoute = errors.New("no route to host")

// ErrQueueFull is returned by Send when the packet could not wait for its
// next hop's MAC: the resolution queue is full.
var ErrQueueFull = errors.New("resolution queue full")

// device is the part of tap.Device the uplink uses; tests replace it.
type device interface {
	Read(buf []byte, offset int) (int, error)
	Write(buf []byte, offset int) (int, error)
	Close() error
}

// TAP is a routed uplink through a TAP device. Send is safe for concurrent
// use; Start is called once.
type TAP struct {
	// Capture is the uplink's capture point (`tapswitch capture
	// uplink`): frames as they leave and arrive, after NAT, as tcpdump
	// sees them behind MASQUERADE.
	Capture capture.Point

	cfg    Config
	dev    device
	mac    [6]byte
	addr   [4]byte
	prefix netip.Prefix
	gw     [4]byte
	hasGW  bool
	clock  func() int64 // the test's, or coarse.Load
	// coarse is the process's monotonic clock refreshed every clockTick
	// by expireLoop (when no clock is given).
	coarse atomic.Int64
	tick   func() int64 // the precise clock behind coarse; nil with a test clock

	// gsoHandle takes TCP super-frames read from the TAP whole
	// (SetGSOHandler); nil: they are segmented. parts is its argument,
	// owned by the reading goroutine.
	gsoHandle func(parts [][]byte, mss int)
	parts     [1][]byte
	// seg is the reading goroutine's buffer for segmenting super-frames
	// when gsoHandle is nil; allocated on the first one.
	seg []byte

	// neigh holds next hops' MACs and the packets (each Headroom bytes
	// of room and a copy of the packet) waiting for one.
	neigh *neigh.Cache[[4]byte, []byte]

	// v6 is the uplink's IPv6 side (nd.go); nil without Config.Addr6.
	v6 *ipv6

	stats counters

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Open creates the uplink's TAP in cfg.Netns (its namespace side named
// cfg.IfName, up, without an address) and returns the uplink, not yet
// reading: call Start. cfg is validated first.
func Open(cfg Config) (*TAP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The namespace side of the link has a MAC of its own, different from
	// the switch's: they are the two ends of a cable.
	var devMAC [6]byte
	if _, err := rand.Read(devMAC[:]); err != nil {
		return nil, err
	}
	devMAC[0] = devMAC[0]&^1 | 2
	// Offloads on, cut to what NAT takes whole (offloads, offload.go).
	dev, err := tapdev.Create(tapdev.Config{Netns: cfg.Netns, Name: cfg.IfName, MAC: net.HardwareAddr(devMAC[:]), MTU: cfg.MTU, Offloads: offloadsFor(&cfg)})
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	return newTAP(cfg, dev, nil), nil
}

// neighConfig bounds the neighbour caches (ARP and ND).
var neighConfig = neigh.Config{
	Timeout: NeighTimeout, Limit: maxNeighbors,
	PendingPerHost: PendingPerHop, PendingTotal: PendingTotal, ResolveTimeout: ResolveTimeout,
}

// newTAP returns an uplink on dev; cfg is valid. clock nil means a
// monotonic clock of the process.
func newTAP(cfg Config, dev device, clock func() int64) *TAP {
	u := &TAP{
		cfg:    cfg,
		dev:    dev,
		mac:    [6]byte(cfg.MAC),
		addr:   cfg.Addr.Addr().As4(),
		prefix: cfg.Addr.Masked(),
		clock:  clock,
		neigh:  neigh.New[[4]byte, []byte](neighConfig),
		done:   make(chan struct{}),
	}
	u.v6 = newIPv6(&cfg)
	if clock == nil {
		epoch := time.Now()
		u.tick = func() int64 { return int64(time.Since(epoch)) }
		u.coarse.Store(u.tick())
		u.clock = u.coarse.Load
	}
	if cfg.Gateway.IsValid() {
		u.gw, u.hasGW = cfg.Gateway.As4(), true
	}
	return u
}

// Config returns the uplink's configuration, defaults filled in.
func (u *TAP) Config() Config { return u.cfg }

// Addr returns the switch's address on the link.
func (u *TAP) Addr() netip.Addr { return u.cfg.Addr.Addr() }

// MTU returns the link's MTU.
func (u *TAP) MTU() int { return u.cfg.MTU }

// Start starts reading the TAP. handle is called, on the reading goroutine,
// with each IPv4 datagram addressed to the uplink (Ethernet padding
// removed); it may modify the packet in place but must not keep it after it
// returns. gone, if not nil, is called once if the TAP fails (its namespace
// was deleted); it is not called after Close.
func (u *TAP) Start(handle func(pkt []byte), gone func(error)) {
	u.wg.Add(2)
	go u.readLoop(handle, gone)
	go u.expireLoop()
}

// Close closes the TAP (the kernel deletes it from its namespace) and waits
// for the reading goroutine to return.
func (u *TAP) Close() error {
	var err error
	u.closeOnce.Do(func() {
		close(u.done)
		err = u.dev.Close()
		u.wg.Wait()
	})
	return err
}

func (u *TAP) readLoop(handle func(pkt []byte), gone func(error)) {
	defer u.wg.Done()
	buf := make([]byte, vswitch.BufSize)
	for {
		n, err := u.dev.Read(buf, 0)
		if err != nil {
			select {
			case <-u.done:
			default:
				if gone != nil {
					gone(err)
				}
			}
			return
		}
		u.stats.rxFrames.Add(1)
		u.input(buf[:n], handle)
	}
}

// expireLoop refreshes the coarse clock every clockTick and, every
// second, drops packets that waited too long for a next hop.
func (u *TAP) expireLoop() {
	defer u.wg.Done()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	const every = int(neigh.RequestInterval / clockTick)
	for i := 1; ; i++ {
		select {
		case <-u.done:
			return
		case <-t.C:
			if u.tick != nil {
				u.coarse.Store(u.tick())
			}
			if i%every == 0 {
				u.expire(u.clock())
			}
		}
	}
}

// input handles one frame read from the TAP: virtio_net_hdr and Ethernet.
func (u *TAP) input(frame []byte, handle func(pkt []byte)) {
	if len(frame) < vswitch.VnetHdrLen+wire.EthernetLen {
		u.stats.rxIgnored.Add(1)
		return
	}
	if !gso.IsPlain(frame) {
		u.inputOffloaded(frame, handle)
		return
	}
	eth := wire.Ethernet(frame[vswitch.VnetHdrLen:])
	u.Capture.Deliver(capture.In, eth)
	switch eth.Type() {
	case wire.EtherTypeARP:
		u.handleARP(eth[wire.EthernetLen:])
	case wire.EtherTypeIPv4:
		p, ok := u.forUs(frame)
		if !ok {
			u.stats.rxIgnored.Add(1)
			return
		}
		u.stats.rxPackets.Add(1)
		u.stats.rxBytes.Add(uint64(len(p)))
		handle(p)
	case wire.EtherTypeIPv6:
		u.input6(eth, handle) // nd.go
	default:
		u.stats.rxIgnored.Add(1)
	}
}

// handleARP answers requests for the uplink's address and learns senders
// on the link.
func (u *TAP) handleARP(b []byte) {
	var p arp.Packet
	if err := p.UnmarshalBinary(b); err != nil || p.HardwareType != 1 || p.ProtocolType != wire.EtherTypeIPv4 ||
		p.HardwareAddrLength != 6 || p.IPLength != 4 || !p.SenderIP.Is4() || !p.TargetIP.Is4() {
		u.stats.rxIgnored.Add(1)
		return
	}
	u.stats.arpIn.Add(1)
	sha := [6]byte(p.SenderHardwareAddr)
	spa := p.SenderIP.As4()
	if sha[0]&1 == 0 && sha != [6]byte{} && sha != u.mac && spa != u.addr && u.prefix.Contains(p.SenderIP) {
		// RFC 826: update the sender if known; add it if the request
		// is for us, or if a packet waits for it.
		u.learn(spa, sha, p.Operation == arp.OperationRequest && p.TargetIP.As4() == u.addr)
	}
	if p.Operation == arp.OperationRequest && p.TargetIP.As4() == u.addr {
		reply := arp.Packet{
			HardwareType: 1, ProtocolType: wire.EtherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
			Operation:          arp.OperationReply,
			SenderHardwareAddr: net.HardwareAddr(u.mac[:]),
			SenderIP:           netip.AddrFrom4(u.addr),
			TargetHardwareAddr: p.SenderHardwareAddr,
			TargetIP:           p.SenderIP,
		}
		u.sendARP(reply, sha)
	}
}

// sendARP writes an ARP packet to dst.
func (u *TAP) sendARP(p arp.Packet, dst [6]byte) {
	body, err := p.MarshalBinary()
	if err != nil {
		return
	}
	frame := make([]byte, Headroom+len(body))
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], dst, u.mac, wire.EtherTypeARP)
	copy(frame[Headroom:], body)
	if u.write(frame) {
		u.stats.arpOut.Add(1)
	}
}

// request sends an ARP request for ip, broadcast, or unicast to dst when
// refreshing a known neighbour.
func (u *TAP) request(ip [4]byte, dst [6]byte) {
	u.sendARP(arp.Packet{
		HardwareType: 1, ProtocolType: wire.EtherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
		Operation:          arp.OperationRequest,
		SenderHardwareAddr: net.HardwareAddr(u.mac[:]),
		SenderIP:           netip.AddrFrom4(u.addr),
		TargetHardwareAddr: net.HardwareAddr(make([]byte, 6)),
		TargetIP:           netip.AddrFrom4(ip),
	}, dst)
}

// Send sends the IPv4 (or, with Config.Addr6, IPv6) packet buf[off:] to
// its next hop on the link. The
// Headroom bytes before off are overwritten with the virtio_net_hdr and the
// Ethernet header. Send does not keep buf; when the next hop is not
// resolved yet it queues a copy and sends an ARP request. Send is safe for
// concurrent use and, for a resolved next hop, allocates nothing.
func (u *TAP) Send(buf []byte, off int) error {
	pkt := buf[off:]
	if off < Headroom || len(pkt) < 20 {
		return fmt.Errorf("uplink send: %d bytes at offset %d: bad packet or headroom", len(pkt), off)
	}
	if len(pkt) > u.cfg.MTU {
		u.stats.txErrors.Add(1)
		return fmt.Errorf("uplink send: %d bytes: %w", len(pkt), vswitch.ErrFrameTooBig)
	}
	clear(buf[off-Headroom : off-Headroom+vswitch.VnetHdrLen])
	return u.send(buf, off)
}

// send sends buf[off:] as Send does, behind the virtio_net_hdr the caller
// wrote at buf[off-Headroom:].
func (u *TAP) send(buf []byte, off int) error {
	pkt := buf[off:]
	if wire.IPVersion(pkt) == 6 {
		return u.send6(buf, off) // nd.go
	}
	dst := wire.IPv4(pkt).Dst()
	hop := dst
	if !u.prefix.Contains(netip.AddrFrom4(dst)) {
		if !u.hasGW {
			u.stats.noRoute.Add(1)
			return ErrNoRoute
		}
		hop = u.gw
	}
	return resolveAndSend(u, u.neigh, hop, buf[off-Headroom:], askARP)
}

// resolveAndSend sends frame (the packet at Headroom, behind its
// virtio_net_hdr) to hop's MAC from the cache c, or queues it until hop
// is resolved. ask sends a request for hop: unicast to mac when known (a
// refresh: the entry is still good, but past half its timeout), else to
// every host (at most once a second). It allocates nothing for a resolved
// hop.
func resolveAndSend[K comparable](u *TAP, c *neigh.Cache[K, []byte], hop K, frame []byte, ask func(u *TAP, hop K, mac [6]byte, known bool)) error {
	now := u.clock()
	switch mac, st := c.Lookup(hop, now); st {
	case neigh.Refresh:
		ask(u, hop, mac, true)
		fallthrough
	case neigh.Reachable:
		return u.transmit(frame, Headroom, mac)
	}
	return queueFor(u, c, hop, frame, now, ask)
}

// askARP is resolveAndSend's ask for IPv4: an ARP request, broadcast
// unless the MAC is known.
func askARP(u *TAP, hop [4]byte, mac [6]byte, known bool) {
	if !known {
		mac = wire.BroadcastMAC
	}
	u.request(hop, mac)
}

// transmit writes frame[off:] behind the virtio_net_hdr at
// frame[off-Headroom:] and an Ethernet header to dst, written after it.
func (u *TAP) transmit(frame []byte, off int, dst [6]byte) error {
	h := frame[off-Headroom : off]
	typ := uint16(wire.EtherTypeIPv4)
	if wire.IPVersion(frame[off:]) == 6 {
		typ = wire.EtherTypeIPv6
	}
	wire.PutEthernet(h[vswitch.VnetHdrLen:], dst, u.mac, typ)
	u.Capture.Deliver(capture.Out, frame[off-Headroom+vswitch.VnetHdrLen:])
	if _, err := u.dev.Write(frame, off-Headroom); err != nil {
		u.stats.txErrors.Add(1)
		return err
	}
	u.stats.txPackets.Add(1)
	u.stats.txBytes.Add(uint64(len(frame) - off))
	return nil
}

// queueFor holds a copy of frame (the packet at Headroom, behind its
// virtio_net_hdr) in cache c until hop is resolved, and asks for hop's MAC
// with ask (at most once a second).
func queueFor[K comparable](u *TAP, c *neigh.Cache[K, []byte], hop K, frame []byte, now int64, ask func(u *TAP, hop K, mac [6]byte, known bool)) error {
	p := make([]byte, len(frame))
	copy(p[:vswitch.VnetHdrLen], frame)
	copy(p[Headroom:], frame[Headroom:])
	r := c.Queue(hop, p, now)
	u.stats.pendingExpired.Add(uint64(len(r.Expired)))
	if r.Request {
		defer ask(u, hop, [6]byte{}, false)
	}
	if !r.OK {
		u.stats.pendingDropped.Add(1)
		return ErrQueueFull
	}
	u.stats.pendingQueued.Add(1)
	return nil
}

// learn records ip at mac. A new neighbour is added only if add is true or
// packets wait for it; those packets are then sent.
func (u *TAP) learn(ip [4]byte, mac [6]byte, add bool) {
	for _, p := range u.neigh.Learn(ip, mac, u.clock(), add).Waiting {
		u.transmit(p, Headroom, mac)
	}
}

// expire drops the packets of next hops unresolved for ResolveTimeout,
// asks again for the others, and forgets neighbours not heard from for
// NeighTimeout.
func (u *TAP) expire(now int64) {
	r := u.neigh.Expire(now)
	u.stats.pendingExpired.Add(uint64(len(r.Items)))
	for _, ip := range r.Retry {
		u.request(ip, wire.BroadcastMAC)
	}
	if u.v6 != nil {
		r6 := u.v6.neigh.Expire(now)
		u.stats.pendingExpired.Add(uint64(len(r6.Items)))
		for _, ip := range r6.Retry {
			askND(u, ip, [6]byte{}, false)
		}
	}
}

// Neighbor is one entry of the uplink's ARP or ND cache.
type Neighbor = neigh.Neighbor

// Neighbors returns the ARP cache, then the ND cache, each sorted by
// address.
func (u *TAP) Neighbors() []Neighbor {
	n := u.neigh.Neighbors(u.clock(), netip.AddrFrom4)
	if u.v6 != nil {
		n = append(n, u.v6.neigh.Neighbors(u.clock(), netip.AddrFrom16)...)
	}
	return n
}

// counters are the uplink's atomic counters.
type counters struct {
	rxFrames, rxPackets, rxBytes, rxIgnored       atomic.Uint64
	txPackets, txBytes, txErrors, noRoute         atomic.Uint64
	arpIn, arpOut, ndIn, ndOut, echo6             atomic.Uint64
	pendingQueued, pendingDropped, pendingExpired atomic.Uint64
	rxGSO, rxSegmented, rxCsum, txGSO             atomic.Uint64
}

// Stats are the uplink's counters.
type Stats struct {
	RxFrames  uint64 `json:"rx_frames"`  // frames read from the TAP
	RxPackets uint64 `json:"rx_packets"` // IPv4 datagrams and IPv6 packets to the uplink's address, handed on
	RxBytes   uint64 `json:"rx_bytes"`
	RxIgnored uint64 `json:"rx_ignored"` // frames neither ARP nor IPv4 for us, or malformed
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxErrors  uint64 `json:"tx_errors"` // writes that failed, packets over the MTU
	NoRoute   uint64 `json:"no_route"`  // off-link destinations without a gateway
	ARPIn     uint64 `json:"arp_in"`
	ARPOut    uint64 `json:"arp_out"`
	// NDIn counts neighbor solicitations and advertisements read from
	// the link (IPv6), NDOut those sent; Echo6 the ICMPv6 echo requests
	// to the uplink's IPv6 addresses answered.
	NDIn  uint64 `json:"nd_in"`
	NDOut uint64 `json:"nd_out"`
	Echo6 uint64 `json:"echo6"`
	// PendingQueued counts packets that waited for ARP; PendingDropped
	// those refused by a full queue; PendingExpired those dropped after
	// ResolveTimeout without a reply.
	PendingQueued  uint64 `json:"pending_queued"`
	PendingDropped uint64 `json:"pending_dropped"`
	PendingExpired uint64 `json:"pending_expired"`
	// RxGSO counts TCP super-frames read from the TAP and handed to the
	// GSO handler whole; RxSegmented those segmented in software for
	// want of one; RxCsum frames whose partial checksum was completed.
	RxGSO       uint64 `json:"rx_gso"`
	RxSegmented uint64 `json:"rx_segmented"`
	RxCsum      uint64 `json:"rx_csum"`
	// TxGSO counts TCP super-frames written whole (SendGSO).
	TxGSO uint64 `json:"tx_gso"`
}

// Stats returns a snapshot of the counters.
func (u *TAP) Stats() Stats {
	c := &u.stats
	return Stats{
		RxFrames: c.rxFrames.Load(), RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(), RxIgnored: c.rxIgnored.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(), TxErrors: c.txErrors.Load(), NoRoute: c.noRoute.Load(),
		ARPIn: c.arpIn.Load(), ARPOut: c.arpOut.Load(), NDIn: c.ndIn.Load(), NDOut: c.ndOut.Load(), Echo6: c.echo6.Load(),
		PendingQueued: c.pendingQueued.Load(), PendingDropped: c.pendingDropped.Load(), PendingExpired: c.pendingExpired.Load(),
		RxGSO: c.rxGSO.Load(), RxSegmented: c.rxSegmented.Load(), RxCsum: c.rxCsum.Load(), TxGSO: c.txGSO.Load(),
	}
}
