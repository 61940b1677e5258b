package tap

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestValidate6(t *testing.T) {
	base := Config{Name: "eth0", MAC: net.HardwareAddr{2, 0x42, 0, 0, 0, 2}, Addr: netip.MustParsePrefix("10.90.0.2/16")}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"address and gateway", func(c *Config) { c.Addr6, c.Gateway6 = p("fd42:1::2/64"), a("fd42:1::1") }, true},
		{"disabled", func(c *Config) { c.DisableIPv6 = true }, true},
		{"address with disabled", func(c *Config) { c.Addr6, c.DisableIPv6 = p("fd42:1::2/64"), true }, false},
		{"ipv4 as Addr6", func(c *Config) { c.Addr6 = p("10.0.0.2/24") }, false},
		{"link-local", func(c *Config) { c.Addr6 = p("fe80::2/64") }, false},
		{"multicast", func(c *Config) { c.Addr6 = p("ff02::2/64") }, false},
		{"/128", func(c *Config) { c.Addr6 = p("fd42:1::2/128") }, false},
		{"subnet-router anycast", func(c *Config) { c.Addr6 = p("fd42:1::/64") }, false},
		{"gateway without address", func(c *Config) { c.Gateway6 = a("fd42:1::1") }, false},
		{"gateway outside", func(c *Config) { c.Addr6, c.Gateway6 = p("fd42:1::2/64"), a("fd42:2::1") }, false},
		{"gateway is the address", func(c *Config) { c.Addr6, c.Gateway6 = p("fd42:1::2/64"), a("fd42:1::2") }, false},
		{"ipv4 gateway", func(c *Config) { c.Addr6, c.Gateway6 = p("fd42:1::2/64"), a("10.90.0.1") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate()
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
