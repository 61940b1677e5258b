package tap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// DefaultMTU is the MTU a Device gets when Config.MTU is 0, the default of
// Docker's bridge network.
const DefaultMTU = 1500

// MinMTU and MaxMTU bound Config.MTU. They are the limits the kernel puts on
// a TAP device (drivers/net/tun.c: MIN_MTU, and MAX_MTU minus the Ethernet
// header, dev->max_mtu = 65535 - ETH_HLEN).
const (
	MinMTU = 68
	MaxMTU = 65535 - 14
)

// MaxGSOSegs bounds Config.GSOMaxSegs: the kernel's GSO_MAX_SEGS.
const MaxGSOSegs = 65535

// ifNameSize is IFNAMSIZ (include/uapi/linux/if.h): an interface name has at
// most ifNameSize-1 bytes.
const ifNameSize = 16

// ErrInvalidConfig is returned (wrapped, with the field and the bad value) by
// Config.Validate, ValidIfName and Create when the configuration is invalid.
// Nothing has been changed on the system when it is returned.
var ErrInvalidConfig = errors.New("invalid tap configuration")

// Config describes a TAP device to create. The zero value is not valid: Name
// and MAC are required.
type Config struct {
	// Netns is the path of a network namespace file (/run/netns/c1,
	// /proc/PID/ns/net). "" means the caller's own namespace: that of the
	// calling thread, so a caller that moved its thread into another
	// namespace must keep it locked (runtime.LockOSThread) during Create.
	Netns string

	// Name is the interface name inside that namespace, e.g. "eth0"; see
	// ValidIfName.
	Name string

	// MAC is the device's Ethernet address: 6 bytes, unicast (not
	// multicast, not all zeros). Required.
	MAC net.HardwareAddr

	// MTU is the device's MTU, MinMTU..MaxMTU; 0 means DefaultMTU.
	MTU int
	// GSOMaxSegs, when not 0, bounds the segments of the super-frames
	// the container's stack sends (the device's gso_max_segs,
	// 1..MaxGSOSegs): a reader that sends each super-frame on in pieces
	// of a fixed number of segments (a VXLAN tunnel, one sendmsg per 44
	// at MTU 1450) gets super-frames it sends whole. 0 leaves the
	// kernel's default (65535, no bound).
	GSOMaxSegs int

	// Addr is an optional IPv4 address with its prefix length, e.g.
	// 10.90.0.2/16. The zero Prefix means no address.
	Addr netip.Prefix

	// Gateway is optional; if set, Addr must be set too, Gateway must be
	// inside Addr's prefix, and a default route via Gateway is added.
	Gateway netip.Addr

	// Addr6 is an optional IPv6 address with its prefix length, e.g.
	// fd42:1::2/64, added without duplicate address detection (the
	// switch hands out unique addresses). The zero Prefix means none.
	Addr6 netip.Prefix

	// Gateway6 is optional; if set, Addr6 must be set too, Gateway6 must
	// be inside Addr6's prefix, and an IPv6 default route via Gateway6 is
	// added.
	Gateway6 netip.Addr

	// DisableIPv6 sets the device's disable_ipv6 sysctl before it is set
	// up, so that it has no IPv6 at all, not even a link-local address
	// (what Docker does on IPv4-only networks). It excludes Addr6.
	DisableIPv6 bool

	// NoOffloads turns checksum and segmentation offloads off: the
	// container's stack then sends ordinary MTU-sized frames with full
	// checksums. By default Create enables what the kernel accepts (see
	// Device.Offloads).
	NoOffloads bool

	// Offloads, when not zero, bounds the offloads Create asks for: the
	// best set of offloadSets the kernel accepts, cut to these. A device
	// whose reader handles only some kinds of super-frames (the routed
	// uplink takes TCP/IPv4 only) sets it. Ignored with NoOffloads.
	Offloads vswitch.Offloads
}

// Validate checks every field of c without any I/O. Each error wraps
// ErrInvalidConfig and names the field and the bad value.
func (c Config) Validate() error {
	if err := ValidIfName(c.Name); err != nil {
		return fmt.Errorf("Name: %w", err)
	}
	if err := validMAC(c.MAC); err != nil {
		return err
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		return fmt.Errorf("%w: MTU %d: out of range %d..%d", ErrInvalidConfig, c.MTU, MinMTU, MaxMTU)
	}
	if c.GSOMaxSegs < 0 || c.GSOMaxSegs > MaxGSOSegs {
		return fmt.Errorf("%w: GSOMaxSegs %d: out of range 0..%d", ErrInvalidConfig, c.GSOMaxSegs, MaxGSOSegs)
	}
	if err := validAddr(c.Addr); err != nil {
		return err
	}
	if err := validGateway(c.Gateway, c.Addr); err != nil {
		return err
	}
	return c.validate6()
}

// ValidIfName returns nil if name is acceptable as a Linux interface name,
// following the kernel's dev_valid_name (net/core/dev.c): 1 to 15 bytes, not
// "." or "..", and no '/', ':', NUL or white space (the kernel's isspace,
// which includes the byte 0xa0), and otherwise an error wrapping
// ErrInvalidConfig.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: interface name is empty", ErrInvalidConfig)
	case len(name) >= ifNameSize:
		return fmt.Errorf("%w: interface name %q: %d bytes, at most %d", ErrInvalidConfig, name, len(name), ifNameSize-1)
	case name == "." || name == "..":
		return fmt.Errorf("%w: interface name %q is reserved", ErrInvalidConfig, name)
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; b {
		case '/', ':', 0, ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
			return fmt.Errorf("%w: interface name %q: byte %q at %d not allowed", ErrInvalidConfig, name, b, i)
		}
	}
	return nil
}

func validMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("%w: MAC %q: %d bytes, want 6", ErrInvalidConfig, mac.String(), len(mac))
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("%w: MAC %s: multicast address", ErrInvalidConfig, mac)
	}
	if mac[0]|mac[1]|mac[2]|mac[3]|mac[4]|mac[5] == 0 {
		return fmt.Errorf("%w: MAC %s: zero address", ErrInvalidConfig, mac)
	}
	return nil
}

func validAddr(p netip.Prefix) error {
	if p == (netip.Prefix{}) {
		return nil
	}
	a := p.Addr()
	switch {
	case !p.IsValid():
		return fmt.Errorf("%w: Addr %s: invalid prefix", ErrInvalidConfig, p)
	case !a.Is4():
		return fmt.Errorf("%w: Addr %s: not IPv4", ErrInvalidConfig, p)
	case p.Bits() == 0:
		return fmt.Errorf("%w: Addr %s: prefix length 0", ErrInvalidConfig, p)
	case !unicast4(a):
		return fmt.Errorf("%w: Addr %s: not a unicast address", ErrInvalidConfig, p)
	case reserved4(p, a):
		return fmt.Errorf("%w: Addr %s: network or broadcast address of the prefix", ErrInvalidConfig, p)
	}
	return nil
}

func validGateway(gw netip.Addr, p netip.Prefix) error {
	if gw == (netip.Addr{}) {
		return nil
	}
	switch {
	case !gw.Is4():
		return fmt.Errorf("%w: Gateway %s: not IPv4", ErrInvalidConfig, gw)
	case p == (netip.Prefix{}):
		return fmt.Errorf("%w: Gateway %s: set without Addr", ErrInvalidConfig, gw)
	case !p.Contains(gw):
		return fmt.Errorf("%w: Gateway %s: outside Addr %s", ErrInvalidConfig, gw, p)
	case gw == p.Addr():
		return fmt.Errorf("%w: Gateway %s: equal to Addr %s", ErrInvalidConfig, gw, p)
	case !unicast4(gw) || reserved4(p, gw):
		return fmt.Errorf("%w: Gateway %s: not a unicast address in %s", ErrInvalidConfig, gw, p)
	}
	return nil
}

// unicast4 reports whether the IPv4 address a can be a host's address.
func unicast4(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// reserved4 reports whether a is the network or the broadcast address of the
// IPv4 prefix p; /31 (RFC 3021) and /32 have neither.
func reserved4(p netip.Prefix, a netip.Addr) bool {
	if p.Bits() >= 31 {
		return false
	}
	net4 := p.Masked().Addr().As4()
	b := net4
	host := ^uint32(0) >> p.Bits()
	for i := range b {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return a == netip.AddrFrom4(net4) || a == netip.AddrFrom4(b)
}
