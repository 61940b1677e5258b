package daemon

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/switch/tap"
)

func TestConfig6(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ula /64", Config{IPv6: true, Subnet6: netip.MustParsePrefix("fd42:1::/64")}, ""},
		{"chosen later", Config{IPv6: true}, ""},
		{"without --ipv6", Config{Subnet6: netip.MustParsePrefix("fd42:1::/64")}, "needs --ipv6"},
		{"not /64", Config{IPv6: true, Subnet6: netip.MustParsePrefix("fd42:1::/56")}, "must be a /64"},
		{"host bits", Config{IPv6: true, Subnet6: netip.MustParsePrefix("fd42:1::5/64")}, "did you mean fd42:1::/64"},
		{"ipv4", Config{IPv6: true, Subnet6: netip.MustParsePrefix("10.0.0.0/8")}, "not an IPv6 prefix"},
		{"link-local", Config{IPv6: true, Subnet6: netip.MustParsePrefix("fe80::/64")}, "not a unicast prefix"},
		{"multicast", Config{IPv6: true, Subnet6: netip.MustParsePrefix("ff02::/64")}, "not a unicast prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewULA(t *testing.T) {
	a, err := NewULA()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewULA()
	if a.Bits() != 64 || a.Addr().As16()[0] != 0xfd || a != a.Masked() || a == b {
		t.Errorf("NewULA: %s then %s, want two different fdXX:XXXX:XXXX::/64", a, b)
	}
}

// TestSubnet6Kept checks that the ULA a daemon chose is in its state file
// and chosen again by the next daemon with that file, and that attach
// takes addresses from ::2 up, refuses the gateway's and a taken one, and
// configures the TAP for IPv6 (or disables it without --ipv6).
func TestSubnet6Kept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	d := newTestDaemon(t, Config{IPv6: true, StatePath: path})
	first := d.cfg.Subnet6
	if !first.IsValid() || first.Addr().As16()[0] != 0xfd {
		t.Fatalf("subnet6 %s, want a ULA", first)
	}
	if g := d.gw.Addr6(); g.Addr() != first.Addr().Next() {
		t.Errorf("gateway %s, want %s::1", g, first.Addr())
	}
	d.Close()
	st, err := loadState(path)
	if err != nil || st.Subnet6 != first.String() {
		t.Fatalf("state file: subnet6 %q (%v), want %s", st.Subnet6, err, first)
	}
	d = newTestDaemon(t, Config{IPv6: true, StatePath: path})
	if d.cfg.Subnet6 != first {
		t.Errorf("second daemon: subnet6 %s, want %s from the state file", d.cfg.Subnet6, first)
	}
	if info := d.Info(); info.Subnet6 != first.String() || info.Gateway6 != gateway6(first).String() || !info.RA ||
		!strings.HasPrefix(info.GatewayLL, "fe80::") {
		t.Errorf("info %+v", info)
	}
	if info := newTestDaemon(t, Config{}).Info(); info.Subnet6 != "" || info.Gateway6 != "" {
		t.Errorf("IPv4-only info %+v: want no IPv6", info)
	}

	a := &attachment{name: "a"}
	if err := d.reserve6Locked(a); err != nil || a.ip6 != first.Addr().Next().Next() {
		t.Fatalf("first ip6 %s (%v), want ::2", a.ip6, err)
	}
	d.ports["a"] = a
	for _, tc := range []struct{ ip6, want string }{
		{gateway6(first).String(), "gateway's address"},
		{a.ip6.String(), "taken by port a"},
		{"2001:db8::1", "outside the subnet"},
		{first.Addr().String(), "anycast"},
		{"10.0.0.1", "not an IPv6 address"},
	} {
		b := &attachment{name: "b"}
		err := d.parseIP6(b, tc.ip6)
		if err == nil {
			err = d.reserve6Locked(b)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ip6 %s: %v, want %q", tc.ip6, err, tc.want)
		}
	}
	var cfg tap.Config
	d.tapConfig6(a, &cfg)
	if cfg.Addr6 != netip.PrefixFrom(a.ip6, 64) || cfg.Gateway6 != gateway6(first) || cfg.DisableIPv6 {
		t.Errorf("tap config %+v", cfg)
	}
	d4 := newTestDaemon(t, Config{})
	cfg = tap.Config{}
	d4.tapConfig6(&attachment{}, &cfg)
	if !cfg.DisableIPv6 || cfg.Addr6.IsValid() {
		t.Errorf("IPv4-only tap config %+v, want IPv6 disabled", cfg)
	}
	if err := d4.parseIP6(&attachment{}, "fd42::2"); err == nil || !strings.Contains(err.Error(), "without --ipv6") {
		t.Errorf("ip6 without --ipv6: %v", err)
	}
}

func TestMetricsIPv6(t *testing.T) {
	d := newTestDaemon(t, Config{IPv6: true, Subnet6: netip.MustParsePrefix("fd42:1::/64")})
	m := scrape(t, d.MetricsHandler())
	if v := value(m, "tapswitch_gateway_ipv6_adverts_total", "kind", "neighbor"); v != 2 {
		t.Errorf("neighbor adverts at start: %v, want 2 (global and link-local)", v)
	}
	if v := value(m, "tapswitch_gateway_ipv6_adverts_total", "kind", "router"); v != 1 {
		t.Errorf("router adverts at start: %v, want 1", v)
	}
	// Routed packets by family (the label shared with conntrack's).
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, dir := range []string{"out", "in"} {
			if v := value(m, "tapswitch_gateway_routed_packets_total", "family", fam, "direction", dir); v != 0 {
				t.Errorf("gateway_routed_packets_total{family=%q,direction=%q} = %v, want 0 (present)", fam, dir, v)
			}
		}
	}
}
