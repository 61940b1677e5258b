package vswitch

import (
	"strings"

	"github.com/tapswitch/tapswitch/switch/gso"
)

// Offloads is a set of offload features: the kinds of frames, beyond
// ordinary ones, that a port accepts on Write. They mirror the TAP's
// TUNSETOFFLOAD flags (TUN_F_*).
type Offloads uint32

const (
	// OffloadCsum: frames with a partial transport checksum
	// (VIRTIO_NET_HDR_F_NEEDS_CSUM); TUN_F_CSUM.
	OffloadCsum Offloads = 1 << iota
	// OffloadTSO4: TCP over IPv4 super-frames (GSO_TCPV4); TUN_F_TSO4.
	OffloadTSO4
	// OffloadTSO6: TCP over IPv6 super-frames (GSO_TCPV6); TUN_F_TSO6.
	OffloadTSO6
	// OffloadTSOECN: TCP super-frames with GSO_ECN; TUN_F_TSO_ECN.
	OffloadTSOECN
	// OffloadUSO4: UDP over IPv4 super-frames (GSO_UDP_L4); TUN_F_USO4.
	OffloadUSO4
	// OffloadUSO6: UDP over IPv6 super-frames (GSO_UDP_L4); TUN_F_USO6.
	OffloadUSO6

	// offloadUnknown is needed by frames no port takes whole (UFO, an
	// unknown gso_type): they always go through software GSO, which
	// rejects them.
	offloadUnknown Offloads = 1 << 31
)

// String lists the offloads, e.g. "csum,tso4,tso6", or "none".
func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	var names []string
	for i, n := range []string{"csum", "tso4", "tso6", "tso_ecn", "uso4", "uso6"} {
		if o&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if o&offloadUnknown != 0 {
		names = append(names, "unknown")
	}
	return strings.Join(names, ",")
}

// Offloader is implemented by a Port that accepts frames needing offloads
// on Write: partial checksums or GSO super-frames with their
// virtio_net_hdr. A Port that does not implement it (the gateway, test
// ports) only gets ordinary frames: the switch completes checksums and
// segments super-frames for it (package gso). Offloads is called once, by
// AddPort; the answer must not change over the port's lifetime.
type Offloader interface {
	Offloads() Offloads
}

// offloadsOf returns what p accepts.
func offloadsOf(p Port) Offloads {
	if o, ok := p.(Offloader); ok {
		return o.Offloads()
	}
	return 0
}

// frameNeeds returns the offloads a port must have to take the frame
// (virtio_net_hdr first) whole: 0 for an ordinary frame, which is the one
// check every frame pays.
func frameNeeds(frame []byte) Offloads {
	if gso.IsPlain(frame) {
		return 0
	}
	need := OffloadCsum
	typ := frame[1]
	if typ&gso.TypeECN != 0 {
		need |= OffloadTSOECN
	}
	switch typ &^ gso.TypeECN {
	case gso.TypeNone:
		if typ != gso.TypeNone {
			need |= offloadUnknown // ECN without a TCP type
		}
	case gso.TypeTCPv4:
		need |= OffloadTSO4
	case gso.TypeTCPv6:
		need |= OffloadTSO6
	case gso.TypeUDPL4:
		// USO has one gso_type for both families; TUN_F_USO4 and
		// TUN_F_USO6 are separate, so look at the EtherType.
		if isIPv6(frame) {
			need |= OffloadUSO6
		} else {
			need |= OffloadUSO4
		}
	default:
		need |= offloadUnknown
	}
	return need
}

// isIPv6 reports whether the Ethernet frame after the virtio_net_hdr carries
// IPv6, behind at most one VLAN tag.
func isIPv6(frame []byte) bool {
	o := VnetHdrLen + 12
	if len(frame) >= o+6 && frame[o] == 0x81 && frame[o+1] == 0x00 {
		o += 4
	}
	return len(frame) >= o+2 && frame[o] == 0x86 && frame[o+1] == 0xdd
}

// transmitSoftware sends the frame buf[off:] of f to out, which lacks some of
// the offloads need. A frame that only needs its checksum completed gets it
// in place (the frame stays valid for every port, so a flood goes on with
// the completed frame); a super-frame is cut into ordinary frames in the
// ingress port's segment buffer, each written in turn. Counters count the
// frames out gets. A frame that cannot be segmented is a transmit drop.
func (s *Switch) transmitSoftware(f *Frame, out *port, buf []byte, off int, need Offloads) {
	frame := buf[off:]
	if need&^OffloadCsum == 0 {
		if gso.CompleteChecksum(frame) != nil {
			out.stats.txDropped.Add(1)
			return
		}
		s.transmit(f, out, buf, off)
		return
	}
	in := f.in
	var sg gso.Segmenter
	// An Answerer's answer is never a super-frame; were it one, its
	// port's segment buffer would be another goroutine's.
	if f.answer || sg.Reset(frame) != nil {
		out.stats.txDropped.Add(1)
		return
	}
	if in.seg == nil {
		// Once per ingress port, the first time it needs one.
		in.seg = s.bufs.Get().(*[BufSize]byte)
	}
	seg := in.seg[:]
	for {
		n := sg.Next(seg[Headroom:])
		if n == 0 {
			return
		}
		s.transmit(f, out, seg[:Headroom+n], Headroom)
	}
}

// send writes the frame buf[off:] of f to out: whole when out
// takes every offload the frame needs (always for an ordinary frame),
// through software GSO otherwise.
func (s *Switch) send(f *Frame, out *port, buf []byte, off int, need Offloads) {
	if need&^out.offloads == 0 {
		s.transmit(f, out, buf, off)
		return
	}
	s.transmitSoftware(f, out, buf, off, need)
}

// putSeg returns the port's segment buffer, if it took one, to pool.
func (pt *port) putSeg(pool interface{ Put(any) }) {
	if pt.seg != nil {
		pool.Put(pt.seg)
		pt.seg = nil
	}
}
