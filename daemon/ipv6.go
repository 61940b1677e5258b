package daemon

import (
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/switch/tap"
)

// Subnet6Bits is the prefix length of Config.Subnet6: a /64, the one length
// SLAAC, ND and RAs work with (RFC 4291 2.5.1, RFC 7421).
const Subnet6Bits = 64

// fill6 validates the IPv6 part of c.
func (c *Config) fill6() error {
	if !c.IPv6 {
		if c.Subnet6.IsValid() {
			return invalid("--subnet6 %s needs --ipv6", c.Subnet6)
		}
		return nil
	}
	if !c.Subnet6.IsValid() {
		return nil // chosen by New (setup6)
	}
	p := c.Subnet6
	switch a := p.Addr(); {
	case !a.Is6() || a.Is4In6():
		return invalid("--subnet6 %s: not an IPv6 prefix", p)
	case p.Bits() != Subnet6Bits:
		return invalid("--subnet6 %s: must be a /64", p)
	case a != p.Masked().Addr():
		return invalid("--subnet6 %s has host bits set (did you mean %s?)", p, p.Masked())
	case a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLoopback() || a.IsUnspecified():
		return invalid("--subnet6 %s: not a unicast prefix (global or unique local)", p)
	}
	return nil
}

// NewULA returns a unique local /64 (RFC 4193 3.2): fd00::/8, a random
// 40-bit Global ID and subnet ID 0.
func NewULA() (netip.Prefix, error) {
	var a [16]byte
	a[0] = 0xfd
	if _, err := rand.Read(a[1:6]); err != nil {
		return netip.Prefix{}, fmt.Errorf("random global id: %w", err)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), Subnet6Bits), nil
}

// gateway6 returns the gateway's IPv6 address in p: PREFIX::1.
func gateway6(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// setup6 chooses the IPv6 subnet (Config.Subnet6, the state file's, or a
// new ULA written to the state file) and configures the gateway for it.
func (d *Daemon) setup6(g *gateway.Config) error {
	if !d.cfg.IPv6 {
		return nil
	}
	if !d.cfg.Subnet6.IsValid() {
		var st state
		if d.cfg.StatePath != "" {
			var err error
			if st, err = loadState(d.cfg.StatePath); err != nil {
				return err
			}
		}
		if st.Subnet6 != "" {
			p, err := netip.ParsePrefix(st.Subnet6)
			if err != nil {
				return fmt.Errorf("state file %s: subnet6 %q: %w", d.cfg.StatePath, st.Subnet6, err)
			}
			d.cfg.Subnet6 = p
			if err := d.cfg.fill6(); err != nil {
				return fmt.Errorf("state file %s: %w", d.cfg.StatePath, err)
			}
		} else {
			p, err := NewULA()
			if err != nil {
				return err
			}
			d.cfg.Subnet6 = p
			st.Subnet6 = p.String()
			if d.cfg.StatePath != "" {
				if err := st.save(d.cfg.StatePath); err != nil {
					return err
				}
			}
		}
		d.subnet6State = d.cfg.Subnet6.String()
	}
	g.Addr6 = netip.PrefixFrom(gateway6(d.cfg.Subnet6), Subnet6Bits)
	g.NoRA = d.cfg.NoRA
	d.log.Info("ipv6", "subnet6", d.cfg.Subnet6, "gateway6", g.Addr6.Addr(), "ra", !d.cfg.NoRA)
	return nil
}

// parseIP6 checks the --ip6 of an attach request.
func (d *Daemon) parseIP6(a *attachment, s string) error {
	if s == "" {
		return nil
	}
	if !d.cfg.IPv6 {
		return invalid("ip6 %s: the daemon runs without --ipv6", s)
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
		return invalid("ip6 %q: not an IPv6 address", s)
	}
	if !d.cfg.Subnet6.Contains(ip) {
		return invalid("ip6 %s: outside the subnet %s", ip, d.cfg.Subnet6)
	}
	if ip == d.cfg.Subnet6.Addr() {
		return invalid("ip6 %s: the subnet-router anycast address of %s", ip, d.cfg.Subnet6)
	}
	if ip == gateway6(d.cfg.Subnet6) {
		return conflict("ip6 %s is the gateway's address", ip)
	}
	a.ip6 = ip
	return nil
}

// reserve6Locked checks a's IPv6 address against the attached ports, or
// picks the lowest free one from ::2 up. d.mu is held.
func (d *Daemon) reserve6Locked(a *attachment) error {
	if !d.cfg.IPv6 {
		return nil
	}
	used := make(map[netip.Addr]string, len(d.ports))
	for _, p := range d.ports {
		if p.ip6.IsValid() {
			used[p.ip6] = p.name
		}
	}
	if a.ip6.IsValid() {
		if owner, ok := used[a.ip6]; ok {
			return conflict("ip6 %s is taken by port %s", a.ip6, owner)
		}
		return nil
	}
	for ip := gateway6(d.cfg.Subnet6).Next(); d.cfg.Subnet6.Contains(ip); ip = ip.Next() {
		if _, ok := used[ip]; !ok {
			a.ip6 = ip
			return nil
		}
	}
	return conflict("no free address left in %s", d.cfg.Subnet6)
}

// tapConfig6 sets the IPv6 part of a's TAP: its address and default route,
// or, on an IPv4-only network, IPv6 disabled.
func (d *Daemon) tapConfig6(a *attachment, cfg *tap.Config) {
	if !d.cfg.IPv6 {
		cfg.DisableIPv6 = true
		return
	}
	cfg.Addr6 = netip.PrefixFrom(a.ip6, Subnet6Bits)
	cfg.Gateway6 = gateway6(d.cfg.Subnet6)
}
