package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDNSIPv6 asks the embedded DNS server at the gateway's IPv6 address
// (--ipv6), from a container, over UDP and TCP: names (A and AAAA),
// reverse names in the IPv6 subnet's ip6.arpa zone, and NXDOMAIN for an
// address of the subnet no port has. The resolv.conf attach writes names
// both of the server's addresses.
func TestDNSIPv6(t *testing.T) {
	requireRoot(t, "dig", "getent")
	// Only local names are asked; a forward would go to a loopback port.
	d := startDaemon(t, "--ipv6", "--subnet6", "fd42:53::/64", "--dns-upstream", "127.0.0.1:9")
	const gw6 = "fd42:53::1"
	webNS, cliNS := dnsNS(t), dnsNS(t)
	web := d.attach(t, webNS, "web", "--alias", "www")
	d.attach(t, cliNS, "cli")

	conf, err := os.ReadFile(filepath.Join("/etc/netns", cliNS, "resolv.conf"))
	if err != nil || !strings.Contains(string(conf), "nameserver "+gatewayIP+"\nnameserver "+gw6+"\n") {
		t.Fatalf("resolv.conf of %s: %q, %v; want both of the gateway's addresses", cliNS, conf, err)
	}
	dig6 := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(digAt(t, cliNS, gw6, append([]string{"-6", "+short"}, args...)...))
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"AAAA", []string{"web.tapswitch", "AAAA"}, ip6(web)},
		{"A", []string{"www.tapswitch", "A"}, ip(web)},
		{"bare AAAA", []string{"web", "AAAA"}, ip6(web)},
		{"gateway AAAA", []string{"gateway.tapswitch", "AAAA"}, gw6},
		{"PTR", []string{"-x", ip6(web)}, "web.tapswitch."},
		{"PTR of the gateway", []string{"-x", gw6}, "gateway.tapswitch."},
		{"TCP", []string{"+tcp", "web.tapswitch", "AAAA"}, ip6(web)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dig6(tc.args...); got != tc.want {
				t.Errorf("dig -6 @%s %v: %q, want %q", gw6, tc.args, got, tc.want)
			}
		})
	}
	if got := digShort(t, cliNS, "-x", ip6(web)); got != "web.tapswitch." {
		t.Errorf("the IPv6 PTR asked over IPv4: %q, want web.tapswitch.", got)
	}
	if out := digAt(t, cliNS, gw6, "-6", "-x", "fd42:53::77"); status(out) != "NXDOMAIN" {
		t.Errorf("PTR of an address of the subnet no port has: want NXDOMAIN\n%s", out)
	}
	// Through glibc: getent asks AAAA from the resolv.conf attach wrote.
	if out := nsRun(t, cliNS, "getent", "ahostsv6", "web"); !strings.Contains(out, ip6(web)) {
		t.Errorf("getent ahostsv6 web: %q, want %s", out, ip6(web))
	}
	// Detach: the name goes at once, over IPv6 too.
	if _, errOut, code := d.cli(t, "detach", "web"); code != 0 {
		t.Fatalf("detach: %s", errOut)
	}
	if out := digAt(t, cliNS, gw6, "-6", "web.tapswitch", "AAAA"); status(out) != "NXDOMAIN" {
		t.Errorf("web after detach: want NXDOMAIN\n%s", out)
	}
}
