package gateway

import (
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/internal/neigh"
	"github.com/tapswitch/tapswitch/wire"
)

// Bounds of the neighbour cache's queue of datagrams waiting for a
// container's MAC: neigh's defaults (32 per container, 256 in all, 3 s).

// Neighbor is one entry of the gateway's neighbour table: an IPv4 address
// in the subnet, the MAC it was last heard from, and the time since (an
// ARP packet or an IPv4 datagram it sent to the gateway).
type Neighbor = neigh.Neighbor

// neighCache is the gateway's neighbour cache: containers' MACs, and the
// forwarded datagrams waiting for one.
type neighCache = neigh.Cache[[4]byte, qframe]

func newNeighCache(timeout time.Duration, limit int) *neighCache {
	return neigh.New[[4]byte, qframe](neigh.Config{Timeout: timeout, Limit: limit})
}

// neighClock returns the clock of neighbour ages, in nanoseconds:
// Config.Now when set (tests fake time there), else Config.Clock (the
// switch's coarse clock, in the daemon), else the process's monotonic
// clock.
func neighClock(cfg *Config) func() int64 {
	switch {
	case cfg.Now != nil:
		now := cfg.Now
		return func() int64 { return now().UnixNano() }
	case cfg.Clock != nil:
		return cfg.Clock
	}
	epoch := time.Now()
	return func() int64 { return int64(time.Since(epoch)) }
}

// Neighbors returns the unexpired entries of the neighbour table, sorted by
// IP address. The result is the caller's.
func (g *Gateway) Neighbors() []Neighbor { return g.neigh.Neighbors(g.clock(), netip.AddrFrom4) }

// Lookup returns the MAC of the neighbour ip if it is known and has not
// expired.
func (g *Gateway) Lookup(ip netip.Addr) (net.HardwareAddr, bool) {
	if !ip.Is4() {
		return nil, false
	}
	mac, st := g.neigh.Lookup(ip.As4(), g.clock())
	if st == neigh.Missing {
		return nil, false
	}
	return net.HardwareAddr(mac[:]), true
}

// Forget removes the neighbour ip, if present, and drops the datagrams
// waiting for it. The daemon calls it when a container is detached.
func (g *Gateway) Forget(ip netip.Addr) {
	g.forget6(ip)
	if ip.Is4() {
		for _, q := range g.neigh.Forget(ip.As4()) {
			g.stats.inc(cntPendingExpired)
			g.putBuf(q.p)
		}
	}
}

// learn records ip at mac if ip is a host address of the subnet other than
// the gateway's own, and sends what waited for it.
func (g *Gateway) learn(ip [4]byte, mac [6]byte) {
	if !g.isNeighborAddr(ip) || !isUnicastMAC(mac) {
		return
	}
	for _, q := range g.learned(g.neigh.Learn(ip, mac, g.clock(), true)) {
		g.sendTo(q.p, q.n, mac)
	}
}

// learned counts what a Learn did (r) and returns what waited for the
// neighbour, to send.
func (g *Gateway) learned(r neigh.Learned[qframe]) []qframe {
	if r.Added {
		g.stats.inc(cntNeighLearned)
	}
	if r.Evicted {
		g.stats.inc(cntNeighEvicted)
	}
	return r.Waiting
}

// resolve returns the MAC of the container dst, or queues q (which it
// then owns) to wait for it and asks for it with ARP; ok is false then.
func (g *Gateway) resolve(dst [4]byte, q qframe) (mac [6]byte, ok bool) {
	now := g.clock()
	if mac, st := g.neigh.Lookup(dst, now); st != neigh.Missing {
		return mac, true
	}
	if g.queued(g.neigh.Queue(dst, q, now), q) {
		g.sendARPRequest(dst)
	}
	return mac, false
}

// queued counts what queueing q for resolution did (r), releases what it
// refused or expired, and reports whether to send a request now.
func (g *Gateway) queued(r neigh.Queued[qframe], q qframe) bool {
	if r.OK {
		g.stats.inc(cntPendingQueued)
	} else {
		g.stats.inc(cntPendingDropped)
		g.putBuf(q.p)
	}
	for _, e := range r.Expired {
		g.stats.inc(cntPendingExpired)
		g.putBuf(e.p)
	}
	return r.Request
}

// sendARPRequest broadcasts a request for ip's MAC (RFC 826).
func (g *Gateway) sendARPRequest(ip [4]byte) {
	req := arp.Packet{
		HardwareType:       1,
		ProtocolType:       wire.EtherTypeIPv4,
		HardwareAddrLength: 6,
		IPLength:           4,
		Operation:          arp.OperationRequest,
		SenderHardwareAddr: net.HardwareAddr(g.mac[:]),
		SenderIP:           netip.AddrFrom4(g.addr),
		TargetHardwareAddr: net.HardwareAddr(make([]byte, 6)),
		TargetIP:           netip.AddrFrom4(ip),
	}
	body, _ := req.MarshalBinary() // never fails
	buf := g.getBuf()
	out := *buf
	wire.PutEthernet(out, wire.BroadcastMAC, g.mac, wire.EtherTypeARP)
	n := wire.EthernetLen + copy(out[wire.EthernetLen:], body)
	if g.enqueue(buf, n) {
		g.stats.inc(cntARPRequestsSent)
	}
}
