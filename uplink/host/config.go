package host

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tapswitch/tapswitch/internal/options"
	"github.com/tapswitch/tapswitch/uplink"
)

// Defaults of Config.
var (
	// DefaultAddr is the uplink's address (NAT's external address): RFC
	// 7600's IPv4 dummy address, 192.0.0.8, which never appears on a wire.
	DefaultAddr = netip.MustParseAddr("192.0.0.8")
	// DefaultLoopback stands for the host's loopback: clients on
	// 127.0.0.0/8 of published ports appear with it as their address,
	// and with HostLoopback connections to it reach 127.0.0.1. It is the
	// first address of RFC 7335's IPv4 Service Continuity Prefix, which
	// containers do not use.
	DefaultLoopback = netip.MustParseAddr("192.0.0.1")
)

// Other defaults.
const (
	DefaultMTU         = 1500
	DefaultDialTimeout = 10 * time.Second
	DefaultUDPTimeout  = 120 * time.Second
	DefaultICMPTimeout = 60 * time.Second
	DefaultMaxUDP      = 4096
	DefaultMaxICMP     = 1024
	// DefaultMaxTCP bounds the spliced TCP connections (two sockets each).
	DefaultMaxTCP = 16384
)

// ErrInvalidSpec is returned (wrapped, with the reason) by ParseSpec and
// Config.Validate: uplink.ErrInvalidSpec.
var ErrInvalidSpec = uplink.ErrInvalidSpec

// Config configures a host uplink.
type Config struct {
	// Addr is the uplink's own address, NAT's external address; zero
	// means DefaultAddr. It must be outside the containers' subnet.
	Addr netip.Addr
	// Loopback stands for the host's loopback (see the package doc); zero
	// means DefaultLoopback.
	Loopback netip.Addr
	// Loopback6 stands for the host's ::1 as Loopback does for
	// 127.0.0.1; zero means Loopback in RFC 6052's well-known prefix
	// (64:ff9b::c000:1 for 192.0.0.1): the IPv6 form of the same
	// stand-in, outside any container's /64.
	Loopback6 netip.Addr
	// MTU is the largest datagram handed back to the gateway; zero means
	// DefaultMTU.
	MTU int
	// HostLoopback lets containers reach the host's 127.0.0.1 through
	// Loopback.
	HostLoopback bool
	// NoSplice turns off the splice path of published ports' clients on
	// the host's loopback (SetLocalDialer, `splice=off`): they go through
	// the netstack and appear as Loopback.
	NoSplice bool
	// DialTimeout bounds a host connect; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// UDPTimeout and ICMPTimeout are how long an idle socket lives; zero
	// means the defaults (NAT's).
	UDPTimeout, ICMPTimeout time.Duration
	// MaxTCP, MaxUDP and MaxICMP bound the connections and sockets; zero
	// means the defaults. Past them, new flows are dropped and counted.
	MaxTCP, MaxUDP, MaxICMP int
	// Logger logs the uplink's rare events; nil means slog.Default().
	Logger *slog.Logger
}

// ParseSpec parses the value of `tapswitch run --uplink` for this kind:
//
//	host[,addr=ADDR][,loopback=ADDR][,loopback6=ADDR6][,mtu=N][,splice=on|off]
//
// Errors wrap ErrInvalidSpec and say which key is wrong.
func ParseSpec(spec string) (*Config, error) {
	if kind, _, _ := strings.Cut(strings.TrimSpace(spec), ","); kind != Name {
		return nil, fmt.Errorf("%w: %q: not a host uplink", ErrInvalidSpec, spec)
	}
	s, err := uplink.Parse(spec) // this kind's parse
	c, _ := s.(*Config)
	return c, err
}

// parse parses and validates the KEY=VALUE options of a host spec.
var parse = uplink.ParseFields(fields)

// fields are the keys of a host spec, read into c.
func fields(c *Config) []options.Field {
	return []options.Field{
		{Key: "addr", Set: options.Addr(&c.Addr)},
		{Key: "loopback", Set: options.Addr(&c.Loopback)},
		{Key: "loopback6", Set: options.Addr(&c.Loopback6)},
		{Key: "mtu", Set: options.Int(&c.MTU)},
		{Key: "splice", Set: options.Off(&c.NoSplice)},
	}
}

// Validate checks c without I/O and fills in its defaults. Errors wrap
// ErrInvalidSpec.
func (c *Config) Validate() error {
	if !c.Addr.IsValid() {
		c.Addr = DefaultAddr
	}
	if !c.Loopback.IsValid() {
		c.Loopback = DefaultLoopback
	}
	for _, a := range []struct {
		key string
		ip  netip.Addr
	}{{"addr", c.Addr}, {"loopback", c.Loopback}} {
		if !a.ip.Is4() {
			return fmt.Errorf("%w: %s=%s: only IPv4 is supported", ErrInvalidSpec, a.key, a.ip)
		}
		if !hostAddr(a.ip.As4()) {
			return fmt.Errorf("%w: %s=%s: not a unicast host address (and not loopback)", ErrInvalidSpec, a.key, a.ip)
		}
	}
	if c.Addr == c.Loopback {
		return fmt.Errorf("%w: addr and loopback are both %s", ErrInvalidSpec, c.Addr)
	}
	if !c.Loopback6.IsValid() {
		c.Loopback6 = nat64(c.Loopback)
	}
	if a := c.Loopback6; !a.Is6() || a.Is4In6() || !hostAddr6(a.As16()) || a.Zone() != "" {
		return fmt.Errorf("%w: loopback6=%s: not a unicast IPv6 address (nor loopback, link-local or IPv4-mapped)", ErrInvalidSpec, a)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("%w: mtu=%d: must be between 576 and 65535", ErrInvalidSpec, c.MTU)
	}
	defaultIfUnset(&c.DialTimeout, DefaultDialTimeout)
	defaultIfUnset(&c.UDPTimeout, DefaultUDPTimeout)
	defaultIfUnset(&c.ICMPTimeout, DefaultICMPTimeout)
	defaultIfUnset(&c.MaxTCP, DefaultMaxTCP)
	defaultIfUnset(&c.MaxUDP, DefaultMaxUDP)
	defaultIfUnset(&c.MaxICMP, DefaultMaxICMP)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// String returns c in the syntax of ParseSpec.
func (c *Config) String() string {
	s := "host,addr=" + c.Addr.String() + ",loopback=" + c.Loopback.String() + ",loopback6=" + c.Loopback6.String() + ",mtu=" + strconv.Itoa(c.MTU)
	if c.NoSplice {
		s += ",splice=off"
	}
	if c.HostLoopback {
		s += " (host-loopback)"
	}
	return s
}

// hostAddr reports whether ip can be one host's address: not 0.0.0.0/8,
// loopback, multicast or class E.
func hostAddr(ip [4]byte) bool {
	return ip[0] != 0 && ip[0] != 127 && ip[0] < 224
}

// hostAddr6 reports whether a can be one host's IPv6 address: not
// unspecified, loopback, multicast or link-local.
func hostAddr6(a [16]byte) bool {
	ip := netip.AddrFrom16(a)
	return !ip.IsUnspecified() && !ip.IsLoopback() && !ip.IsMulticast() && !ip.IsLinkLocalUnicast() && !ip.Is4In6()
}

// nat64 returns a in RFC 6052's well-known prefix, 64:ff9b::/96.
func nat64(a netip.Addr) netip.Addr {
	b := [16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b}
	v4 := a.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

// defaultIfUnset sets *v to def when it is zero or negative.
func defaultIfUnset[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
