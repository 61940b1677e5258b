package vswitch

import (
	"encoding/binary"
	"slices"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// aclStage applies the rules (Switch.SetRules) and isolation
// (Config.Isolate) to each output port the forward stage chose; it runs
// after learn and forward because a rule may name the output port
// (DstPort, Port) and isolation depends on it (as the Linux bridge learns
// before ebtables' FORWARD chain filters). For each output port the first
// allow or drop rule in ID order that matches decides; with none,
// isolation does: a port that is not a Gateway reaches only Gateway
// ports. Count rules count, mirror rules send a copy to their port, up to
// the deciding rule. A frame left with no output port (it had some) is
// dropped and counted in RxDenied.
//
// Matching does not scan every rule. Rules are compiled with the port
// table (port names resolved to positions; a rule naming a missing port
// is left out) into candidate lists, kept in ID order:
//
//   - by ingress port: rules with SrcPort in the list of that port, the
//     others in a common list (a frame walks both, merged);
//   - by protocol class: not IPv4, TCP, UDP, other IPv4; a rule only sits
//     in the classes it can match (an IP field, EtherType or protocol puts
//     it in fewer);
//   - for TCP and UDP, by destination port: a rule for one port number
//     sits in that number's list only (a map lookup finds it), merged with
//     the rules for any port or a port range.
//
// So a frame is checked against the rules that could match its ingress
// port, protocol and destination port, not against all rules: 1000 rules
// each for a different TCP port cost a TCP frame one map lookup and one or
// two rule checks, and an ARP frame none. What still scales linearly is a
// list of rules that share a key (e.g. 1000 rules for port 443 matching on
// source prefixes), which a frame walks until the first terminal match.
type aclStage struct{}

func (aclStage) Process(f *Frame) Verdict {
	t := f.t
	if f.out.empty() {
		return Continue
	}
	acl := t.acl
	if acl == nil {
		// No rules: only isolation.
		if t.isolate && !f.in.cfg.Gateway {
			f.out.keep(t.gateways)
			if f.out.empty() {
				return DropDenied
			}
		}
		return Continue
	}
	return acl.apply(f)
}

// Rule protocol classes of the candidate lists.
const (
	classOther = iota // not IPv4 (ARP, IPv6, anything else)
	classTCP
	classUDP
	classIP // IPv4, neither TCP nor UDP
	numClasses
)

// crule is a Rule compiled against a port table; the fields match reads
// first come first.
type crule struct {
	ip      bool // matches IPv4 only
	ports   bool // matches TCP/UDP with ports only
	anyL2   bool // no VLAN, MAC or EtherType to match
	proto   uint8
	src     uint32
	srcMask uint32
	dst     uint32
	dstMask uint32
	sLo     uint16
	sHi     uint16
	dLo     uint16
	dHi     uint16
	act     Action
	ctr     *ruleCounters
	srcPos  int // ingress position, -1 any
	dstPos  int // output position, -1 any
	portPos int // ingress or output position, -1 any
	mirror  int // mirror port position
	vlan    uint16
	etype   uint16
	srcMAC  fdb.MAC
	dstMAC  fdb.MAC
	anySMAC bool
	anyDMAC bool
	v6      *prefixes6 // IPv6 prefixes (rule6.go); nil for other rules
}

// prefixes are a rule's IPv4 prefixes. A frame that is not IPv4 has
// zero addresses, which a rule with a prefix of length 0 (or none: mask 0)
// matches, and match checks the rest.
type prefixes struct{ src, srcMask, dst, dstMask uint32 }

// ruleList is a list of compiled rules (indices into compiledRules.rules,
// ascending, i.e. in ID order) for one protocol class.
type ruleList struct {
	any []int32
	// byDPort holds, for TCP and UDP, the rules for exactly one
	// destination port, merged with any. Keyed by uint32: Go's maps have
	// a fast path for 4-byte keys, not for 2-byte ones.
	byDPort map[uint32][]int32
}

// ruleIndex holds the candidate lists of one ingress key (a port, or the
// rules without SrcPort).
type ruleIndex [numClasses]ruleList

// compiledRules is a rule set compiled against one port table.
type compiledRules struct {
	rules  []crule
	pre    []prefixes // pre[i] are rules[i]'s prefixes, 16 bytes each
	common ruleIndex
	byPort []*ruleIndex // by ingress position; nil if no rule names it as SrcPort
}

// pendingRule is a rule that matched a frame but depends on the output
// port: it applies to the output port at position out only.
type pendingRule struct {
	r   int32
	out int
}

// compileRules compiles rs against the ports list (in table order). It
// returns nil when no rule can ever match.
func compileRules(rs *ruleSet, list []*port) *compiledRules {
	pos := make(map[string]int, len(list))
	for i := len(list) - 1; i >= 0; i-- {
		pos[list[i].p.Name()] = i // the first port of a name wins
	}
	resolve := func(name string) (int, bool) {
		if name == "" {
			return -1, true
		}
		i, ok := pos[name]
		return i, ok
	}
	c := &compiledRules{}
	for i, r := range rs.rules {
		cr := crule{act: r.Action, ctr: rs.counters[i], vlan: r.VLAN, etype: r.EtherType,
			srcMAC: r.SrcMAC, dstMAC: r.DstMAC, anySMAC: r.SrcMAC.IsZero(), anyDMAC: r.DstMAC.IsZero(),
			proto: r.Proto, sLo: r.SPortLo, sHi: r.SPortHi, dLo: r.DPortLo, dHi: r.DPortHi, mirror: -1}
		var ok1, ok2, ok3, ok4 bool
		cr.srcPos, ok1 = resolve(r.SrcPort)
		cr.dstPos, ok2 = resolve(r.DstPort)
		cr.portPos, ok3 = resolve(r.Port)
		cr.mirror, ok4 = resolve(r.MirrorTo)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			continue // names a port that does not exist (yet)
		}
		if cr.v6 = compile6(r); cr.v6 != nil {
			cr.etype = wire.EtherTypeIPv6
		}
		if r.Src.Addr().Is4() {
			cr.src, cr.srcMask = prefixBits(r.Src.Addr().As4(), r.Src.Bits())
		}
		if r.Dst.Addr().Is4() {
			cr.dst, cr.dstMask = prefixBits(r.Dst.Addr().As4(), r.Dst.Bits())
		}
		cr.ports = r.SPortHi != 0 || r.DPortHi != 0
		cr.anyL2 = r.VLAN == 0 && cr.anySMAC && cr.anyDMAC && cr.etype == 0
		cr.ip = cr.v6 == nil && (cr.ports || r.Proto != 0 || r.Src.IsValid() || r.Dst.IsValid() || r.EtherType == wire.EtherTypeIPv4)
		c.rules = append(c.rules, cr)
		c.pre = append(c.pre, prefixes{cr.src, cr.srcMask, cr.dst, cr.dstMask})
		idx := int32(len(c.rules) - 1)
		ri := &c.common
		if cr.srcPos >= 0 {
			if c.byPort == nil {
				c.byPort = make([]*ruleIndex, len(list))
			}
			if c.byPort[cr.srcPos] == nil {
				c.byPort[cr.srcPos] = &ruleIndex{}
			}
			ri = c.byPort[cr.srcPos]
		}
		for class := range numClasses {
			if !cr.inClass(class) {
				continue
			}
			l := &ri[class]
			if (class == classTCP || class == classUDP) && cr.dLo != 0 && cr.dLo == cr.dHi {
				if l.byDPort == nil {
					l.byDPort = map[uint32][]int32{}
				}
				l.byDPort[uint32(cr.dLo)] = append(l.byDPort[uint32(cr.dLo)], idx)
				continue
			}
			l.any = append(l.any, idx)
		}
	}
	if len(c.rules) == 0 {
		return nil
	}
	// A port's own list holds the rules for any port too, so a frame
	// finds every candidate for its port in one list.
	merge := func(ri *ruleIndex) {
		for class := range ri {
			l := &ri[class]
			for p, exact := range l.byDPort {
				l.byDPort[p] = mergeSorted(exact, l.any)
			}
		}
	}
	merge(&c.common)
	for _, ri := range c.byPort {
		if ri != nil {
			merge(ri)
		}
	}
	return c
}

// inClass reports whether the rule can match frames of a protocol class.
func (r *crule) inClass(class int) bool {
	if !r.ip {
		return r.etype == 0 || (class == classOther) == (r.etype != wire.EtherTypeIPv4)
	}
	switch class {
	case classOther:
		return false
	case classTCP:
		return r.proto == 0 || r.proto == wire.ProtoTCP
	case classUDP:
		return r.proto == 0 || r.proto == wire.ProtoUDP
	default:
		return !r.ports && r.proto != wire.ProtoTCP && r.proto != wire.ProtoUDP
	}
}

func prefixBits(a [4]byte, bits int) (addr, mask uint32) {
	mask = ^uint32(0) << (32 - bits)
	if bits == 0 {
		mask = 0
	}
	return binary.BigEndian.Uint32(a[:]) & mask, mask
}

// mergeSorted returns the ascending union of two ascending lists.
func mergeSorted(a, b []int32) []int32 {
	out := make([]int32, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// list returns the candidates of ri for f.
func (ri *ruleIndex) list(f *Frame) []int32 {
	class := classOther
	if f.IPv4 {
		switch f.Proto {
		case wire.ProtoTCP:
			class = classTCP
		case wire.ProtoUDP:
			class = classUDP
		default:
			class = classIP
		}
	}
	l := &ri[class]
	if f.HasPorts && l.byDPort != nil {
		if exact, ok := l.byDPort[uint32(f.DPort)]; ok {
			return exact
		}
	}
	return l.any
}

// match reports whether r matches f, leaving aside the port names. It
// checks the IPv4 fields first: in a long list of rules they are what
// usually differs.
func (r *crule) match(f *Frame) bool {
	if r.v6 != nil && !r.v6.match(f) {
		return false
	}
	if r.ip {
		if !f.IPv4 || f.src32&r.srcMask != r.src || f.dst32&r.dstMask != r.dst ||
			r.proto != 0 && r.proto != f.Proto {
			return false
		}
		if r.ports && !(f.HasPorts &&
			(r.sHi == 0 || f.SPort >= r.sLo && f.SPort <= r.sHi) &&
			(r.dHi == 0 || f.DPort >= r.dLo && f.DPort <= r.dHi)) {
			return false
		}
	}
	return r.anyL2 ||
		(r.vlan == 0 || r.vlan == f.VLAN) &&
			(r.anySMAC || r.srcMAC == f.Src) &&
			(r.anyDMAC || r.dstMAC == f.Dst) &&
			(r.etype == 0 || r.etype == f.EtherType)
}

// try matches rule ri, whose prefixes the caller has checked, against f
// in the first pass of apply: a rule that
// depends on the output port is kept for the second; one that does not is
// applied. It reports whether ri is terminal (allow or drop).
func (c *compiledRules) try(f *Frame, ri int32) bool {
	r := &c.rules[ri]
	if !r.match(f) {
		return false
	}
	out := r.dstPos
	if r.portPos >= 0 && r.portPos != f.inPos {
		if out >= 0 && out != r.portPos {
			return false // Port names neither the ingress nor DstPort
		}
		out = r.portPos
	}
	if out >= 0 {
		f.pending = append(f.pending, pendingRule{ri, out})
		return false
	}
	r.ctr.add(f.in.id, len(f.Data)-VnetHdrLen)
	switch r.act {
	case ActionMirror:
		f.sw.egress(f, f.t.list[r.mirror])
	case ActionAllow, ActionDrop:
		return true
	}
	return false
}

// apply runs the rules on f: a first pass over the candidates settles the
// rules that do not depend on the output port (up to the first terminal
// one) and keeps those that do; then each output port is decided.
func (c *compiledRules) apply(f *Frame) Verdict {
	t := f.t
	l1 := c.common.list(f)
	var l2 []int32
	if c.byPort != nil {
		if ri := c.byPort[f.inPos]; ri != nil {
			l2 = ri.list(f)
		}
	}
	term := int32(-1)
	if len(l2) == 0 {
		pre := c.pre
		for _, ri := range l1 {
			// The prefixes first, inline and from a compact array: in
			// a long list they are what usually differs, and this is
			// the loop a long list costs.
			if p := &pre[ri]; f.src32&p.srcMask != p.src || f.dst32&p.dstMask != p.dst {
				continue
			}
			if c.try(f, ri) {
				term = ri
				break
			}
		}
	} else {
		for i, j := 0, 0; i < len(l1) || j < len(l2); {
			var ri int32
			if j >= len(l2) || i < len(l1) && l1[i] < l2[j] {
				ri = l1[i]
				i++
			} else {
				ri = l2[j]
				j++
			}
			if p := &c.pre[ri]; f.src32&p.srcMask != p.src || f.dst32&p.dstMask != p.dst {
				continue
			}
			if c.try(f, ri) {
				term = ri
				break
			}
		}
	}

	bytes := len(f.Data) - VnetHdrLen
	f.decided.reset(len(t.list))
	for _, p := range f.pending {
		if !f.out.has(p.out) || f.decided.has(p.out) {
			continue
		}
		r := &c.rules[p.r]
		r.ctr.add(f.in.id, bytes)
		switch r.act {
		case ActionMirror:
			f.sw.egress(f, t.list[r.mirror])
		case ActionAllow:
			f.decided.add(p.out)
		case ActionDrop:
			f.decided.add(p.out)
			f.out.remove(p.out)
		}
	}
	switch {
	case term >= 0 && c.rules[term].act == ActionDrop:
		f.out.keep(f.decided.w)
	case term >= 0:
		// Allowed to every port no earlier rule decided.
	case t.isolate && !f.in.cfg.Gateway:
		f.decided.addAll(t.gateways)
		f.out.keep(f.decided.w)
	}
	if f.out.empty() {
		return DropDenied
	}
	return Continue
}
