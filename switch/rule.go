package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// Action is what a matching Rule does with a frame.
type Action uint8

const (
	// ActionAllow lets the frame through, also across Config.Isolate;
	// terminal.
	ActionAllow Action = iota + 1
	// ActionDrop drops the frame (counted in the ingress port's
	// RxDenied); terminal.
	ActionDrop
	// ActionCount only counts the frame; evaluation goes on.
	ActionCount
	// ActionMirror sends a copy of the frame to the port Rule.MirrorTo
	// (counted in that port's tx counters), tagged with the frame's VLAN
	// unless that is the mirror port's own; evaluation goes on, and the
	// copy is sent even if a later rule drops the frame.
	ActionMirror
)

var actionNames = [...]string{ActionAllow: "allow", ActionDrop: "drop", ActionCount: "count", ActionMirror: "mirror"}

// String returns "allow", "drop", "count" or "mirror".
func (a Action) String() string {
	if a >= ActionAllow && a <= ActionMirror {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction parses the names String returns.
func ParseAction(s string) (Action, error) {
	for a := ActionAllow; a <= ActionMirror; a++ {
		if actionNames[a] == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown action %q (want allow, drop, count or mirror)", ErrInvalidRule, s)
}

// MarshalText encodes a as its name.
func (a Action) MarshalText() ([]byte, error) {
	if a < ActionAllow || a > ActionMirror {
		return nil, fmt.Errorf("%w: unknown action %d", ErrInvalidRule, uint8(a))
	}
	return []byte(actionNames[a]), nil
}

// UnmarshalText decodes a name ParseAction accepts.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// ErrInvalidRule is returned (wrapped) by SetRules when a rule can never be
// valid; the rule set in use is left as it was.
var ErrInvalidRule = errors.New("invalid rule")

// Rule is one ACL rule. A zero field matches anything. Port names are the
// names of ports (Port.Name()); a rule naming a port that does not exist
// (yet) is kept and matches nothing until a port of that name is added.
//
// Allow and drop are terminal: the first one in ID order that matches a
// frame and an output port decides for that output port. Count and mirror
// count (or copy) and evaluation goes on. An allow rule overrides
// Config.Isolate. With no terminal match the frame is forwarded as usual
// (subject to Isolate).
//
// Proto and the port ranges match IPv4 packets only (not ARP, not IPv6): a
// rule with any of them set never matches another frame. Src and Dst are
// IPv4 prefixes, matching IPv4 packets only, or IPv6 prefixes (both of one
// family), matching IPv6 packets only, without Proto or port ranges. A port
// range matches TCP and UDP only (Proto 0 with a port range means either).
// IPv4 fields of a fragment other than the first are matched, its ports
// are not (a rule with a port range does not match it).
type Rule struct {
	ID      int    // set by the caller; unique and positive; rules are evaluated in ID order
	Port    string // frames entering OR leaving this port; "" any
	SrcPort string // frames entering from this port; "" any
	DstPort string // frames leaving to this port; "" any
	VLAN    uint16 // the frame's VLAN (after classification); 0 any

	SrcMAC, DstMAC fdb.MAC // zero: any

	EtherType uint16 // 0 any; the EtherType after VLAN tags

	Src, Dst netip.Prefix // IPv4 or IPv6; the zero (invalid) Prefix: any

	Proto uint8 // IP protocol, 0 any

	SPortLo, SPortHi uint16 // TCP/UDP source port range; 0/0 any; Lo alone: exactly Lo
	DPortLo, DPortHi uint16 // TCP/UDP destination port range; 0/0 any; Lo alone: exactly Lo

	Action   Action
	MirrorTo string // the port ActionMirror copies to
}

// RuleStats is a rule with the frames and bytes (Ethernet, without the
// virtio_net_hdr) it has matched since it was first set.
type RuleStats struct {
	Rule
	Packets, Bytes uint64
}

// normalize checks r and returns the form the switch keeps (a port range
// given by its low end only becomes Lo-Lo; prefixes masked).
func (r Rule) normalize() (Rule, error) {
	bad := func(format string, args ...any) (Rule, error) {
		return Rule{}, fmt.Errorf("%w: rule %d: %s", ErrInvalidRule, r.ID, fmt.Sprintf(format, args...))
	}
	if r.ID <= 0 {
		return bad("id must be positive")
	}
	if r.Action < ActionAllow || r.Action > ActionMirror {
		return bad("unknown action %d", uint8(r.Action))
	}
	if (r.Action == ActionMirror) != (r.MirrorTo != "") {
		return bad("mirror-to goes with the mirror action, and only with it")
	}
	if r.VLAN > maxVLAN {
		return bad("vlan %d out of range 1-%d", r.VLAN, maxVLAN)
	}
	for _, p := range []*netip.Prefix{&r.Src, &r.Dst} {
		if !p.IsValid() {
			*p = netip.Prefix{}
			continue
		}
		if p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return bad("prefix %s: a zone or an IPv4-mapped address", *p)
		}
		*p = p.Masked()
	}
	v6 := r.Src.Addr().Is6() || r.Dst.Addr().Is6()
	if v6 && (r.Src.Addr().Is4() || r.Dst.Addr().Is4()) {
		return bad("prefixes %s and %s are of different families", r.Src, r.Dst)
	}
	for _, pr := range [][2]*uint16{{&r.SPortLo, &r.SPortHi}, {&r.DPortLo, &r.DPortHi}} {
		lo, hi := pr[0], pr[1]
		if *hi == 0 {
			*hi = *lo
		}
		if *lo > *hi {
			return bad("port range %d-%d is empty", *lo, *hi)
		}
		if *lo == 0 && *hi != 0 {
			*lo = 1 // 0 is not a port a rule can name: 0-N is 1-N
		}
	}
	ports := r.SPortHi != 0 || r.DPortHi != 0
	if ports && r.Proto != 0 && r.Proto != wire.ProtoTCP && r.Proto != wire.ProtoUDP {
		return bad("port ranges need protocol tcp or udp, not %d", r.Proto)
	}
	if v6 && (ports || r.Proto != 0) {
		return bad("protocol and ports match IPv4 only, not with IPv6 prefixes")
	}
	if v6 && r.EtherType != 0 && r.EtherType != wire.EtherTypeIPv6 {
		return bad("ipv6 prefixes with ethertype %#04x never match", r.EtherType)
	}
	ip := !v6 && (ports || r.Proto != 0 || r.Src.IsValid() || r.Dst.IsValid())
	if ip && r.EtherType != 0 && r.EtherType != wire.EtherTypeIPv4 {
		return bad("ip fields with ethertype %#04x never match", r.EtherType)
	}
	return r, nil
}

// ruleCounters are one rule's counters, kept across SetRules for as long as
// its ID stays. They are sharded by ingress port so that ports hitting the
// same rule on different cores do not write the same cache line; Rules
// sums the shards.
type ruleCounters struct {
	shard [counterShards]struct {
		packets, bytes atomic.Uint64
		_              [cacheLine - 16]byte
	}
}

// cacheLine is the size the counter shards are padded to.
const cacheLine = 64

// counterShards is the number of shards of a shared counter (a power of
// two); port IDs are spread over them.
const counterShards = 8

func (c *ruleCounters) add(in fdb.PortID, bytes int) {
	sh := &c.shard[in&(counterShards-1)]
	sh.packets.Add(1)
	sh.bytes.Add(uint64(bytes))
}

func (c *ruleCounters) sum() (packets, bytes uint64) {
	for i := range c.shard {
		packets += c.shard[i].packets.Load()
		bytes += c.shard[i].bytes.Load()
	}
	return packets, bytes
}

// ruleSet is an immutable set of rules in ID order with their counters.
type ruleSet struct {
	rules    []Rule
	counters []*ruleCounters // counters[i] counts rules[i]
}

// SetRules replaces the whole rule set. It checks every rule (an error
// wraps ErrInvalidRule and leaves the rules in use unchanged), then swaps
// the rule set the datapath reads in one atomic store: a frame is matched
// against the old set or the new one, never a mix, and no frame waits.
// Counters of rule IDs present before and after are kept.
func (s *Switch) SetRules(rules []Rule) error {
	rs := &ruleSet{rules: make([]Rule, 0, len(rules)), counters: make([]*ruleCounters, 0, len(rules))}
	for _, r := range rules {
		n, err := r.normalize()
		if err != nil {
			return err
		}
		rs.rules = append(rs.rules, n)
	}
	slices.SortFunc(rs.rules, func(a, b Rule) int { return a.ID - b.ID })
	for i := 1; i < len(rs.rules); i++ {
		if rs.rules[i].ID == rs.rules[i-1].ID {
			return fmt.Errorf("%w: rule id %d used twice", ErrInvalidRule, rs.rules[i].ID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.rules
	for _, r := range rs.rules {
		c := (*ruleCounters)(nil)
		if j, ok := slices.BinarySearchFunc(old.rules, r.ID, func(o Rule, id int) int { return o.ID - id }); ok {
			c = old.counters[j]
		} else {
			c = new(ruleCounters)
		}
		rs.counters = append(rs.counters, c)
	}
	s.rules = rs
	s.publishLocked()
	return nil
}

// Rules returns the rules in use, in ID order, with their counters.
func (s *Switch) Rules() []RuleStats {
	s.mu.Lock()
	rs := s.rules
	s.mu.Unlock()
	out := make([]RuleStats, len(rs.rules))
	for i, r := range rs.rules {
		out[i].Rule = r
		out[i].Packets, out[i].Bytes = rs.counters[i].sum()
	}
	return out
}
