package capture

import "encoding/binary"

// Match reports whether the frame matches the filter, by interpreting the
// expression directly rather than through its BPF program; it follows the
// same rules (a field beyond the end of the frame makes the whole filter
// fail, as a BPF load out of bounds does). It is the reference the compiled
// program is tested against, and is not meant for the datapath.
func (f *Filter) Match(frame []byte, link LinkType) bool {
	if f.root == nil {
		return true
	}
	m := &matcher{pkt: frame, raw: link == LinkRaw}
	if !m.raw {
		m.l3 = 14
	}
	ok := m.eval(f.root)
	return ok && !m.abort
}

type matcher struct {
	pkt   []byte
	raw   bool
	l3    int
	abort bool // a load went beyond the end of the packet
}

func (m *matcher) load(off, size int) uint32 {
	if m.abort || off < 0 || off+size > len(m.pkt) {
		m.abort = true
		return 0
	}
	switch size {
	case 1:
		return uint32(m.pkt[off])
	case 2:
		return uint32(binary.BigEndian.Uint16(m.pkt[off:]))
	}
	return binary.BigEndian.Uint32(m.pkt[off:])
}

func (m *matcher) eval(n node) bool {
	if m.abort {
		return false
	}
	switch n := n.(type) {
	case *andNode:
		return m.eval(n.a) && !m.abort && m.eval(n.b)
	case *orNode:
		if m.eval(n.a) {
			return true
		}
		return !m.abort && m.eval(n.b)
	case *notNode:
		r := m.eval(n.a)
		return !m.abort && !r
	case *prim:
		r := m.prim(n)
		return !m.abort && r
	}
	return false
}

// is reports whether the packet is of the given EtherType (on a raw link:
// the IP version).
func (m *matcher) is(etherType uint32) bool {
	if m.raw {
		v := m.load(0, 1) >> 4
		return (etherType == etherIPv4 && v == 4) || (etherType == etherIPv6 && v == 6)
	}
	return m.load(12, 2) == etherType
}

func (m *matcher) isIPProto(p uint32) bool  { return m.is(etherIPv4) && m.load(m.l3+9, 1) == p }
func (m *matcher) isIP6Proto(p uint32) bool { return m.is(etherIPv6) && m.load(m.l3+6, 1) == p }

// either applies the direction rule to the source and destination tests.
func (m *matcher) either(d dirKind, src, dst func() bool) bool {
	switch d {
	case dirSrc:
		return src()
	case dirDst:
		return dst()
	case dirBoth:
		return src() && !m.abort && dst()
	}
	return src() || (!m.abort && dst())
}

func (m *matcher) prim(p *prim) bool {
	switch p.kind {
	case pProto:
		switch p.qual {
		case "ip":
			return m.is(etherIPv4)
		case "ip6":
			return m.is(etherIPv6)
		case "arp":
			return !m.raw && m.is(etherARP)
		case "rarp":
			return !m.raw && m.is(etherRARP)
		case "icmp":
			return m.isIPProto(protoICMP)
		case "icmp6":
			return m.isIP6Proto(protoICMP6)
		case "tcp":
			return m.isIPProto(protoTCP) || (!m.abort && m.isIP6Proto(protoTCP))
		case "udp":
			return m.isIPProto(protoUDP) || (!m.abort && m.isIP6Proto(protoUDP))
		case "sctp":
			return m.isIPProto(protoSCTP) || (!m.abort && m.isIP6Proto(protoSCTP))
		}
	case pIPProto:
		switch p.qual {
		case "ip":
			return m.isIPProto(p.num)
		case "ip6":
			return m.isIP6Proto(p.num)
		}
		return m.isIPProto(p.num) || (!m.abort && m.isIP6Proto(p.num))
	case pEtherProto:
		if m.raw && p.num != etherIPv4 && p.num != etherIPv6 {
			return false
		}
		return m.is(p.num)
	case pVlan:
		if m.raw {
			return false
		}
		t := m.load(12, 2)
		if t != etherVLAN && t != etherQinQ {
			return false
		}
		return !p.hasNum || m.load(14, 2)&0x0fff == p.num
	case pGreater:
		return uint32(len(m.pkt)) >= p.num
	case pLess:
		return uint32(len(m.pkt)) <= p.num
	case pEtherBcast:
		return !m.raw && m.load(0, 4) == 0xffffffff && m.load(4, 2) == 0xffff
	case pEtherMcast:
		return !m.raw && m.load(0, 1)&1 == 1
	case pEtherHost:
		if m.raw {
			return false
		}
		at := func(off int) func() bool {
			return func() bool {
				return m.load(off, 4) == binary.BigEndian.Uint32(p.mac[:4]) &&
					m.load(off+4, 2) == uint32(binary.BigEndian.Uint16(p.mac[4:]))
			}
		}
		return m.either(p.dir, at(6), at(0))
	case pHost:
		return m.host(p)
	case pPort:
		return m.port(p)
	}
	return false
}

func (m *matcher) host(p *prim) bool {
	a := p.addr.Addr()
	bits := p.addr.Bits()
	if a.Is6() {
		want := a.As16()
		at := func(off int) func() bool {
			return func() bool {
				// Compare word by word, as far as the prefix goes.
				for w := 0; w < 4 && bits > 32*w; w++ {
					n := min(bits-32*w, 32)
					mask := ^uint32(0) << (32 - n)
					if m.load(off+4*w, 4)&mask != binary.BigEndian.Uint32(want[4*w:])&mask {
						return false
					}
				}
				return true
			}
		}
		return m.is(etherIPv6) && m.either(p.dir, at(m.l3+8), at(m.l3+24))
	}
	want := a.As4()
	mask := uint32(0)
	if bits > 0 {
		mask = ^uint32(0) << (32 - bits)
	}
	at := func(off int) func() bool {
		return func() bool {
			return m.load(off, 4)&mask == binary.BigEndian.Uint32(want[:])&mask
		}
	}
	ip := func() bool { return m.is(etherIPv4) && m.either(p.dir, at(m.l3+12), at(m.l3+16)) }
	arp := func(t uint32) bool { return !m.raw && m.is(t) && m.either(p.dir, at(m.l3+14), at(m.l3+24)) }
	switch p.qual {
	case "ip":
		return ip()
	case "arp":
		return arp(etherARP)
	case "rarp":
		return arp(etherRARP)
	}
	return ip() || (!m.abort && arp(etherARP)) || (!m.abort && arp(etherRARP))
}

func (m *matcher) port(p *prim) bool {
	protoOK := func(n uint32) bool {
		switch p.qual {
		case "tcp":
			return n == protoTCP
		case "udp":
			return n == protoUDP
		case "sctp":
			return n == protoSCTP
		}
		return n == protoTCP || n == protoUDP || n == protoSCTP
	}
	in := func(v uint32) bool { return v >= uint32(p.lo) && v <= uint32(p.hi) }
	if m.is(etherIPv4) {
		if protoOK(m.load(m.l3+9, 1)) && m.load(m.l3+6, 2)&0x1fff == 0 {
			// The transport header follows the IPv4 header, whose
			// length is in its first byte.
			base := m.l3 + int(m.load(m.l3, 1)&0x0f)*4
			if m.abort {
				return false
			}
			if m.either(p.dir, func() bool { return in(m.load(base, 2)) }, func() bool { return in(m.load(base+2, 2)) }) {
				return true
			}
		}
	}
	if m.abort {
		return false
	}
	if m.is(etherIPv6) && protoOK(m.load(m.l3+6, 1)) {
		return m.either(p.dir, func() bool { return in(m.load(m.l3+40, 2)) }, func() bool { return in(m.load(m.l3+42, 2)) })
	}
	return false
}
