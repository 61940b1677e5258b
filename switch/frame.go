package vswitch

import (
	"encoding/binary"
	"math/bits"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// Frame is the parsed view of one frame on its way through the pipeline.
//
// Ownership: a Frame and the buffer under Data belong to the ingress
// goroutine of the port the frame came in on, and live until the last
// stage returns. A Stage may read every field and Data, may change the
// verdict-related state through the methods below, and must not keep a
// reference to the Frame or to Data after Process returns. Only the
// switch's own stages change Data: the VLAN stage strips a tag (moving the
// virtio_net_hdr and the MAC addresses 4 bytes forward), and the output
// stage inserts one in the Headroom for a tagged port and restores the
// frame after each Write, because a flood hands the same bytes to every
// port. A stage that rewrites bytes in place (without changing the length)
// must keep the headers it changed consistent with the parsed fields.
type Frame struct {
	// Data is the frame as it is now: a virtio_net_hdr (VnetHdrLen
	// bytes) and an Ethernet frame, untagged after the VLAN stage.
	Data []byte

	// Fields set by the parse stage. Offsets count from the start of
	// Data (the virtio_net_hdr).
	Dst, Src  fdb.MAC
	Tags      int    // VLAN tags (0x8100 or 0x88a8) seen; L3 is after the first two that fit
	OuterTPID uint16 // the first tag's TPID (0x8100 or 0x88a8) if Tags > 0
	TagVID    uint16 // the first tag's VLAN ID if Tags > 0
	EtherType uint16 // after the tags
	L3        int    // offset of the header after the EtherType

	// IPv4 is set when the frame carries an IPv4 header that fits in the
	// frame (version 4, IHL >= 5, total length within the frame).
	IPv4         bool
	SrcIP, DstIP [4]byte
	Proto        uint8
	// HasPorts is set for TCP and UDP (first fragment or unfragmented,
	// with the ports inside the packet): SPort and DPort are valid.
	HasPorts     bool
	SPort, DPort uint16

	// ARP is set for an Ethernet/IPv4 ARP packet (RFC 826) that fits in
	// the frame; the sender and target addresses are then valid.
	ARP          bool
	ARPOp        uint16
	ARPSenderMAC fdb.MAC
	ARPSenderIP  [4]byte
	ARPTargetIP  [4]byte

	// VLAN is the VLAN the frame belongs to, set by the VLAN stage; 0
	// before it, and in hub mode (frames are carried as they came).
	VLAN uint16

	// src32 and dst32 are SrcIP and DstIP as numbers, for rule prefixes.
	src32, dst32 uint32

	// need is what a port must accept to take the frame whole.
	need Offloads
	// now is the switch's clock, read once per frame.
	now int64

	sw  *Switch
	t   *portTable
	in  *port
	buf []byte // the ingress buffer; Data is buf[off:]
	off int

	out     portSet // ports the frame goes to, by position in t.list
	decided portSet // ACL: outputs an out-dependent terminal rule decided
	pending []pendingRule
	// inPos is the ingress port's position in t.list.
	inPos int
	// answer marks the Frame of an Answerer's answer (answer.go), whose
	// own outputs are written without asking for answers.
	answer bool
}

// InPort returns the ID of the port the frame came in on.
func (f *Frame) InPort() fdb.PortID { return f.in.id }

// InName returns the name of the port the frame came in on.
func (f *Frame) InName() string { return f.in.p.Name() }

// InConfig returns the configuration of the port the frame came in on; it
// must not be modified.
func (f *Frame) InConfig() *PortConfig { return &f.in.cfg }

// Outputs returns how many ports the frame is to be sent to so far.
func (f *Frame) Outputs() int { return f.out.count() }

// Now returns the switch's clock (see Config.Clock), the one FDB ages use.
func (f *Frame) Now() int64 { return f.now }

// reset prepares f for the frame buf[off:] that came in on in, with the
// port table t.
func (f *Frame) reset(s *Switch, t *portTable, in *port, inPos int, buf []byte, off int) {
	f.sw, f.t, f.in, f.inPos = s, t, in, inPos
	f.buf, f.off = buf, off
	f.Data = buf[off:]
	f.now = s.clock()
	f.VLAN = 0
	f.out.reset(len(t.list))
	f.pending = f.pending[:0]
}

// parse fills the parsed fields from Data. It reports false if Data is too
// short for a virtio_net_hdr and an Ethernet header. It never reads out of
// bounds, whatever the bytes.
func (f *Frame) parse() bool {
	d := f.Data
	f.Tags, f.OuterTPID, f.TagVID, f.EtherType, f.L3 = 0, 0, 0, 0, 0
	f.IPv4, f.HasPorts, f.ARP = false, false, false
	f.src32, f.dst32 = 0, 0
	f.Proto, f.SPort, f.DPort, f.ARPOp = 0, 0, 0, 0
	if len(d) < VnetHdrLen+wire.EthernetLen {
		return false
	}
	f.need = frameNeeds(d)
	eth := d[VnetHdrLen:]
	f.Dst = fdb.MAC(eth[0:6])
	f.Src = fdb.MAC(eth[6:12])
	o := VnetHdrLen + 12
	typ := binary.BigEndian.Uint16(d[o:])
	for wire.IsVLAN(typ) && f.Tags < wire.MaxVLANTags && len(d) >= o+6 {
		if f.Tags == 0 {
			f.OuterTPID = typ
			f.TagVID = binary.BigEndian.Uint16(d[o+2:]) & wire.VIDMask
		}
		f.Tags++
		o += 4
		typ = binary.BigEndian.Uint16(d[o:])
	}
	if wire.IsVLAN(typ) {
		// A third tag, or one cut short (L3 then points at it): the
		// VLAN stage drops the frame.
		if f.Tags == 0 {
			f.OuterTPID = typ
		}
		f.Tags++
	}
	f.EtherType = typ
	f.L3 = o + 2
	switch typ {
	case wire.EtherTypeIPv4:
		if ip, err := wire.ParseIPv4(d[f.L3:]); err == nil {
			f.setIPv4(ip)
		}
	case wire.EtherTypeARP:
		if a, err := wire.ParseARP(d[f.L3:]); err == nil {
			f.setARP(a)
		}
	}
	return true
}

// setIPv4 fills the IPv4 fields from ip, which wire.ParseIPv4 checked
// (version 4, IHL >= 5, total length within the frame), and the ports of a
// TCP or UDP first fragment whose payload holds them.
func (f *Frame) setIPv4(ip wire.IPv4) {
	f.IPv4 = true
	f.Proto = ip.Protocol()
	f.SrcIP, f.DstIP = ip.Src(), ip.Dst()
	f.src32 = binary.BigEndian.Uint32(f.SrcIP[:])
	f.dst32 = binary.BigEndian.Uint32(f.DstIP[:])
	if ip.FragOff() != 0 {
		return // not the first fragment: no transport header
	}
	if l4 := ip.Payload(); (f.Proto == wire.ProtoTCP || f.Proto == wire.ProtoUDP) && len(l4) >= 4 {
		f.HasPorts = true
		f.SPort = binary.BigEndian.Uint16(l4[0:])
		f.DPort = binary.BigEndian.Uint16(l4[2:])
	}
}

// setARP fills the ARP fields from an ARP packet for IPv4 over Ethernet
// (RFC 826: htype 1, ptype 0x0800, hlen 6, plen 4).
func (f *Frame) setARP(a wire.ARP) {
	f.ARP = true
	f.ARPOp = a.Op()
	f.ARPSenderMAC = fdb.MAC(a.SenderMAC())
	f.ARPSenderIP = a.SenderIP()
	f.ARPTargetIP = a.TargetIP()
}

// portSet is a set of port positions in a portTable's list.
type portSet struct {
	w []uint64
	n int // number of valid positions
}

// reset empties the set and sizes it for n positions. It allocates only
// when the table has grown past every earlier size.
func (p *portSet) reset(n int) {
	words := (n + 63) / 64
	if cap(p.w) < words {
		p.w = make([]uint64, words)
	}
	p.w = p.w[:words]
	clear(p.w)
	p.n = n
}

func (p *portSet) add(i int)      { p.w[i>>6] |= 1 << (i & 63) }
func (p *portSet) remove(i int)   { p.w[i>>6] &^= 1 << (i & 63) }
func (p *portSet) has(i int) bool { return p.w[i>>6]&(1<<(i&63)) != 0 }

func (p *portSet) empty() bool {
	for _, w := range p.w {
		if w != 0 {
			return false
		}
	}
	return true
}

func (p *portSet) count() int {
	n := 0
	for _, w := range p.w {
		n += bits.OnesCount64(w)
	}
	return n
}

// addAll adds every position of q (made for the same table).
func (p *portSet) addAll(q bitset) {
	for i := range q {
		p.w[i] |= q[i]
	}
}

// keep removes the positions not in q (made for the same table).
func (p *portSet) keep(q bitset) {
	for i := range p.w {
		if i < len(q) {
			p.w[i] &= q[i]
		} else {
			p.w[i] = 0
		}
	}
}

// bitset is an immutable set of port positions, part of a portTable.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i>>6] |= 1 << (i & 63) }

func (b bitset) has(i int) bool { return i>>6 < len(b) && b[i>>6]&(1<<(i&63)) != 0 }

// next returns the first position >= i in the set, or -1.
func (p *portSet) next(i int) int {
	for wi := i >> 6; wi < len(p.w); wi++ {
		w := p.w[wi]
		if wi == i>>6 {
			w &^= 1<<(i&63) - 1
		}
		if w != 0 {
			return wi<<6 | bits.TrailingZeros64(w)
		}
	}
	return -1
}
