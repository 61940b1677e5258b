package main

import (
	"flag"
	"net/netip"

	"github.com/tapswitch/tapswitch/daemon"
)

// ipv6Flags are the IPv6 flags of `tapswitch run`.
type ipv6Flags struct {
	on      bool
	subnet6 string
	ra      bool
}

func (f *ipv6Flags) add(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "ipv6", false, "dual-stack: give containers an IPv6 address too (without it, attach disables IPv6 on their interface)")
	fs.StringVar(&f.subnet6, "subnet6", "", "the containers' IPv6 `PREFIX/64` (with --ipv6; default: a unique local /64 with a random Global ID, RFC 4193, kept in the state file)")
	fs.BoolVar(&f.ra, "ra", true, "with --ipv6, the gateway sends router advertisements (RFC 4861); --ra=false: static addresses and routes only")
}

// apply sets the IPv6 part of cfg.
func (f *ipv6Flags) apply(cfg *daemon.Config) error {
	if !f.on {
		if f.subnet6 != "" {
			return usagef("--subnet6 needs --ipv6")
		}
		return nil
	}
	cfg.IPv6, cfg.NoRA = true, !f.ra
	if f.subnet6 != "" {
		p, err := netip.ParsePrefix(f.subnet6)
		if err != nil {
			return usagef("--subnet6 %q: not a prefix such as fd42:1::/64", f.subnet6)
		}
		cfg.Subnet6 = p
	}
	return nil
}
