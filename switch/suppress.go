package vswitch

import (
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// NeighSuppressor is implemented by a port that keeps address resolution
// off itself, as a Linux bridge port with neigh_suppress on
// (net/bridge/br_arp_nd_proxy.c): a VXLAN tunnel, where every broadcast
// is one datagram per remote VTEP. For a broadcast ARP request, or a
// Neighbor Solicitation to a solicited-node group, that another port of
// the VLAN sends for an address the switch knows the MAC of, the switch
// answers itself (an ARP reply, a solicited NA with the override flag)
// and floods the request nowhere. The switch knows the addresses of its
// own ports with a MAC (PortConfig.MAC and IPs) and what the suppressing
// ports learned (LearnNeigh) from the ARP and ND messages that came in
// on them; a request for the gateway's address goes to the gateway only.
// Duplicate address detection probes (an ARP probe from 0.0.0.0, an NS
// from ::), gratuitous ARP, unicast requests (a neighbour cache's
// refresh) and requests for unknown addresses are forwarded as before.
//
// The methods are called on the datapath, by several ingress goroutines
// at once: they must be safe for concurrent use and allocate nothing.
type NeighSuppressor interface {
	// SuppressNeigh reports whether suppression is on for the port. It
	// is read once, when the port is added: a port that returns false
	// is an ordinary port.
	SuppressNeigh() bool
	// LookupNeigh returns the MAC that ip (an IPv6 address, or an IPv4
	// address as IPv4-mapped IPv6) is at behind the port, if the port
	// knows it at now (a clock in nanoseconds, the switch's).
	LookupNeigh(ip [16]byte, now int64) (fdb.MAC, bool)
	// LearnNeigh records that ip is at mac behind the port, from the
	// sender of an ARP packet or the target of an NA (the source of an
	// NS) that came in on the port. The switch never passes an address
	// of one of its own ports, nor a multicast or zero MAC.
	LearnNeigh(ip [16]byte, mac fdb.MAC, now int64)
	// Suppressed counts a request answered for the port: an NS if nd,
	// else an ARP request.
	Suppressed(nd bool)
}

// suppressorOf returns p as a NeighSuppressor if it is one with
// suppression on, or nil.
func suppressorOf(p Port) NeighSuppressor {
	if s, ok := p.(NeighSuppressor); ok && s.SuppressNeigh() {
		return s
	}
	return nil
}

// neighKey is an address of a VLAN: IPv4 as IPv4-mapped IPv6.
type neighKey struct {
	vlan uint16
	ip   [16]byte
}

// localNeigh is an address of a port of the switch.
type localNeigh struct {
	mac fdb.MAC
	id  fdb.PortID
	gw  bool
}

// mapped4 returns ip as an IPv4-mapped IPv6 address.
func mapped4(ip [4]byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: ip[0], 13: ip[1], 14: ip[2], 15: ip[3]}
}

// addLocalNeigh records the addresses of pt in t's table of local
// addresses (PortConfig.IPs, in the port's untagged VLAN).
func (t *portTable) addLocalNeigh(pt *port) {
	if pt.cfg.MAC.IsZero() || len(pt.cfg.IPs) == 0 {
		return
	}
	if t.local == nil {
		t.local = map[neighKey]localNeigh{}
	}
	ln := localNeigh{mac: pt.cfg.MAC, id: pt.id, gw: pt.cfg.Gateway}
	for _, ip := range pt.ip4 {
		t.local[neighKey{pt.cfg.VLAN, mapped4(ip)}] = ln
	}
	for _, ip := range pt.ip6 {
		t.local[neighKey{pt.cfg.VLAN, ip}] = ln
	}
}

// addSuppressor records pt, a port with suppression on, in the VLANs it
// carries.
func (t *portTable) addSuppressor(pt *port) {
	add := func(vlan uint16) {
		if int(vlan) >= len(t.suppress) {
			t.suppress = append(t.suppress, make([][]NeighSuppressor, int(vlan)+1-len(t.suppress))...)
		}
		t.suppress[vlan] = append(t.suppress[vlan], pt.suppressor)
	}
	add(pt.cfg.VLAN)
	for _, v := range pt.cfg.Trunk {
		add(v)
	}
}

// suppressNeigh answers the frame f, from a port without suppression, if
// it is a request the switch may answer (see NeighSuppressor), or sends
// it to the gateway alone if it asks for the gateway's address. It
// reports whether it did either: the frame then goes nowhere else.
func suppressNeigh(f *Frame) bool {
	var sup []NeighSuppressor
	if int(f.VLAN) < len(f.t.suppress) {
		sup = f.t.suppress[f.VLAN]
	}
	if len(sup) == 0 || f.in.suppressor != nil || f.t.isolate {
		return false
	}
	switch {
	case f.ARP:
		return suppressARP(f, sup)
	case f.EtherType == wire.EtherTypeIPv6 && f.Dst[0] == 0x33 && f.Dst[1] == 0x33 && f.Dst[2] == 0xff:
		return suppressNS(f, sup)
	}
	return false
}

// suppressARP is suppressNeigh for an ARP packet.
func suppressARP(f *Frame, sup []NeighSuppressor) bool {
	sip, tip := f.ARPSenderIP, f.ARPTargetIP
	if f.ARPOp != wire.ARPRequest || !f.Dst.IsBroadcast() || sip == [4]byte{} || sip == tip ||
		tip[0] == 127 || tip[0] >= 224 || tip == [4]byte{} {
		// A probe (RFC 5227), a gratuitous ARP, a unicast refresh:
		// only the owner answers, or no one should.
		return false
	}
	mac, r := resolveNeigh(f, sup, mapped4(tip), false)
	if r != resolvedMAC {
		return r == resolvedGateway
	}
	n := wire.PutARPReply(f.Data[VnetHdrLen:], mac, tip, f.ARPSenderMAC, sip)
	f.answerIn(n)
	return true
}

// suppressNS is suppressNeigh for an IPv6 frame to a solicited-node
// group's MAC.
func suppressNS(f *Frame, sup []NeighSuppressor) bool {
	ip, err := wire.ParseIPv6(f.Data[f.L3:])
	if err != nil {
		return false
	}
	s, err := wire.NeighborSolicitation(ip)
	if err != nil || s.DAD() || s.Dst != wire.SolicitedNode(s.Target) {
		return false
	}
	if f.off+VnetHdrLen+wire.NAFrameLen > cap(f.buf) {
		return false
	}
	mac, r := resolveNeigh(f, sup, s.Target, true)
	if r != resolvedMAC {
		return r == resolvedGateway
	}
	reqMAC := [6]byte(f.Src)
	if s.HasSourceLL {
		reqMAC = s.SourceLL
	}
	// The NA may be longer than the NS (one without an option): it is
	// written up to the buffer's capacity, checked above.
	n := wire.PutNAFrame(f.buf[f.off+VnetHdrLen:cap(f.buf)], reqMAC, mac, s.Target, s.Src, s.Target, wire.NAFlagSolicited|wire.NAFlagOverride)
	f.answerIn(n)
	return true
}

// resolution is what resolveNeigh found.
type resolution uint8

const (
	unresolved      resolution = iota // unknown, or f's own port's: forward f as before
	resolvedMAC                       // answer with the MAC
	resolvedGateway                   // the gateway's: f goes to the gateway alone (its outputs are set)
)

// resolveNeigh finds the MAC of ip in f's VLAN: a port's of the switch,
// or one a suppressing port learned. The gateway answers for its own
// address: f is sent to it alone, as the Linux bridge keeps a request for
// its own address from its suppressing ports. An answer is counted on
// the suppressing ports (the ports the request would have been flooded
// to without suppression).
func resolveNeigh(f *Frame, sup []NeighSuppressor, ip [16]byte, nd bool) (fdb.MAC, resolution) {
	mac, found := fdb.MAC{}, false
	if ln, ok := f.t.local[neighKey{f.VLAN, ip}]; ok {
		if ln.id == f.in.id {
			return mac, unresolved
		}
		if ln.gw {
			i, ok := f.t.pos[ln.id]
			if !ok {
				return mac, unresolved
			}
			f.out.add(i)
			return mac, resolvedGateway
		}
		mac, found = ln.mac, true
	} else {
		for _, s := range sup {
			if mac, found = s.LookupNeigh(ip, f.now); found {
				break
			}
		}
	}
	if !found || mac == f.Src {
		return mac, unresolved
	}
	for _, s := range sup {
		s.Suppressed(nd)
	}
	return mac, resolvedMAC
}

// answerIn writes the answer the suppression put in place of the frame
// (an Ethernet frame of n bytes after the virtio_net_hdr, within the
// buffer's capacity) back to the port the frame came in on, tagged as
// that port carries the VLAN. The answer is complete: no offload is asked
// of the port.
func (f *Frame) answerIn(n int) {
	clear(f.Data[:VnetHdrLen])
	f.buf = f.buf[:f.off+VnetHdrLen+n]
	f.Data = f.buf[f.off:]
	f.need = 0
	f.sw.egress(f, f.in)
}

// learnNeigh gives the suppressing port a frame came in on the binding
// the frame announces: an ARP packet's sender, an NA's target, an NS's
// source (with its link-layer address option). The binding is taken only
// when its MAC is the frame's Ethernet source, and never for an address
// of a port of the switch (a remote may not claim a local address, nor
// the gateway's).
func learnNeigh(f *Frame) {
	var ip [16]byte
	mac := f.Src
	switch {
	case f.ARP:
		if f.ARPSenderIP == [4]byte{} || f.ARPSenderMAC != mac {
			return
		}
		ip = mapped4(f.ARPSenderIP)
	case f.EtherType == wire.EtherTypeIPv6:
		pkt, err := wire.ParseIPv6(f.Data[f.L3:])
		if err != nil || pkt.NextHeader() != wire.ProtoICMPv6 {
			return
		}
		nd, err := wire.ParseNDPacket(pkt)
		if err != nil {
			return
		}
		switch {
		case nd.Type == wire.ICMPv6NeighborAdvertisement && (!nd.HasTargetLL || nd.TargetLL == mac):
			ip = nd.Target
		case nd.Type == wire.ICMPv6NeighborSolicitation && nd.HasSourceLL && nd.SourceLL == mac:
			ip = pkt.Src()
		default:
			return
		}
		if ip[0] == 0xff || ip == [16]byte{} {
			return
		}
	default:
		return
	}
	if _, ok := f.t.local[neighKey{f.VLAN, ip}]; ok {
		return
	}
	f.in.suppressor.LearnNeigh(ip, mac, f.now)
}
