package capture

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
)

// The filter is compiled in two steps: the parsed expression is lowered to a
// tree of conditions on packet bytes (cond), which is then assembled into
// classic BPF with forward jumps, as libpcap's code generator does (without
// its optimiser).

type cond interface{}

type cAnd struct{ a, b cond }
type cOr struct{ a, b cond }
type cNot struct{ a cond }
type cConst bool

type testOp uint8

const (
	opEq  testOp = iota // A == val
	opGt                // A > val
	opGe                // A >= val
	opSet               // A & val != 0
)

// cTest loads a value from the packet and compares it.
type cTest struct {
	size uint8 // 1, 2 or 4 bytes; 0: the packet's length
	off  uint32
	// ipx: the load is at off plus the IPv4 header length, taken from the
	// byte at xoff (BPF_LDX|BPF_MSH).
	ipx  bool
	xoff uint32
	mask uint32 // applied before the comparison when not 0
	op   testOp
	val  uint32
}

func and(a, b cond) cond {
	switch {
	case a == cConst(false) || b == cConst(false):
		return cConst(false)
	case a == cConst(true):
		return b
	case b == cConst(true):
		return a
	}
	return &cAnd{a, b}
}

func or(a, b cond) cond {
	switch {
	case a == cConst(true) || b == cConst(true):
		return cConst(true)
	case a == cConst(false):
		return b
	case b == cConst(false):
		return a
	}
	return &cOr{a, b}
}

func not(a cond) cond {
	if c, ok := a.(cConst); ok {
		return !c
	}
	return &cNot{a}
}

func eq(size uint8, off, val uint32) cond {
	return &cTest{size: size, off: off, op: opEq, val: val}
}

// EtherTypes and IP protocol numbers the filter knows.
const (
	etherIPv4  = 0x0800
	etherARP   = 0x0806
	etherRARP  = 0x8035
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	protoICMP  = 1
	protoTCP   = 6
	protoUDP   = 17
	protoICMP6 = 58
	protoSCTP  = 132
)

// lower turns the expression into conditions for one link type.
type lowerer struct {
	link LinkType
	l3   uint32 // offset of the network header
}

func (lw *lowerer) lower(n node) cond {
	switch n := n.(type) {
	case *andNode:
		return and(lw.lower(n.a), lw.lower(n.b))
	case *orNode:
		return or(lw.lower(n.a), lw.lower(n.b))
	case *notNode:
		return not(lw.lower(n.a))
	case *prim:
		return lw.prim(n)
	}
	panic(fmt.Sprintf("capture: unknown filter node %T", n))
}

// etherIs tests the EtherType; on a raw IP link, the IP version.
func (lw *lowerer) etherIs(t uint32) cond {
	if lw.link == LinkRaw {
		switch t {
		case etherIPv4:
			return &cTest{size: 1, mask: 0xf0, op: opEq, val: 0x40}
		case etherIPv6:
			return &cTest{size: 1, mask: 0xf0, op: opEq, val: 0x60}
		}
		return cConst(false)
	}
	return eq(2, 12, t)
}

func (lw *lowerer) ipProto(p uint32) cond  { return and(lw.etherIs(etherIPv4), eq(1, lw.l3+9, p)) }
func (lw *lowerer) ip6Proto(p uint32) cond { return and(lw.etherIs(etherIPv6), eq(1, lw.l3+6, p)) }

// dirs combines the tests of the source and destination fields.
func dirs(d dirKind, src, dst func() cond) cond {
	switch d {
	case dirSrc:
		return src()
	case dirDst:
		return dst()
	case dirBoth:
		return and(src(), dst())
	}
	return or(src(), dst())
}

func (lw *lowerer) prim(p *prim) cond {
	ether := lw.link != LinkRaw
	switch p.kind {
	case pProto:
		switch p.qual {
		case "ip":
			return lw.etherIs(etherIPv4)
		case "ip6":
			return lw.etherIs(etherIPv6)
		case "arp":
			return lw.etherIs(etherARP)
		case "rarp":
			return lw.etherIs(etherRARP)
		case "icmp":
			return lw.ipProto(protoICMP)
		case "icmp6":
			return lw.ip6Proto(protoICMP6)
		}
		n := map[string]uint32{"tcp": protoTCP, "udp": protoUDP, "sctp": protoSCTP}[p.qual]
		return or(lw.ipProto(n), lw.ip6Proto(n))
	case pIPProto:
		switch p.qual {
		case "ip":
			return lw.ipProto(p.num)
		case "ip6":
			return lw.ip6Proto(p.num)
		}
		return or(lw.ipProto(p.num), lw.ip6Proto(p.num))
	case pEtherProto:
		return lw.etherIs(p.num)
	case pVlan:
		if !ether {
			return cConst(false)
		}
		c := or(lw.etherIs(etherVLAN), lw.etherIs(etherQinQ))
		if p.hasNum {
			c = and(c, &cTest{size: 2, off: 14, mask: 0x0fff, op: opEq, val: p.num})
		}
		return c
	case pGreater:
		return &cTest{op: opGe, val: p.num}
	case pLess:
		return not(&cTest{op: opGt, val: p.num})
	case pEtherBcast:
		if !ether {
			return cConst(false)
		}
		return and(eq(4, 0, 0xffffffff), eq(2, 4, 0xffff))
	case pEtherMcast:
		if !ether {
			return cConst(false)
		}
		return &cTest{size: 1, op: opSet, val: 1}
	case pEtherHost:
		if !ether {
			return cConst(false)
		}
		mac := func(off uint32) func() cond {
			return func() cond {
				return and(eq(4, off, binary.BigEndian.Uint32(p.mac[0:4])), eq(2, off+4, uint32(binary.BigEndian.Uint16(p.mac[4:6]))))
			}
		}
		return dirs(p.dir, mac(6), mac(0))
	case pHost:
		return lw.host(p)
	case pPort:
		return lw.port(p)
	}
	panic(fmt.Sprintf("capture: unknown primitive %d", p.kind))
}

// host lowers host and net.
func (lw *lowerer) host(p *prim) cond {
	l3 := lw.l3
	a := p.addr.Addr()
	if a.Is6() {
		b := a.As16()
		at := func(off uint32) func() cond {
			return func() cond {
				c := cond(cConst(true))
				for w := range 4 {
					bits := min(max(p.addr.Bits()-32*w, 0), 32)
					if bits == 0 {
						break
					}
					mask := ^uint32(0) << (32 - bits)
					v := binary.BigEndian.Uint32(b[4*w:])
					t := &cTest{size: 4, off: off + 4*uint32(w), op: opEq, val: v & mask}
					if bits < 32 {
						t.mask = mask
					}
					c = and(c, t)
				}
				return c
			}
		}
		return and(lw.etherIs(etherIPv6), dirs(p.dir, at(l3+8), at(l3+24)))
	}
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	var mask uint32
	if p.addr.Bits() < 32 {
		mask = ^uint32(0) << (32 - p.addr.Bits())
		if p.addr.Bits() == 0 {
			mask = 0
		}
	}
	at := func(off uint32) func() cond {
		return func() cond {
			if p.addr.Bits() == 0 {
				// 0.0.0.0/0: the field need not even be loaded, but
				// load it, as libpcap does, so a truncated packet
				// fails alike.
				return &cTest{size: 4, off: off, mask: 0, op: opGe, val: 0}
			}
			return &cTest{size: 4, off: off, mask: mask, op: opEq, val: v & maskOr(mask)}
		}
	}
	ip := func() cond { return and(lw.etherIs(etherIPv4), dirs(p.dir, at(lw.l3+12), at(lw.l3+16))) }
	arp := func(t uint32) cond { return and(lw.etherIs(t), dirs(p.dir, at(lw.l3+14), at(lw.l3+24))) }
	switch p.qual {
	case "ip":
		return ip()
	case "arp":
		return arp(etherARP)
	case "rarp":
		return arp(etherRARP)
	}
	return or(or(ip(), arp(etherARP)), arp(etherRARP))
}

func maskOr(m uint32) uint32 {
	if m == 0 {
		return ^uint32(0)
	}
	return m
}

// port lowers port and portrange: TCP, UDP or SCTP over IPv4 (first
// fragments only) or IPv6 (no extension headers).
func (lw *lowerer) port(p *prim) cond {
	l3 := lw.l3
	protos := []uint32{protoTCP, protoUDP, protoSCTP}
	switch p.qual {
	case "tcp":
		protos = []uint32{protoTCP}
	case "udp":
		protos = []uint32{protoUDP}
	case "sctp":
		protos = []uint32{protoSCTP}
	}
	sel := func(off uint32) cond {
		c := cond(cConst(false))
		for _, n := range protos {
			c = or(c, eq(1, off, n))
		}
		return c
	}
	cmp := func(t cTest) cond {
		if p.lo == p.hi {
			t.op, t.val = opEq, uint32(p.lo)
			return &t
		}
		ge, gt := t, t
		ge.op, ge.val = opGe, uint32(p.lo)
		gt.op, gt.val = opGt, uint32(p.hi)
		return and(&ge, not(&gt))
	}
	v4port := func(off uint32) func() cond {
		return func() cond { return cmp(cTest{size: 2, off: off, ipx: true, xoff: l3}) }
	}
	v6port := func(off uint32) func() cond {
		return func() cond { return cmp(cTest{size: 2, off: off}) }
	}
	v4 := and(lw.etherIs(etherIPv4), and(sel(l3+9), and(not(&cTest{size: 2, off: l3 + 6, op: opSet, val: 0x1fff}),
		dirs(p.dir, v4port(l3), v4port(l3+2)))))
	v6 := and(lw.etherIs(etherIPv6), and(sel(l3+6), dirs(p.dir, v6port(l3+40), v6port(l3+42))))
	return or(v4, v6)
}

// Compile returns the filter as a classic BPF program for frames of the
// given link type, returning snaplen for a frame that matches and 0 for one
// that does not. A load beyond the end of the frame makes it not match.
func (f *Filter) Compile(link LinkType, snaplen uint32) ([]bpf.Instruction, error) {
	if f.root == nil {
		return []bpf.Instruction{bpf.RetConstant{Val: snaplen}}, nil
	}
	lw := &lowerer{link: link, l3: 14}
	if link == LinkRaw {
		lw.l3 = 0
	}
	a := &assembler{}
	t, fl := a.label(), a.label()
	a.gen(lw.lower(f.root), t, fl)
	a.place(t)
	a.emit(bpf.RetConstant{Val: snaplen})
	a.place(fl)
	a.emit(bpf.RetConstant{Val: 0})
	return a.resolve(f.expr)
}

// assembler builds a program with symbolic forward jumps.
type assembler struct {
	ins    []asmIns
	labels []int // instruction index of each label, -1 until placed
}

type asmIns struct {
	ins    bpf.Instruction
	jt, jf int // labels of a conditional jump; ja for an unconditional one
	ja     int
	jump   uint8 // 0: not a jump, 1: conditional, 2: unconditional
}

func (a *assembler) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *assembler) place(l int) { a.labels[l] = len(a.ins) }

func (a *assembler) emit(i bpf.Instruction) { a.ins = append(a.ins, asmIns{ins: i}) }

// gen emits code that jumps to tl when c holds and to fl when not.
func (a *assembler) gen(c cond, tl, fl int) {
	switch c := c.(type) {
	case cConst:
		l := fl
		if c {
			l = tl
		}
		a.ins = append(a.ins, asmIns{ins: bpf.Jump{}, ja: l, jump: 2})
	case *cAnd:
		m := a.label()
		a.gen(c.a, m, fl)
		a.place(m)
		a.gen(c.b, tl, fl)
	case *cOr:
		m := a.label()
		a.gen(c.a, tl, m)
		a.place(m)
		a.gen(c.b, tl, fl)
	case *cNot:
		a.gen(c.a, fl, tl)
	case *cTest:
		switch {
		case c.size == 0:
			a.emit(bpf.LoadExtension{Num: bpf.ExtLen})
		case c.ipx:
			a.emit(bpf.LoadMemShift{Off: c.xoff})
			a.emit(bpf.LoadIndirect{Off: c.off, Size: int(c.size)})
		default:
			a.emit(bpf.LoadAbsolute{Off: c.off, Size: int(c.size)})
		}
		if c.mask != 0 {
			a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: c.mask})
		}
		jc := map[testOp]bpf.JumpTest{opEq: bpf.JumpEqual, opGt: bpf.JumpGreaterThan, opGe: bpf.JumpGreaterOrEqual, opSet: bpf.JumpBitsSet}[c.op]
		a.ins = append(a.ins, asmIns{ins: bpf.JumpIf{Cond: jc, Val: c.val}, jt: tl, jf: fl, jump: 1})
	default:
		panic(fmt.Sprintf("capture: unknown condition %T", c))
	}
}

// resolve turns labels into skips.
func (a *assembler) resolve(expr string) ([]bpf.Instruction, error) {
	out := make([]bpf.Instruction, len(a.ins))
	for i, in := range a.ins {
		switch in.jump {
		case 0:
			out[i] = in.ins
		case 2:
			out[i] = bpf.Jump{Skip: uint32(a.labels[in.ja] - i - 1)}
		case 1:
			st, sf := a.labels[in.jt]-i-1, a.labels[in.jf]-i-1
			if st > 255 || sf > 255 {
				return nil, fmt.Errorf("%w: %q is too long to compile (a jump over more than 255 instructions)", ErrBadFilter, expr)
			}
			j := in.ins.(bpf.JumpIf)
			j.SkipTrue, j.SkipFalse = uint8(st), uint8(sf)
			out[i] = j
		}
	}
	return out, nil
}
