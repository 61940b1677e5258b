package tap

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/tapswitch/tapswitch/internal/options"
	"github.com/tapswitch/tapswitch/uplink"
)

// DefaultIfName is the name of the uplink's interface in its namespace
// unless the spec says otherwise.
const DefaultIfName = "ts0"

// DefaultMTU is the uplink's MTU unless the spec says otherwise.
const DefaultMTU = 1500

// ErrInvalidSpec is returned (wrapped, with the reason) by ParseSpec and
// Config.Validate: uplink.ErrInvalidSpec.
var ErrInvalidSpec = uplink.ErrInvalidSpec

// Config describes a routed TAP uplink.
type Config struct {
	// Netns is the path of the namespace the TAP is created in. Required.
	Netns string
	// IfName is the TAP's name there; "" means DefaultIfName.
	IfName string
	// Addr is the switch's own address on the link, with the link's
	// prefix length, e.g. 198.51.100.2/24. Required.
	Addr netip.Prefix
	// Gateway is the next hop for destinations outside Addr's prefix; the
	// zero Addr means only destinations on the link are reachable.
	Gateway netip.Addr
	// MAC is the switch's MAC on the link; nil means 02:42 followed by
	// the IPv4 address of Addr.
	MAC net.HardwareAddr
	// MTU is the link's MTU; 0 means DefaultMTU.
	MTU int
	// Addr6 is the switch's IPv6 address on the link, with the link's
	// prefix length (ip6=2001:db8:1::2/64): the source of what NAT66
	// masquerades. Zero: no IPv6 on the uplink.
	Addr6 netip.Prefix
	// Gateway6 is the IPv6 next hop for destinations outside Addr6's
	// prefix: an address in the prefix, or a link-local one (what routers
	// advertise). Zero: only the prefix is reachable.
	Gateway6 netip.Addr
}

// ParseSpec parses the value of `tapswitch run --uplink`:
//
//	none
//	tap,netns=PATH,ip=ADDR/LEN[,gw=ADDR][,ip6=ADDR6/LEN][,gw6=ADDR6][,ifname=NAME][,mac=MAC][,mtu=N]
//
// It returns nil for "none" (or ""). Errors wrap ErrInvalidSpec and say
// which key is wrong.
func ParseSpec(spec string) (*Config, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return nil, nil
	}
	parts := strings.Split(spec, ",")
	switch parts[0] {
	case "tap":
	case "host":
		return nil, fmt.Errorf("%w: %q: the host uplink's spec is parsed by package uplink/host", ErrInvalidSpec, spec)
	default:
		return nil, fmt.Errorf("%w: %q: the kind must be host, none or tap (tap,netns=PATH,ip=ADDR/LEN,gw=ADDR)", ErrInvalidSpec, parts[0])
	}
	c, err := parse(parts[1:])
	if err != nil {
		return nil, err
	}
	return c.(*Config), nil
}

// parse parses and validates the KEY=VALUE options of a tap spec.
var parse = uplink.ParseFields(fields)

// fields are the keys of a tap spec, read into c.
func fields(c *Config) []options.Field {
	return []options.Field{
		{Key: "netns", Set: options.String(&c.Netns)},
		{Key: "ifname", Set: options.String(&c.IfName)},
		{Key: "ip", Set: options.Prefix(&c.Addr, "198.51.100.2/24")},
		{Key: "gw", Set: options.Addr(&c.Gateway)},
		{Key: "mac", Set: options.MAC(&c.MAC)},
		{Key: "mtu", Set: options.Int(&c.MTU)},
		{Key: "ip6", Set: options.Prefix(&c.Addr6, "2001:db8:1::2/64")},
		{Key: "gw6", Set: options.Addr(&c.Gateway6)},
	}
}

// Validate checks c without I/O and fills in its defaults. Errors wrap
// ErrInvalidSpec.
func (c *Config) Validate() error {
	if c.Netns == "" {
		return fmt.Errorf("%w: netns=PATH is required (the namespace the uplink's TAP goes into)", ErrInvalidSpec)
	}
	if c.IfName == "" {
		c.IfName = DefaultIfName
	}
	if !c.Addr.IsValid() {
		return fmt.Errorf("%w: ip=ADDR/LEN is required (the switch's address on the link)", ErrInvalidSpec)
	}
	a := c.Addr.Addr()
	switch {
	case !a.Is4():
		return fmt.Errorf("%w: ip=%s: only IPv4 is supported", ErrInvalidSpec, c.Addr)
	case c.Addr.Bits() < 1 || c.Addr.Bits() > 30:
		return fmt.Errorf("%w: ip=%s: the prefix length must be between 1 and 30", ErrInvalidSpec, c.Addr)
	case a == c.Addr.Masked().Addr() || a == lastAddr(c.Addr):
		return fmt.Errorf("%w: ip=%s: the network or broadcast address of the prefix", ErrInvalidSpec, c.Addr)
	case !hostAddr(a.As4()):
		return fmt.Errorf("%w: ip=%s: not a unicast host address", ErrInvalidSpec, c.Addr)
	}
	if c.Gateway.IsValid() {
		g := c.Gateway
		switch {
		case !g.Is4():
			return fmt.Errorf("%w: gw=%s: only IPv4 is supported", ErrInvalidSpec, g)
		case !c.Addr.Contains(g):
			return fmt.Errorf("%w: gw=%s: not on the link %s", ErrInvalidSpec, g, c.Addr.Masked())
		case g == a:
			return fmt.Errorf("%w: gw=%s: the uplink's own address", ErrInvalidSpec, g)
		case g == c.Addr.Masked().Addr() || g == lastAddr(c.Addr):
			return fmt.Errorf("%w: gw=%s: the network or broadcast address of %s", ErrInvalidSpec, g, c.Addr.Masked())
		}
	}
	if c.MAC == nil {
		b := a.As4()
		c.MAC = net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
	}
	if len(c.MAC) != 6 || c.MAC[0]&1 != 0 || [6]byte(c.MAC) == [6]byte{} {
		return fmt.Errorf("%w: mac=%s: not a unicast Ethernet address", ErrInvalidSpec, c.MAC)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535-14 {
		return fmt.Errorf("%w: mtu=%d: must be between 576 and %d", ErrInvalidSpec, c.MTU, 65535-14)
	}
	return c.validate6()
}

// validate6 checks the IPv6 part of c.
func (c *Config) validate6() error {
	if !c.Addr6.IsValid() {
		if c.Gateway6.IsValid() {
			return fmt.Errorf("%w: gw6=%s needs ip6=ADDR/LEN (the switch's IPv6 address on the link)", ErrInvalidSpec, c.Gateway6)
		}
		return nil
	}
	p := c.Addr6
	a := p.Addr()
	switch {
	case !a.Is6() || a.Is4In6() || a.Zone() != "":
		return fmt.Errorf("%w: ip6=%s: not an IPv6 address", ErrInvalidSpec, p)
	case !hostAddr6(a):
		return fmt.Errorf("%w: ip6=%s: not a global or unique local unicast address", ErrInvalidSpec, p)
	case p.Bits() < 1 || p.Bits() > 127:
		return fmt.Errorf("%w: ip6=%s: the prefix length must be between 1 and 127", ErrInvalidSpec, p)
	case a == p.Masked().Addr():
		return fmt.Errorf("%w: ip6=%s: the subnet-router anycast address of the prefix", ErrInvalidSpec, p)
	case c.MTU < 1280:
		return fmt.Errorf("%w: mtu=%d: IPv6 needs at least 1280", ErrInvalidSpec, c.MTU)
	}
	if g := c.Gateway6; g.IsValid() {
		switch {
		case !g.Is6() || g.Is4In6() || g.Zone() != "":
			return fmt.Errorf("%w: gw6=%s: not an IPv6 address", ErrInvalidSpec, g)
		case g == a:
			return fmt.Errorf("%w: gw6=%s: the uplink's own address", ErrInvalidSpec, g)
		case !g.IsLinkLocalUnicast() && !(p.Contains(g) && hostAddr6(g) && g != p.Masked().Addr()):
			return fmt.Errorf("%w: gw6=%s: neither on the link %s nor link-local", ErrInvalidSpec, g, p.Masked())
		}
	}
	return nil
}

// String returns c in the syntax of ParseSpec.
func (c *Config) String() string {
	if c == nil {
		return "none"
	}
	s := fmt.Sprintf("tap,netns=%s,ifname=%s,ip=%s", c.Netns, c.IfName, c.Addr)
	if c.Gateway.IsValid() {
		s += ",gw=" + c.Gateway.String()
	}
	if c.Addr6.IsValid() {
		s += ",ip6=" + c.Addr6.String()
	}
	if c.Gateway6.IsValid() {
		s += ",gw6=" + c.Gateway6.String()
	}
	return s + fmt.Sprintf(",mac=%s,mtu=%d", c.MAC, c.MTU)
}

// lastAddr returns the broadcast address of the IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// hostAddr6 reports whether a can be one host's IPv6 address on a routed
// link: not unspecified, loopback, multicast, link-local or IPv4-mapped.
func hostAddr6(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && !a.IsLinkLocalUnicast() && !a.Is4In6()
}

// hostAddr reports whether ip can be one host's address: not 0.0.0.0/8,
// loopback, multicast or class E.
func hostAddr(ip [4]byte) bool {
	return ip[0] != 0 && ip[0] != 127 && ip[0] < 224
}
