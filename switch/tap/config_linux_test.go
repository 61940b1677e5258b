package tap

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestValidIfName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"e", true},
		{"abcdefghijklmno", true}, // 15 bytes
		{"veth-1.2_x@y", true},
		{"", false},
		{"abcdefghijklmnop", false}, // 16 bytes
		{".", false},
		{"..", false},
		{"...", true},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\vb", false},
		{"a\fb", false},
		{"a\rb", false},
		{"a\x00b", false},
		{"a\xa0b", false}, // the kernel's isspace includes 0xa0
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidIfName(tt.name)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidIfName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("ValidIfName(%q) = %v, want it to wrap ErrInvalidConfig", tt.name, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := Config{
		Netns:   "/run/netns/c1",
		Name:    "eth0",
		MAC:     net.HardwareAddr{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02},
		MTU:     1500,
		Addr:    netip.MustParsePrefix("10.90.0.2/16"),
		Gateway: netip.MustParseAddr("10.90.0.1"),
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"good", func(*Config) {}, ""},
		{"minimal", func(c *Config) { *c = Config{Name: "eth0", MAC: good.MAC} }, ""},
		{"MTU 0 is default", func(c *Config) { c.MTU = 0 }, ""},
		{"MTU min", func(c *Config) { c.MTU = 68 }, ""},
		{"MTU max", func(c *Config) { c.MTU = 65521 }, ""},
		{"MTU too small", func(c *Config) { c.MTU = 67 }, "MTU 67"},
		{"MTU negative", func(c *Config) { c.MTU = -1 }, "MTU -1"},
		{"MTU above TAP max", func(c *Config) { c.MTU = 65522 }, "MTU 65522"},
		{"MTU 65535", func(c *Config) { c.MTU = 65535 }, "MTU 65535"},
		{"GSOMaxSegs 44", func(c *Config) { c.GSOMaxSegs = 44 }, ""},
		{"GSOMaxSegs max", func(c *Config) { c.GSOMaxSegs = 65535 }, ""},
		{"GSOMaxSegs negative", func(c *Config) { c.GSOMaxSegs = -1 }, "GSOMaxSegs -1"},
		{"GSOMaxSegs too large", func(c *Config) { c.GSOMaxSegs = 65536 }, "GSOMaxSegs 65536"},
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"long name", func(c *Config) { c.Name = "abcdefghijklmnop" }, `"abcdefghijklmnop"`},
		{"name with slash", func(c *Config) { c.Name = "a/b" }, `"a/b"`},
		{"no MAC", func(c *Config) { c.MAC = nil }, `MAC ""`},
		{"short MAC", func(c *Config) { c.MAC = net.HardwareAddr{2, 0, 0, 0, 1} }, `MAC "02:00:00:00:01"`},
		{"long MAC", func(c *Config) { c.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 0, 0, 1} }, `MAC "02:00:00:00:00:00:00:01"`},
		{"multicast MAC", func(c *Config) { c.MAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 1} }, "MAC 01:00:5e:00:00:01"},
		{"broadcast MAC", func(c *Config) { c.MAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }, "MAC ff:ff:ff:ff:ff:ff"},
		{"zero MAC", func(c *Config) { c.MAC = net.HardwareAddr{0, 0, 0, 0, 0, 0} }, "MAC 00:00:00:00:00:00"},
		{"no address, no gateway", func(c *Config) { c.Addr, c.Gateway = netip.Prefix{}, netip.Addr{} }, ""},
		{"/31", func(c *Config) {
			c.Addr, c.Gateway = netip.MustParsePrefix("10.90.0.0/31"), netip.MustParseAddr("10.90.0.1")
		}, ""},
		{"/32 without gateway", func(c *Config) { c.Addr, c.Gateway = netip.MustParsePrefix("10.90.0.2/32"), netip.Addr{} }, ""},
		{"IPv6 Addr", func(c *Config) { c.Addr, c.Gateway = netip.MustParsePrefix("fd00::2/64"), netip.Addr{} }, "Addr fd00::2/64"},
		{"IPv4-mapped Addr", func(c *Config) {
			c.Addr, c.Gateway = netip.MustParsePrefix("::ffff:10.90.0.2/112"), netip.Addr{}
		}, "Addr ::ffff:10.90.0.2/112"},
		{"invalid prefix length", func(c *Config) { c.Addr = netip.PrefixFrom(netip.MustParseAddr("10.90.0.2"), 33) }, "Addr"},
		{"prefix length 0", func(c *Config) { c.Addr = netip.MustParsePrefix("10.90.0.2/0") }, "Addr 10.90.0.2/0"},
		{"network address", func(c *Config) { c.Addr = netip.MustParsePrefix("10.90.0.0/16") }, "Addr 10.90.0.0/16"},
		{"broadcast address", func(c *Config) { c.Addr = netip.MustParsePrefix("10.90.255.255/16") }, "Addr 10.90.255.255/16"},
		{"multicast Addr", func(c *Config) { c.Addr, c.Gateway = netip.MustParsePrefix("224.0.0.5/24"), netip.Addr{} }, "Addr 224.0.0.5/24"},
		{"loopback Addr", func(c *Config) { c.Addr, c.Gateway = netip.MustParsePrefix("127.0.0.2/8"), netip.Addr{} }, "Addr 127.0.0.2/8"},
		{"unspecified Addr", func(c *Config) { c.Addr, c.Gateway = netip.MustParsePrefix("0.0.0.0/8"), netip.Addr{} }, "Addr 0.0.0.0/8"},
		{"gateway outside prefix", func(c *Config) { c.Gateway = netip.MustParseAddr("10.91.0.1") }, "Gateway 10.91.0.1"},
		{"gateway without Addr", func(c *Config) { c.Addr = netip.Prefix{} }, "Gateway 10.90.0.1"},
		{"gateway equal to Addr", func(c *Config) { c.Gateway = netip.MustParseAddr("10.90.0.2") }, "Gateway 10.90.0.2"},
		{"gateway IPv6", func(c *Config) { c.Gateway = netip.MustParseAddr("fd00::1") }, "Gateway fd00::1"},
		{"gateway network address", func(c *Config) { c.Gateway = netip.MustParseAddr("10.90.0.0") }, "Gateway 10.90.0.0"},
		{"gateway broadcast address", func(c *Config) { c.Gateway = netip.MustParseAddr("10.90.255.255") }, "Gateway 10.90.255.255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want == "":
				return
			case err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestTempName(t *testing.T) {
	tests := []struct {
		pid  string
		seq  uint32
		want string
	}{
		{"1", 1, "tsw1_1"},
		{"4194304", 7, "tsw4194304_7"},
		{"4194304", 4294967295, "tsw4194304_7295"},
		{"123", 4294967295, "tsw123_94967295"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := tempName(tt.pid, tt.seq)
			if got != tt.want {
				t.Errorf("tempName(%q, %d) = %q, want %q", tt.pid, tt.seq, got, tt.want)
			}
			if err := ValidIfName(got); err != nil {
				t.Errorf("tempName(%q, %d) = %q: %v", tt.pid, tt.seq, got, err)
			}
		})
	}
}
