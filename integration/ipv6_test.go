package integration

import (
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// ip6 returns the IPv6 address of a port without its prefix length.
func ip6(p api.Port) string { return strings.SplitN(p.IP6, "/", 2)[0] }

// ping6 runs ping -6 inside ns and fails the test if no reply comes back.
func ping6(t *testing.T, ns, addr string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", addr).CombinedOutput()
	if err != nil {
		t.Errorf("ping -6 %s from %s: %v\n%s", addr, ns, err, out)
	}
}

// TestIPv6DualStack runs a dual-stack network: containers get the next
// IPv6 addresses (or the one asked for), a default route via the gateway,
// the gateway's RA (a second default route via its link-local address),
// and reach the gateway and each other over both families; 64 MiB of TCP
// over IPv6 arrive intact.
func TestIPv6DualStack(t *testing.T) {
	requireRoot(t, "ping", "dig")
	// The DNS server forwards nothing here (only its own names are asked),
	// and would forward to a loopback port, never outside.
	d := startDaemon(t, "--ipv6", "--subnet6", "fd42:1::/64", "--dns-upstream", "127.0.0.1:9")
	a, b, c := dnsNS(t), dnsNS(t), dnsNS(t)
	pa := d.attach(t, a, "a")
	pb := d.attach(t, b, "b")
	pc := d.attach(t, c, "c", "--ip6", "fd42:1::99")
	for _, tc := range []struct {
		p    api.Port
		want string
	}{{pa, "fd42:1::2/64"}, {pb, "fd42:1::3/64"}, {pc, "fd42:1::99/64"}} {
		if tc.p.IP6 != tc.want {
			t.Errorf("port %s: ip6 %q, want %q", tc.p.Name, tc.p.IP6, tc.want)
		}
	}
	if out, _, _ := d.cli(t, "ports"); !strings.Contains(out, "fd42:1::99/64") {
		t.Errorf("ports table lacks c's ip6:\n%s", out)
	}
	if out := nsRun(t, a, "ip", "-6", "route", "show", "default"); !strings.Contains(out, "via fd42:1::1 dev eth0") {
		t.Errorf("a's IPv6 default route: %q, want one via fd42:1::1", out)
	}

	// The embedded DNS server (asked at the gateway) answers AAAA with
	// the port's IPv6 address.
	if got := digShort(t, a, "c.tapswitch", "AAAA"); got != "fd42:1::99" {
		t.Errorf("dig c.tapswitch AAAA: %q, want fd42:1::99", got)
	}
	ping6(t, a, "fd42:1::1")
	ping(t, a, "10.90.0.1")
	ping6(t, a, ip6(pb))
	ping6(t, b, ip6(pc))
	ping6(t, c, ip6(pa))
	ping(t, b, ip(pa))

	// The gateway's link-local address, from its MAC (modified EUI-64),
	// answers too, and its RA makes it the default router.
	var gw api.Port
	for _, p := range d.ports(t) {
		if p.Kind == "gateway" {
			gw = p
		}
	}
	mac, err := net.ParseMAC(gw.MAC)
	if err != nil {
		t.Fatalf("gateway mac %q: %v", gw.MAC, err)
	}
	ll := netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]})
	ping6(t, b, ll.String()+"%eth0")
	eventually(t, 10*time.Second, "a default route learned from the gateway's RA", func() bool {
		out := nsRun(t, a, "ip", "-6", "route", "show", "default")
		return strings.Contains(out, "via "+ll.String()) && strings.Contains(out, "proto ra")
	})
	// The RA's prefix is on-link, without SLAAC: no second address.
	if out := nsRun(t, a, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"); strings.Count(out, "inet6") != 1 {
		t.Errorf("a's global IPv6 addresses: want only fd42:1::2:\n%s", out)
	}

	// An ACL rule on IPv6 prefixes: a to b dropped (and counted), a to
	// c and IPv4 untouched.
	d.addRule(t, "--src", ip6(pa), "--dst", "fd42:1::3/128", "drop")
	if out, err := exec.Command("ip", "netns", "exec", a, "ping", "-6", "-c", "1", "-W", "1", ip6(pb)).CombinedOutput(); err == nil {
		t.Errorf("ping -6 a -> b through a drop rule answered:\n%s", out)
	}
	ping6(t, a, ip6(pc))
	ping(t, a, ip(pb))
	if rs := d.rules(t); len(rs) != 1 || rs[0].Packets == 0 || rs[0].Src != ip6(pa)+"/128" {
		t.Errorf("rules after the dropped ping: %+v", rs)
	}
	if _, errOut, code := d.cli(t, "rule", "del", "1"); code != 0 {
		t.Fatalf("rule del: %s", errOut)
	}

	sent, got := transfer(t, a, b, ip6(pb), 64<<20, nil)
	if sent != got {
		t.Fatalf("sha256 over IPv6: sent %x, received %x", sent, got)
	}
}

// TestIPv4OnlyNoIPv6 checks that without --ipv6 a container's interface has
// IPv6 disabled: no address at all, not even a link-local one.
func TestIPv4OnlyNoIPv6(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t)
	a := newNS(t)
	p := d.attach(t, a, "a")
	if p.IP6 != "" {
		t.Errorf("ip6 %q on an IPv4-only network, want none", p.IP6)
	}
	if out := nsRun(t, a, "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"); strings.TrimSpace(out) != "1" {
		t.Errorf("disable_ipv6 of eth0: %q, want 1", out)
	}
	if out := nsRun(t, a, "ip", "-6", "addr", "show", "dev", "eth0"); strings.TrimSpace(out) != "" {
		t.Errorf("IPv6 addresses on eth0 of an IPv4-only network:\n%s", out)
	}
	ping(t, a, "10.90.0.1")
	if _, errOut, code := d.cli(t, "attach", "--netns", "/run/netns/"+newNS(t), "--ip6", "fd42:1::5"); code == 0 || !strings.Contains(errOut, "without --ipv6") {
		t.Errorf("attach --ip6 without --ipv6: exit %d, %q; want an error that says so", code, errOut)
	}
}

// TestIPv6AttachHelper configures IPv6 (or disables it) through the
// namespace helper, as an attach without root does.
func TestIPv6AttachHelper(t *testing.T) {
	requireRoot(t, "ping", "nsenter")
	d := startDaemon(t, "--attach-helper", "--ipv6", "--subnet6", "fd42:3::/64")
	a, _, pb := d.attachAB(t)
	ping6(t, a, "fd42:3::1")
	ping6(t, a, ip6(pb))

	d4 := startDaemon(t, "--attach-helper", "--subnet", "10.91.0.0/16")
	c := newNS(t)
	d4.attach(t, c, "c")
	if out := nsRun(t, c, "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"); strings.TrimSpace(out) != "1" {
		t.Errorf("disable_ipv6 through the helper: %q, want 1", out)
	}
}

// TestIPv6LiveRestore restarts a live-restore daemon run with --ipv6 and
// no --subnet6: the new one takes the same random ULA from the state file,
// and the restored ports keep their IPv6 addresses, which port security
// still lets through.
func TestIPv6LiveRestore(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--ipv6", "--live-restore")
	dir := filepath.Dir(d.sock)
	a, _, pb := d.attachAB(t)
	ping6(t, a, ip6(pb))
	d.cmd.Process.Kill()
	<-d.exited

	d2 := startDaemonWith(t, dir, nil, "--ipv6", "--live-restore")
	var got api.Port
	for _, p := range d2.ports(t) {
		if p.Name == "b" {
			got = p
		}
	}
	if got.IP6 != pb.IP6 {
		t.Fatalf("b's ip6 after the restart: %q, want %q", got.IP6, pb.IP6)
	}
	ping6(t, a, ip6(pb))
}
