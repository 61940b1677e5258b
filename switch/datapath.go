package vswitch

import (
	"sync/atomic"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
)

// ethHdrLen is the length of an untagged Ethernet header.
const ethHdrLen = 14

// EtherTypes the datapath reads.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherVLAN = 0x8100 // IEEE 802.1Q
	etherQinQ = 0x88a8 // IEEE 802.1ad service tag
)

// ingress is the loop of one port: read a frame, forward it, repeat. It
// holds one pooled buffer for its lifetime and forwards on its own
// goroutine, so a frame is never queued or copied.
func (s *Switch) ingress(pt *port) {
	defer close(pt.done)
	buf := s.bufs.Get().(*[BufSize]byte)
	defer s.bufs.Put(buf)
	defer pt.putSeg(&s.bufs)
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

// forward switches the frame buf[off:off+n] that arrived on in: learn its
// source, then send it to the port its destination was learned on, or flood
// it. It neither allocates nor takes an exclusive lock.
func (s *Switch) forward(in *port, buf []byte, off, n int) {
	// Ports write buf[off:]: cut the buffer at the frame's end.
	buf = buf[:off+n]
	frame := buf[off:]
	if len(frame) < VnetHdrLen+ethHdrLen {
		in.stats.rxErrors.Add(1)
		return
	}
	in.stats.rxPackets.Add(1)
	in.stats.rxBytes.Add(uint64(n - VnetHdrLen))
	eth := frame[VnetHdrLen:]
	in.capture.Deliver(capture.In, eth)
	dst := fdb.MAC(eth[0:6])
	src := fdb.MAC(eth[6:12])
	if src.IsMulticast() || src.IsZero() {
		// No station sends from a group or the zero address;
		// br_handle_frame drops such frames too.
		in.stats.rxErrors.Add(1)
		return
	}
	now := s.clock()
	s.fdb.Learn(fdb.Key{MAC: src}, in.id, now)
	need := frameNeeds(frame)

	t := s.ports.Load()
	if !dst.IsMulticast() {
		if id, ok := s.fdb.Lookup(fdb.Key{MAC: dst}, now); ok {
			if id == in.id {
				// The destination is behind the port the frame came
				// from (br_handle_frame_finish does the same): drop.
				in.stats.rxFiltered.Add(1)
				return
			}
			if out := t.byID[id]; out != nil {
				s.send(in, out, buf, off, need)
				return
			}
		}
	}
	s.flood(t, in, buf, off, need)
}

// flood sends the frame to every port but the one it came in on. A port
// whose write fails does not stop the flood: its drop is counted and the
// next port gets the frame.
func (s *Switch) flood(t *portTable, in *port, buf []byte, off int, need Offloads) {
	for _, out := range t.list {
		if out != in {
			s.send(in, out, buf, off, need)
		}
	}
}

// transmit writes one frame to out and counts the outcome.
func (s *Switch) transmit(out *port, buf []byte, off int) {
	out.capture.Deliver(capture.Out, buf[off+VnetHdrLen:])
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
	rxPackets, rxBytes   atomic.Uint64
	rxErrors, rxFiltered atomic.Uint64
	txPackets, txBytes   atomic.Uint64
	txDropped            atomic.Uint64
	rxSpoofed            atomic.Uint64
	rxVLANErrors         atomic.Uint64
	rxDenied             atomic.Uint64
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
