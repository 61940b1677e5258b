package gateway

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/wire"
)

// Bounds of the queue of datagrams waiting for a container's MAC (the
// kernel's unres_qlen is 101 packets per neighbour).
const (
	pendingPerHost = 32
	pendingTotal   = 256
	// pendingTimeout is how long datagrams wait for an ARP reply.
	pendingTimeout = 3 * time.Second
)

// pendingQueue holds datagrams for containers whose MAC is being resolved.
type pendingQueue struct {
	n atomic.Int32 // datagrams held, read without the lock by learn

	mu    sync.Mutex // guards hosts
	hosts map[[4]byte]*pendingHost
}

type pendingHost struct {
	frames  []qframe
	since   time.Time // first request
	lastReq time.Time
}

// addResult says what add did besides queueing.
type addResult struct {
	request bool     // send an ARP request now
	expired []qframe // frames that waited too long, to release
}

func newPendingQueue() *pendingQueue {
	return &pendingQueue{hosts: map[[4]byte]*pendingHost{}}
}

// add queues q for ip. It reports false when the queue is full (q is then
// still the caller's). At most one ARP request a second is asked for.
func (p *pendingQueue) add(ip [4]byte, q qframe, now time.Time) (addResult, bool) {
	var r addResult
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hosts[ip]
	if h != nil && now.Sub(h.since) >= pendingTimeout {
		// Unanswered for too long: give up on what waited, start over.
		r.expired = h.frames
		p.n.Add(-int32(len(h.frames)))
		h = nil
	}
	if h == nil {
		h = &pendingHost{since: now}
		p.hosts[ip] = h
	}
	if now.Sub(h.lastReq) >= time.Second {
		h.lastReq = now
		r.request = true
	}
	if int(p.n.Load()) >= pendingTotal {
		// Full: give up on every host unanswered for too long.
		for ip2, h2 := range p.hosts {
			if h2 != h && now.Sub(h2.since) >= pendingTimeout {
				r.expired = append(r.expired, h2.frames...)
				p.n.Add(-int32(len(h2.frames)))
				delete(p.hosts, ip2)
			}
		}
	}
	if len(h.frames) >= pendingPerHost || int(p.n.Load()) >= pendingTotal {
		return r, false
	}
	h.frames = append(h.frames, q)
	p.n.Add(1)
	return r, true
}

// take removes and returns the frames waiting for ip.
func (p *pendingQueue) take(ip [4]byte) []qframe {
	if p.n.Load() == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hosts[ip]
	if h == nil {
		return nil
	}
	delete(p.hosts, ip)
	p.n.Add(-int32(len(h.frames)))
	return h.frames
}

// release sends the frames that waited for ip, now known at mac.
func (g *Gateway) release(ip [4]byte, mac [6]byte) {
	for _, q := range g.pending.take(ip) {
		g.sendTo(q.p, q.n, mac)
	}
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
	wire.PutEthernet(out, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, g.mac, wire.EtherTypeARP)
	n := wire.EthernetLen + copy(out[wire.EthernetLen:], body)
	if g.enqueue(buf, n) {
		g.stats.inc(cntARPRequestsSent)
	}
}
