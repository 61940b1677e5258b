package tap

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// validate6 checks the IPv6 fields of c.
func (c Config) validate6() error {
	p, gw := c.Addr6, c.Gateway6
	if p != (netip.Prefix{}) {
		a := p.Addr()
		switch {
		case c.DisableIPv6:
			return fmt.Errorf("%w: Addr6 %s: set with DisableIPv6", ErrInvalidConfig, p)
		case !p.IsValid() || !a.Is6() || a.Is4In6():
			return fmt.Errorf("%w: Addr6 %s: not an IPv6 prefix", ErrInvalidConfig, p)
		case p.Bits() == 0 || p.Bits() == 128:
			return fmt.Errorf("%w: Addr6 %s: prefix length must be between 1 and 127", ErrInvalidConfig, p)
		case !unicast6(a):
			return fmt.Errorf("%w: Addr6 %s: not a unicast address", ErrInvalidConfig, p)
		case a == p.Masked().Addr():
			return fmt.Errorf("%w: Addr6 %s: the subnet-router anycast address of the prefix", ErrInvalidConfig, p)
		}
	}
	if gw == (netip.Addr{}) {
		return nil
	}
	switch {
	case p == (netip.Prefix{}):
		return fmt.Errorf("%w: Gateway6 %s: set without Addr6", ErrInvalidConfig, gw)
	case !gw.Is6() || gw.Is4In6() || !unicast6(gw):
		return fmt.Errorf("%w: Gateway6 %s: not a unicast IPv6 address", ErrInvalidConfig, gw)
	case !p.Contains(gw):
		return fmt.Errorf("%w: Gateway6 %s: outside Addr6 %s", ErrInvalidConfig, gw, p)
	case gw == p.Addr():
		return fmt.Errorf("%w: Gateway6 %s: equal to Addr6 %s", ErrInvalidConfig, gw, p)
	}
	return nil
}

// unicast6 reports whether the IPv6 address a can be a host's global or
// unique local address.
func unicast6(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && !a.IsLinkLocalUnicast()
}

// setSysctl writes value to /proc/sys/net/PATH in the network namespace
// at netnsPath ("" is the calling thread's own).
func setSysctl(netnsPath, path, value string) error {
	write := func() error {
		return os.WriteFile("/proc/sys/net/"+path, []byte(value), 0)
	}
	if netnsPath == "" {
		return write()
	}
	return netnsutil.Do(netnsPath, write)
}

// configure6 does the IPv6 part of configure, before the link is up:
// disable_ipv6, or the address without DAD.
func (d *Device) configure6(cfg Config, link netlink.Link, target *netlink.Handle, step func(string, error) error) error {
	if cfg.DisableIPv6 {
		return step("disable ipv6", setSysctl(cfg.Netns, "ipv6/conf/"+cfg.Name+"/disable_ipv6", "1"))
	}
	if !cfg.Addr6.IsValid() {
		return nil
	}
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: cfg.Addr6.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Addr6.Bits(), 128)},
		Flags: unix.IFA_F_NODAD,
	}
	return step("add address "+cfg.Addr6.String(), target.AddrAdd(link, a))
}
