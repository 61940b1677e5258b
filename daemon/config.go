package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
)

// Config configures a Daemon.
type Config struct {
	Subnet    netip.Prefix  // the containers' subnet; zero means DefaultSubnet
	Gateway   netip.Addr    // the gateway's address; zero means the subnet's first address
	MTU       int           // zero means DefaultMTU
	FDBAgeing time.Duration // zero means fdb.DefaultAgeing
	// FDBMax bounds the MAC table; zero means fdb.DefaultMaxEntries. When
	// it is full, a new MAC evicts from the port holding the most.
	FDBMax int
	Log    *slog.Logger // nil means slog.Default()
	// Uplink is the uplink, of any registered kind (uplink.Parse, or a
	// kind's Config such as *host.Config); nil means none (no NAT, no
	// published ports, outside destinations unreachable).
	Uplink uplink.Spec
	// NAT configures connection tracking (MaxEntries, Timeouts, port
	// range); External and Internal are set from Uplink and Subnet.
	NAT nat.Config
	// AttachHelper makes every attach go through the namespace helper
	// (attach.go), as it does anyway when the daemon has no CAP_NET_ADMIN.
	AttachHelper bool
	// Exe is the tapswitch binary the helper runs; "" means the daemon's
	// own (os.Executable).
	Exe string
	// Mode is the switch's pipeline: learning ("" means it) or hub.
	Mode vswitch.Mode
	// Isolate is Docker's icc=false: containers reach the gateway only,
	// unless an allow rule names a pair of them.
	Isolate bool
	// GatewayVLAN is the VLAN the gateway is on; 0 means vswitch.DefaultVLAN.
	GatewayVLAN uint16
	// IPv6 makes the network dual-stack (ipv6.go): containers get an
	// address in Subnet6 and the gateway answers ND and sends RAs.
	// Without it, attach disables IPv6 on the containers' interfaces.
	IPv6 bool
	// Subnet6 is the containers' IPv6 /64, with IPv6; zero means the
	// one in the state file, or a new unique local one (RFC 4193) kept
	// there.
	Subnet6 netip.Prefix
	// NoRA turns the gateway's router advertisements off (run --ra=false).
	NoRA bool
	// StatePath is the state file, where ACL rules are kept across
	// restarts (see StatePath); "" keeps them in memory only.
	StatePath string
	// VXLAN are the VXLAN tunnels to open (daemon/vxlan.go); with any, a
	// zero MTU means the first tunnel's underlay MTU less the
	// encapsulation.
	VXLAN []api.VXLANSpec
	// VXLANAllow limits the outer sources tunnels accept; empty accepts
	// any.
	VXLANAllow []netip.Prefix
	// IPRange is the part of Subnet this host hands out (Docker's
	// --ip-range), so that hosts joined by VXLAN never pick the same
	// address; zero means the whole subnet.
	IPRange netip.Prefix
	// LiveRestore keeps the containers' TAPs across a crash or an upgrade
	// of the daemon: they are persistent, the attachments are kept in the
	// state file, and Restore adopts them again (restore.go). It needs
	// root (not the namespace helper) and a state file.
	LiveRestore bool
	// DNS is the embedded DNS server on the gateway's address (dns.go);
	// nil means none.
	DNS *DNSConfig
}

// Daemon is a running switch with its gateway and attached containers. Its

// Validate checks c as New does, without I/O and without changing c: the
// one check of the daemon's settings, which the CLI runs to report a
// mistake as a usage error before it starts anything. Errors wrap
// ErrInvalid and name the settings as the flags of `tapswitch run` do.
func (c Config) Validate() error { return c.fill() }

// fill validates c and sets its defaults.
func (c *Config) fill() error {
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.Subnet.Addr().Is4() {
		return invalid("subnet %s: only IPv4 subnets are supported", c.Subnet)
	}
	if c.Subnet.Bits() > 30 {
		return invalid("subnet %s: too small, a /30 at most is needed for a gateway and a container", c.Subnet)
	}
	if c.Subnet.Addr() != c.Subnet.Masked().Addr() {
		return invalid("subnet %s has host bits set (did you mean %s?)", c.Subnet, c.Subnet.Masked())
	}
	if !c.Gateway.IsValid() {
		c.Gateway = c.Subnet.Addr().Next()
	}
	if err := hostAddr(c.Subnet, c.Gateway); err != nil {
		return fmt.Errorf("gateway %s: %w", c.Gateway, err)
	}
	if c.IPRange.IsValid() {
		if !c.IPRange.Addr().Is4() || c.IPRange.Bits() < c.Subnet.Bits() || !c.Subnet.Contains(c.IPRange.Addr()) {
			return invalid("ip range %s: must be an IPv4 prefix inside the subnet %s", c.IPRange, c.Subnet)
		}
		if c.IPRange.Addr() != c.IPRange.Masked().Addr() {
			return invalid("ip range %s has host bits set (did you mean %s?)", c.IPRange, c.IPRange.Masked())
		}
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < tap.MinMTU || c.MTU > tap.MaxMTU {
		return invalid("--mtu %d: must be between %d and %d", c.MTU, tap.MinMTU, tap.MaxMTU)
	}
	if c.FDBMax < 0 {
		return invalid("fdb max %d: must not be negative", c.FDBMax)
	}
	if c.FDBAgeing < 0 {
		return invalid("fdb ageing %s: must not be negative", c.FDBAgeing)
	}
	if c.FDBAgeing == 0 {
		c.FDBAgeing = fdb.DefaultAgeing
	}
	if err := c.fill6(); err != nil {
		return err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	switch c.Mode {
	case "":
		c.Mode = vswitch.ModeLearning
	case vswitch.ModeLearning, vswitch.ModeHub:
	default:
		return invalid("--mode %q: learning or hub", c.Mode)
	}
	if c.GatewayVLAN == 0 {
		c.GatewayVLAN = vswitch.DefaultVLAN
	}
	if err := api.ValidVLAN(int(c.GatewayVLAN)); err != nil {
		return invalid("--gateway-vlan: %v", err)
	}
	return nil
}

// hostAddr checks that a is a usable host address of subnet: inside it, and
// neither its network nor its broadcast address.
func hostAddr(subnet netip.Prefix, a netip.Addr) error {
	if !a.Is4() {
		return invalid("not an IPv4 address")
	}
	if !subnet.Contains(a) {
		return invalid("outside the subnet %s", subnet)
	}
	if a == subnet.Addr() {
		return invalid("the network address of %s", subnet)
	}
	if a == broadcast(subnet) {
		return invalid("the broadcast address of %s", subnet)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkRoutes refuses a subnet that overlaps a route of the current network
// namespace (the default route aside, which overlaps everything): the
// containers could not reach what that route leads to, as Docker refuses a
// bridge network that overlaps a host route.
func checkRoutes(subnet netip.Prefix) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		addr, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		dst := netip.PrefixFrom(addr, ones)
		if dst.Overlaps(subnet) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = " dev " + l.Attrs().Name
			}
			return conflict("subnet %s overlaps the route %s%s of this network namespace; choose another with --subnet", subnet, dst, dev)
		}
	}
	return nil
}

// macFor is the MAC Docker gave a container before 25.0: 02:42 (locally
// administered, unicast) followed by its IPv4 address, so that it is unique
// within the subnet and readable.
func macFor(ip netip.Addr) fdb.MAC {
	a := ip.As4()
	return fdb.MAC{0x02, 0x42, a[0], a[1], a[2], a[3]}
}
