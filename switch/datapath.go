package vswitch

import (
	"sync/atomic"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/wire"
)

// ingress is the loop of one port: read a frame, forward it, repeat. It
// holds one pooled buffer for its lifetime and forwards on its own
// goroutine, so a frame is never queued or copied.
func (s *Switch) ingress(pt *port) {
	defer close(pt.done)
	buf := s.bufs.Get().(*[BufSize]byte)
	defer s.bufs.Put(buf)
	defer pt.putSeg(&s.bufs)
	defer pt.putAns(&s.bufs)
	for {
		n, err := pt.p.Read(buf[:], Headroom)
		if err != nil {
			// The port is gone, or was closed by RemovePort. In the first
			// case it is still in the table: take it out and say so.
			if s.detach(pt) {
				pt.p.Close()
				s.fdb.FlushPort(pt.id)
				if s.cfg.PortGone != nil {
					s.cfg.PortGone(pt.id, pt.p.Name(), err)
				}
			}
			return
		}
		s.forward(pt, buf[:], Headroom, n)
	}
}

// forward runs the frame buf[off:off+n] that arrived on in through the
// pipeline of the port's snapshot. It neither allocates nor takes an
// exclusive lock: one atomic load finds the snapshot, each stage is one
// interface call on the port's reused Frame, and the pipeline's counters
// cost one sharded atomic add per frame (and one per drop).
func (s *Switch) forward(in *port, buf []byte, off, n int) {
	s.forwardFrame(&in.frame, in, buf, off, n)
}

// forwardFrame is forward with the Frame f: the port's own, or its
// answerState's for an Answerer's answer.
func (s *Switch) forwardFrame(f *Frame, in *port, buf []byte, off, n int) {
	// Ports write buf[off:]: cut the buffer at the frame's end.
	buf = buf[:off+n]
	if n >= VnetHdrLen+wire.EthernetLen {
		// A runt is only counted in RxErrors, by the parse stage.
		in.stats.rxPackets.Add(1)
		in.stats.rxBytes.Add(uint64(n - VnetHdrLen))
		in.capture.Deliver(capture.In, buf[off+VnetHdrLen:])
	}
	pl := in.where.Load()
	if pl == nil {
		return // detached while the frame was read
	}
	f.reset(s, pl.t, in, pl.pos, buf, off)
	p := pl.t.pipe
	p.entered.add(in.id)
	for i := range p.stages {
		if v := p.run(i, f); v != Continue {
			p.drops[i].add(in.id)
			v.count(&in.stats)
			return
		}
	}
}

// transmit writes one frame of f to out and counts the outcome. An
// Answerer's answer is forwarded at once, unless f is one (answer.go).
func (s *Switch) transmit(f *Frame, out *port, buf []byte, off int) {
	out.capture.Deliver(capture.Out, buf[off+VnetHdrLen:])
	if out.answerer != nil && !f.answer {
		s.transmitAnswered(f.in, out, buf, off)
		return
	}
	n, err := out.p.Write(buf, off)
	if err != nil {
		out.stats.txDropped.Add(1)
		return
	}
	out.stats.txPackets.Add(1)
	out.stats.txBytes.Add(uint64(n - VnetHdrLen))
}

// counters are a port's counters, updated atomically by the datapath.
type counters struct {
	// rx counters are written by the port's own ingress goroutine, tx
	// counters by the goroutines of the ports that send to it: each group
	// is on cache lines of its own, so that they do not contend (nor
	// with the port's Frame, which the ingress goroutine writes).
	_                    [cacheLine]byte
	rxPackets, rxBytes   atomic.Uint64
	rxErrors, rxFiltered atomic.Uint64
	rxSpoofed            atomic.Uint64
	rxVLANErrors         atomic.Uint64
	rxDenied             atomic.Uint64
	_                    [cacheLine - 8]byte
	txPackets, txBytes   atomic.Uint64
	txDropped            atomic.Uint64
	_                    [cacheLine - 24]byte
}

// PortStats are a port's counters, seen from the switch: rx is what the
// switch received from the port, tx what it sent to it. Bytes count Ethernet
// frames without the virtio_net_hdr.
type PortStats struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	// RxErrors counts frames too short to be Ethernet or with a
	// multicast or zero source MAC.
	RxErrors uint64 `json:"rx_errors"`
	// RxFiltered counts frames dropped because their destination is
	// behind the port they came in on.
	RxFiltered uint64 `json:"rx_filtered"`
	TxPackets  uint64 `json:"tx_packets"`
	TxBytes    uint64 `json:"tx_bytes"`
	// TxDropped counts frames the port failed to take (its queue was full,
	// it was being removed, or the frame was too big for it).
	TxDropped uint64 `json:"tx_dropped"`
	// RxSpoofed counts port security violations: a source MAC, IPv4
	// source or ARP sender (hardware or protocol address) the port may
	// not send from.
	RxSpoofed uint64 `json:"rx_spoofed"`
	// RxVLANErrors counts frames with a tag on an access port, more than
	// one tag (802.1ad or two 802.1Q), or a VLAN the trunk does not carry.
	RxVLANErrors uint64 `json:"rx_vlan_errors"`
	// RxDenied counts frames dropped by an ACL rule or by isolation
	// (Config.Isolate) for every port they would have gone to.
	RxDenied uint64 `json:"rx_denied"`
}

func (c *counters) snapshot() PortStats {
	return PortStats{
		RxPackets:  c.rxPackets.Load(),
		RxBytes:    c.rxBytes.Load(),
		RxErrors:   c.rxErrors.Load(),
		RxFiltered: c.rxFiltered.Load(),
		TxPackets:  c.txPackets.Load(),
		TxBytes:    c.txBytes.Load(),
		TxDropped:  c.txDropped.Load(),

		RxSpoofed:    c.rxSpoofed.Load(),
		RxVLANErrors: c.rxVLANErrors.Load(),
		RxDenied:     c.rxDenied.Load(),
	}
}
