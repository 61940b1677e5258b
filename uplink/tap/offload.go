package tap

import (
	"fmt"

	"github.com/tapswitch/tapswitch/capture"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// offloads are the offloads the uplink asks for on its TAP: partial
// checksums and TCP/IPv4 super-frames, which the gateway and NAT take
// whole (uplink.GSOSender, uplink.GSOReceiver): a 64 KiB TSO frame crosses
// the uplink, NAT and the switch as one frame, rewritten once, instead of
// about 45 segments each read, translated and written on its own. With
// offloads off (as in the first round) NAT through the routed uplink ran
// at 0.08 × kernel masquerade and 0.06 × kernel DNAT (`make bench-nat`,
// 1.22 and 0.92 Gbit/s against 16.0 and 15.0). With them, `ROUNDS=3 make
// bench-nat` on 2026-12-03 at load average 5.1 (the machine shared):
// container -> lan 7.31 Gbit/s against 8.78 for nftables masquerade
// (0.83 ×), lan -> published port 8.03 against 5.86 for dnat (1.37 ×).
// A CPU profile of the daemon (TAPSWITCH_CPUPROFILE, 10 s of iperf3) puts
// 78 % (out) and 64 % (in) of its time in read(2) and write(2) of the TAPs
// (a write runs the receiving namespace's TCP in the daemon's context),
// memmove 3 % out and 19 % in (the super-frame is copied into the
// gateway's buffer and again into the switch's), NAT and the gateway under
// 4 %; the daemon used 0.4 of a core either way. Not USO: the gateway
// does not take it whole, and the kernel segments it for us. TSO6 with
// an IPv6 address (offloadsFor): NAT66 takes TCP/IPv6 super-frames whole
// as NAT does TCP/IPv4 ones.
const offloads = vswitch.OffloadCsum | vswitch.OffloadTSO4

// offloadsFor returns the offloads of the uplink of cfg: offloads, and
// TSO6 with Addr6.
func offloadsFor(cfg *Config) vswitch.Offloads {
	if cfg.Addr6.IsValid() {
		return offloads | vswitch.OffloadTSO6
	}
	return offloads
}

// maxDatagram is the largest IPv4 datagram, and the largest IPv6 packet
// SendGSO takes.
const maxDatagram = 65535

// SetGSOHandler implements uplink.GSOReceiver: TCP/IPv4 super-frames (and
// TCP/IPv6 ones with Addr6) the kernel hands the uplink's TAP (TSO on the
// link's side) go to h whole,
// with their partial checksum, as one part, and mss their gso_size;
// without a handler they are segmented in software and handed to Start's
// handle segment by segment. It is called before Start, if at all.
func (u *TAP) SetGSOHandler(h func(parts [][]byte, mss int)) { u.gsoHandle = h }

// SendGSO implements uplink.GSOSender: it sends the IPv4 TCP datagram (or
// IPv6 TCP packet, with Addr6) buf[off:], whose TCP checksum is partial
// (the pseudo-header sum), to its next hop as Send does, in one frame with
// a virtio_net_hdr that asks the kernel to complete the checksum
// (NEEDS_CSUM) and, when it is longer than one segment of mss bytes of
// payload, to segment it (GSO_TCPV4, GSO_TCPV6): the
// kernel does either where it must, or hands the frame on whole to a
// socket or a port with offloads. A datagram not cut (mss 0) must fit the
// MTU. SendGSO is safe for concurrent use and, for a resolved next hop,
// allocates nothing.
func (u *TAP) SendGSO(buf []byte, off, mss int) error {
	pkt := buf[off:]
	if off < Headroom || len(pkt) < wire.IPv4MinLen {
		return fmt.Errorf("uplink send: %d bytes at offset %d: bad packet or headroom", len(pkt), off)
	}
	if len(pkt) > maxDatagram {
		u.stats.txErrors.Add(1)
		return fmt.Errorf("uplink send: %d bytes, mss %d: %w", len(pkt), mss, vswitch.ErrFrameTooBig)
	}
	ihl, typ, ok := tcpOffset(pkt)
	if !ok || len(pkt) < ihl+wire.TCPMinLen || mss < 0 {
		return fmt.Errorf("uplink send: %d bytes, mss %d: not a TCP datagram", len(pkt), mss)
	}
	thl := wire.TCP(pkt[ihl:]).HeaderLen()
	h := gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: uint16(wire.EthernetLen + ihl), CsumOffset: wire.TCPChecksumOffset}
	switch {
	case (mss == 0 && len(pkt) > u.cfg.MTU) || (mss > 0 && ihl+thl+mss > u.cfg.MTU):
		u.stats.txErrors.Add(1)
		return fmt.Errorf("uplink send: %d bytes, mss %d: %w", len(pkt), mss, vswitch.ErrFrameTooBig)
	case mss > 0 && len(pkt) > ihl+thl+mss:
		h.GSOType, h.GSOSize, h.HdrLen = typ, uint16(mss), uint16(wire.EthernetLen+ihl+thl)
		u.stats.txGSO.Add(1)
	}
	h.Put(buf[off-Headroom:])
	return u.send(buf, off)
}

// inputOffloaded handles a frame read from the TAP whose virtio_net_hdr
// asks for a checksum (NEEDS_CSUM) or segmentation: a TCP super-frame for
// the uplink goes to the GSO handler whole; otherwise the checksum is
// completed, or the frame segmented, and the result handled as an
// ordinary frame.
func (u *TAP) inputOffloaded(frame []byte, handle func(pkt []byte)) {
	h := gso.ParseHdr(frame)
	if h.GSOType == gso.TypeNone {
		if err := gso.CompleteChecksum(frame); err != nil {
			u.stats.rxIgnored.Add(1)
			return
		}
		u.stats.rxCsum.Add(1)
		u.input(frame, handle)
		return
	}
	p, ok := u.forUsAny(frame)
	if !ok {
		// Not for the uplink: nothing to segment it for.
		u.stats.rxIgnored.Add(1)
		return
	}
	if u.gsoHandle != nil && h.GSOSize > 0 && h.Flags&gso.FlagNeedsCsum != 0 {
		if l4, typ, ok := tcpOffset(p); ok && typ == h.GSOType &&
			int(h.CsumStart) == wire.EthernetLen+l4 && h.CsumOffset == wire.TCPChecksumOffset {
			u.Capture.Deliver(capture.In, frame[vswitch.VnetHdrLen:])
			u.stats.rxPackets.Add(1)
			u.stats.rxBytes.Add(uint64(len(p)))
			u.stats.rxGSO.Add(1)
			u.parts[0] = p
			u.gsoHandle(u.parts[:], int(h.GSOSize))
			u.parts[0] = nil
			return
		}
	}
	// Segmented in software, as the kernel would for a device without
	// offloads (rare: no handler, or not a TCP super-frame for us).
	var s gso.Segmenter
	if u.seg == nil {
		u.seg = make([]byte, vswitch.BufSize)
	}
	if err := s.Reset(frame); err != nil || s.MaxLen() > len(u.seg) {
		u.stats.rxIgnored.Add(1)
		return
	}
	u.stats.rxSegmented.Add(1)
	for n := s.Next(u.seg); n > 0; n = s.Next(u.seg) {
		u.input(u.seg[:n], handle)
	}
}

// tcpOffset returns the offset of the TCP header of the IPv4 datagram or
// IPv6 packet p and the GSO type of its family; ok is false when p is not
// TCP, or a fragment.
func tcpOffset(p []byte) (l4 int, typ uint8, ok bool) {
	if wire.IPVersion(p) == 6 {
		ip, err := wire.ParseIPv6(p)
		if err != nil {
			return 0, 0, false
		}
		u, err := ip.Upper()
		return u.Offset, gso.TypeTCPv6, err == nil && u.Proto == wire.ProtoTCP && !u.Fragment
	}
	ip, err := wire.ParseIPv4(p)
	if err != nil {
		return 0, 0, false
	}
	return ip.HeaderLen(), gso.TypeTCPv4, ip.Protocol() == wire.ProtoTCP && !ip.IsFragment()
}

// forUsAny is forUs for IPv4 or, with Addr6, IPv6: the packet of frame
// when it is sent to the uplink's MAC and address.
func (u *TAP) forUsAny(frame []byte) ([]byte, bool) {
	eth := wire.Ethernet(frame[vswitch.VnetHdrLen:])
	if u.v6 == nil || len(eth) < wire.EthernetLen || eth.Type() != wire.EtherTypeIPv6 {
		return u.forUs(frame)
	}
	ip, err := wire.ParseIPv6(eth[wire.EthernetLen:])
	if err != nil || eth.Dst() != u.mac || ip.Dst() != u.v6.addr {
		return nil, false
	}
	return ip, true
}

// forUs returns the IPv4 datagram of frame (virtio_net_hdr first) when it
// is sent to the uplink's MAC and address.
func (u *TAP) forUs(frame []byte) (wire.IPv4, bool) {
	eth := wire.Ethernet(frame[vswitch.VnetHdrLen:])
	if len(eth) < wire.EthernetLen || eth.Type() != wire.EtherTypeIPv4 || eth.Dst() != u.mac {
		return nil, false
	}
	p, err := wire.ParseIPv4(eth[wire.EthernetLen:])
	if err != nil || p.Dst() != u.addr {
		return nil, false
	}
	return p, true
}
