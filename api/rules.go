package api

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// Rule and pipeline endpoints:
//
//	GET    /v1/rules        []RuleStats, in ID order (the order they are evaluated in)
//	POST   /v1/rules        Rule (ID left 0) -> RuleStats (201), with its new ID
//	DELETE /v1/rules/{id}   204
//	GET    /v1/pipeline     Pipeline
//
// Rules are kept in the daemon's state file, so a restart keeps them.

// Rule is an ACL rule of the switch. Every field left at its zero value
// matches anything; the others must all match. allow and drop are terminal
// (the first such rule in ID order decides); count and mirror count or copy
// the frame and go on. An allow rule naming a pair of ports overrides
// isolation (run --icc=false). Port names are those of `tapswitch ports`
// ("gateway" included); a rule may name a port that is not attached yet: it
// matches nothing until one of that name is.
type Rule struct {
	// ID is given by the daemon: increasing, never reused within a state
	// file. Leave it 0 when adding a rule.
	ID      int    `json:"id,omitempty"`
	Port    string `json:"port,omitempty"`     // frames entering or leaving this port
	SrcPort string `json:"src_port,omitempty"` // frames entering from this port
	DstPort string `json:"dst_port,omitempty"` // frames leaving to this port
	VLAN    uint16 `json:"vlan,omitempty"`
	SrcMAC  string `json:"src_mac,omitempty"`
	DstMAC  string `json:"dst_mac,omitempty"`
	// EtherType is matched after any VLAN tag, e.g. 0x0800 for IPv4.
	EtherType uint16 `json:"ethertype,omitempty"`
	// Src and Dst are IPv4 prefixes ("10.90.0.0/24"), matching IPv4
	// packets only, or IPv6 ones ("fd42:1::/64"), matching IPv6 packets
	// only; both of one family.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// Proto is the IP protocol number (6 tcp, 17 udp, 1 icmp).
	Proto uint8 `json:"proto,omitempty"`
	// SPortLo..SPortHi and DPortLo..DPortHi are TCP or UDP port ranges
	// (Proto must be tcp or udp); 0 and 0 match any port.
	SPortLo uint16 `json:"sport_lo,omitempty"`
	SPortHi uint16 `json:"sport_hi,omitempty"`
	DPortLo uint16 `json:"dport_lo,omitempty"`
	DPortHi uint16 `json:"dport_hi,omitempty"`
	// Action is "allow", "drop", "count" or "mirror".
	Action string `json:"action"`
	// MirrorTo is the port a mirror rule copies frames to.
	MirrorTo string `json:"mirror_to,omitempty"`
}

// RuleStats is a rule with its counters, as `tapswitch rule list` shows it.
type RuleStats struct {
	Rule
	Packets uint64 `json:"packets"` // frames the rule matched
	Bytes   uint64 `json:"bytes"`
	// Missing names the ports the rule refers to that are not attached
	// now: the rule matches nothing that needs them until they are.
	Missing []string `json:"missing_ports,omitempty"`
}

// Pipeline is the switch's forwarding pipeline, as `tapswitch pipeline`
// shows it.
type Pipeline struct {
	Mode    string  `json:"mode"`    // "learning" or "hub"
	Isolate bool    `json:"isolate"` // run --icc=false
	Stages  []Stage `json:"stages"`  // in the order a frame walks them
}

// Stage is one stage of the pipeline with its counters.
type Stage struct {
	Name  string `json:"name"`
	Doc   string `json:"doc,omitempty"`
	Hits  uint64 `json:"hits"`  // frames the stage saw
	Drops uint64 `json:"drops"` // frames it dropped
}

// IP protocol numbers with names (package wire's).
const (
	ProtoICMP = wire.ProtoICMP
	ProtoTCP  = wire.ProtoTCP
	ProtoUDP  = wire.ProtoUDP
)

// EtherTypes with names (package wire's).
const (
	EtherTypeIPv4 = wire.EtherTypeIPv4
	EtherTypeARP  = wire.EtherTypeARP
	EtherTypeIPv6 = wire.EtherTypeIPv6
)

// Actions of a rule.
var actions = []string{"allow", "drop", "count", "mirror"}

// named is the name of a protocol number or an EtherType.
type named[T comparable] struct {
	v    T
	name string
}

// protoNames and etherTypeNames are the names that ParseProto,
// ParseEtherType, ProtoName and EtherTypeName know; the first name of a
// value is the one printed.
var (
	protoNames     = []named[uint8]{{ProtoTCP, "tcp"}, {ProtoUDP, "udp"}, {ProtoICMP, "icmp"}}
	etherTypeNames = []named[uint16]{{EtherTypeIPv4, "ipv4"}, {EtherTypeIPv4, "ip"}, {EtherTypeARP, "arp"}, {EtherTypeIPv6, "ipv6"}}
)

// byName finds the value called s (any case) in names.
func byName[T comparable](names []named[T], s string) (T, bool) {
	for _, n := range names {
		if strings.EqualFold(n.name, s) {
			return n.v, true
		}
	}
	var zero T
	return zero, false
}

// nameOf finds the name of v in names.
func nameOf[T comparable](names []named[T], v T) (string, bool) {
	for _, n := range names {
		if n.v == v {
			return n.name, true
		}
	}
	return "", false
}

// ParseProto reads an IP protocol: tcp, udp, icmp or a number 1..255.
func ParseProto(s string) (uint8, error) {
	if p, ok := byName(protoNames, s); ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("protocol %q: tcp, udp, icmp or a number from 1 to 255 expected", s)
	}
	return uint8(n), nil
}

// ProtoName is the name of an IP protocol number, or the number.
func ProtoName(p uint8) string {
	if s, ok := nameOf(protoNames, p); ok {
		return s
	}
	return strconv.Itoa(int(p))
}

// ParseEtherType reads an EtherType: ipv4, arp, ipv6, or a number such as
// 0x88cc (at least 0x0600: smaller values are 802.3 lengths).
func ParseEtherType(s string) (uint16, error) {
	if t, ok := byName(etherTypeNames, s); ok {
		return t, nil
	}
	n, err := strconv.ParseUint(s, 0, 16)
	if err != nil || n < 0x0600 {
		return 0, fmt.Errorf("ethertype %q: ipv4, arp, ipv6 or a number from 0x0600 to 0xffff expected", s)
	}
	return uint16(n), nil
}

// EtherTypeName is the name of an EtherType, or its number in hex.
func EtherTypeName(t uint16) string {
	if s, ok := nameOf(etherTypeNames, t); ok {
		return s
	}
	return fmt.Sprintf("0x%04x", t)
}

// ParsePortRange reads a TCP or UDP port or range: "22" or "8000-8100".
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(a, 10, 16)
	h, err2 := l, error(nil)
	if isRange {
		h, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil || l == 0 || h == 0 {
		return 0, 0, fmt.Errorf("port %q: a port from 1 to 65535, or a range such as 8000-8100, expected", s)
	}
	if l > h {
		return 0, 0, fmt.Errorf("port range %q: the first port is above the last", s)
	}
	return uint16(l), uint16(h), nil
}

// ParsePrefix reads an IPv4 or IPv6 prefix for a rule; a bare address
// means /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%q: not an address or prefix such as 10.90.0.0/24 or fd42:1::/64", s)
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q: an IPv4 or IPv6 prefix without zone or IPv4-mapped address expected", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// ValidVLAN checks a VLAN ID: 1 to 4094 (0 and 4095 are reserved by
// IEEE 802.1Q).
func ValidVLAN(v int) error {
	if v < 1 || v > 4094 {
		return fmt.Errorf("VLAN %d: must be from 1 to 4094", v)
	}
	return nil
}

// Validate checks r's fields and their combinations and returns the first
// problem as one line. It needs no daemon: the CLI checks a rule with it
// before sending it, the daemon again when it gets it (from a client or
// the state file); it is the one check of a rule given by a user. It is
// stricter than the switch's (vswitch.Rule) on purpose in one place: a
// port range needs --proto tcp or udp, where the switch reads protocol 0
// with ports as "TCP or UDP", so that a rule says what it matches.
func (r Rule) Validate() error {
	switch {
	case r.Action == "mirror" && r.MirrorTo == "":
		return fmt.Errorf("mirror needs the port to copy frames to: mirror PORT")
	case r.Action != "mirror" && r.MirrorTo != "":
		return fmt.Errorf("only a mirror rule has a port to copy to (action %q)", r.Action)
	}
	ok := false
	for _, a := range actions {
		ok = ok || r.Action == a
	}
	if !ok {
		return fmt.Errorf("action %q: allow, drop, count or mirror PORT expected", r.Action)
	}
	if r.VLAN != 0 {
		if err := ValidVLAN(int(r.VLAN)); err != nil {
			return err
		}
	}
	for _, m := range []struct{ flag, v string }{{"src-mac", r.SrcMAC}, {"dst-mac", r.DstMAC}} {
		if m.v == "" {
			continue
		}
		if _, err := fdb.ParseMAC(m.v); err != nil {
			return fmt.Errorf("--%s %q: not a MAC address such as 02:42:0a:5a:00:02", m.flag, m.v)
		}
	}
	if r.EtherType != 0 && r.EtherType < 0x0600 {
		return fmt.Errorf("ethertype 0x%04x: must be at least 0x0600", r.EtherType)
	}
	for _, p := range []struct{ flag, v string }{{"src", r.Src}, {"dst", r.Dst}} {
		if p.v == "" {
			continue
		}
		if _, err := ParsePrefix(p.v); err != nil {
			return fmt.Errorf("--%s %v", p.flag, err)
		}
	}
	v6, err := r.ipv6()
	if err != nil {
		return err
	}
	if v6 {
		if r.Proto != 0 || r.SPortLo != 0 || r.SPortHi != 0 || r.DPortLo != 0 || r.DPortHi != 0 {
			return fmt.Errorf("--proto and ports match IPv4 packets only, not with IPv6 prefixes")
		}
		if r.EtherType != 0 && r.EtherType != EtherTypeIPv6 {
			return fmt.Errorf("IPv6 --src and --dst match IPv6 packets only, not ethertype %s", EtherTypeName(r.EtherType))
		}
	}
	ipOnly := !v6 && (r.Src != "" || r.Dst != "" || r.Proto != 0)
	if ipOnly && r.EtherType != 0 && r.EtherType != EtherTypeIPv4 {
		return fmt.Errorf("--src, --dst and --proto match IPv4 packets only, not ethertype %s", EtherTypeName(r.EtherType))
	}
	for _, pr := range []struct {
		flag   string
		lo, hi uint16
	}{{"sport", r.SPortLo, r.SPortHi}, {"dport", r.DPortLo, r.DPortHi}} {
		if pr.lo == 0 && pr.hi == 0 {
			continue
		}
		if r.Proto != ProtoTCP && r.Proto != ProtoUDP {
			if r.Proto == 0 {
				return fmt.Errorf("--%s needs --proto tcp or --proto udp", pr.flag)
			}
			return fmt.Errorf("--%s needs --proto tcp or udp, not %s", pr.flag, ProtoName(r.Proto))
		}
		if pr.lo == 0 || pr.lo > pr.hi {
			return fmt.Errorf("--%s %d-%d: not a port range from 1 to 65535", pr.flag, pr.lo, pr.hi)
		}
	}
	return nil
}

// Match describes what r matches, as `tapswitch rule list` prints it:
// "port=a proto=tcp dport=22", or "any".
func (r Rule) Match() string {
	var f []string
	add := func(k, v string) {
		if v != "" {
			f = append(f, k+"="+v)
		}
	}
	add("port", r.Port)
	add("src-port", r.SrcPort)
	add("dst-port", r.DstPort)
	if r.VLAN != 0 {
		add("vlan", strconv.Itoa(int(r.VLAN)))
	}
	add("src-mac", r.SrcMAC)
	add("dst-mac", r.DstMAC)
	if r.EtherType != 0 {
		add("ethertype", EtherTypeName(r.EtherType))
	}
	add("src", r.Src)
	add("dst", r.Dst)
	if r.Proto != 0 {
		add("proto", ProtoName(r.Proto))
	}
	add("sport", portRange(r.SPortLo, r.SPortHi))
	add("dport", portRange(r.DPortLo, r.DPortHi))
	if len(f) == 0 {
		return "any"
	}
	return strings.Join(f, " ")
}

func portRange(lo, hi uint16) string {
	switch {
	case lo == 0 && hi == 0:
		return ""
	case lo == hi:
		return strconv.Itoa(int(lo))
	}
	return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
}

// Rules lists the ACL rules with their counters, in ID order.
func (c *Client) Rules(ctx context.Context) ([]RuleStats, error) {
	return call[[]RuleStats](ctx, c, http.MethodGet, "/v1/rules", nil)
}

// AddRule adds a rule and returns it with its ID.
func (c *Client) AddRule(ctx context.Context, r Rule) (RuleStats, error) {
	return call[RuleStats](ctx, c, http.MethodPost, "/v1/rules", r)
}

// DeleteRule removes the rule with the given ID.
func (c *Client) DeleteRule(ctx context.Context, id int) error {
	return c.do(ctx, http.MethodDelete, "/v1/rules/"+strconv.Itoa(id), nil, nil)
}

// Pipeline returns the switch's pipeline with its counters.
func (c *Client) Pipeline(ctx context.Context) (Pipeline, error) {
	return call[Pipeline](ctx, c, http.MethodGet, "/v1/pipeline", nil)
}

// ipv6 reports whether r's prefixes are IPv6 ones, and refuses a rule
// that mixes the families. The prefixes have been checked.
func (r Rule) ipv6() (bool, error) {
	var v4, v6 bool
	for _, s := range []string{r.Src, r.Dst} {
		if s == "" {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return false, err
		}
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
	}
	if v4 && v6 {
		return false, fmt.Errorf("--src and --dst must be of one family: %s and %s", r.Src, r.Dst)
	}
	return v6, nil
}
