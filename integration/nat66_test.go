package integration

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// The outside world of the NAT66 tests: the lan namespace of the NAT tests
// with IPv6 on the link and a second address on its loopback, routed
// through the lan's address on the link (gw6).
const (
	lanIP6     = "2001:db8:66::1" // the lan's address on the link, the uplink's gw6
	lanIP6Far  = "2001:db8:77::1" // off the link: routed via lanIP6
	upIP6      = "2001:db8:66::2" // the switch's uplink IPv6 address
	subnet6NAT = "fd42:66::/64"   // the containers'
	gw6NAT     = "fd42:66::1"     // the gateway's
	c1IP6NAT   = "fd42:66::2"     // the first container's
	lanLinkMTU = "1500"           // the lan's side of the link: over the uplink's mtu=
)

// upMTU6 is the uplink's MTU (upMTU, as for IPv4) as the spec and ip show it.
var upMTU6 = strconv.Itoa(upMTU)

// startNAT66 creates a lan namespace and a dual-stack daemon whose TAP
// uplink is in it, with IPv4 as startNAT and ip6/gw6, and the lan's
// addresses. The lan's side of the link has MTU 1500 while the uplink's is
// upMTU, so that the lan's TCP offers segments too big for the uplink and
// containers learn the path MTU from the gateway's packet too big.
func startNAT66(t *testing.T, args ...string) (*daemon, string) {
	t.Helper()
	lan := newNS(t)
	spec := "tap,netns=" + netnsutil.Path(lan) + ",ifname=ts0,ip=" + upIP + "/24,gw=" + lanIP +
		",ip6=" + upIP6 + "/64,gw6=" + lanIP6 + ",mtu=" + upMTU6
	d := startDaemon(t, append([]string{"--uplink", spec, "--ipv6", "--subnet6", subnet6NAT}, args...)...)
	for _, a := range [][]string{
		{"-n", lan, "addr", "add", lanIP + "/24", "dev", "ts0"},
		{"-n", lan, "addr", "add", lanIP6 + "/64", "dev", "ts0", "nodad"},
		{"-n", lan, "addr", "add", lanIP6Far + "/128", "dev", "lo"},
		{"-n", lan, "link", "set", "lo", "up"},
		{"-n", lan, "link", "set", "ts0", "mtu", lanLinkMTU},
	} {
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", a, err, out)
		}
	}
	return d, lan
}

// TestNAT66: a dual-stack container reaches the lan over IPv6 through the
// TAP uplink, masqueraded to the uplink's IPv6 address (NAT66): TCP (64
// MiB both ways, intact, as super-frames, with path MTU discovery through
// the gateway's packet too big), UDP and ping, on the link and beyond gw6;
// its published port is reached over IPv6 with the client's address kept;
// the gateway answers hop limit 1 with time exceeded; conntrack lists the
// IPv6 flows as conntrack -L -f ipv6 does, and IPv4 still works beside.
func TestNAT66(t *testing.T) {
	requireRoot(t, "ping")
	d, lan := startNAT66(t, "--metrics", "127.0.0.1:0")
	c1 := newNS(t)
	p1 := d.attach(t, c1, "c1", "-p", "8080:80")
	if ip6(p1) != c1IP6NAT {
		t.Fatalf("c1's ip6 %q, want %s", p1.IP6, c1IP6NAT)
	}
	far := "[" + lanIP6Far + "]"

	t.Run("ping", func(t *testing.T) {
		ping6(t, c1, lanIP6)
		ping6(t, c1, lanIP6Far)
		ping6(t, lan, upIP6) // the uplink answers as a host on the link
		ping(t, c1, lanIP)
	})

	t.Run("tcp seen as the uplink", func(t *testing.T) {
		tcpServer(t, lan, far+":5301")
		if a := seenAs(t, c1, far+":5301"); a.Addr() != netip.MustParseAddr(upIP6) {
			t.Errorf("lan saw %s, want the uplink's %s", a, upIP6)
		}
	})

	t.Run("udp", func(t *testing.T) {
		udpServer(t, lan, far+":5302")
		c := udpSocket(t, c1, "[::]:40066")
		r, err := udpAsk(c, far+":5302", 4*time.Second)
		if err != nil {
			t.Fatalf("UDP to %s: %v", far, err)
		}
		if got := netip.MustParseAddrPort(r); got != netip.AddrPortFrom(netip.MustParseAddr(upIP6), 40066) {
			t.Errorf("lan saw %s, want [%s]:40066 (port preserved)", got, upIP6)
		}
	})

	t.Run("64 MiB with path MTU discovery", func(t *testing.T) {
		before, upBefore := d.gatewayStats(t), d.tapUplink(t)
		sent, got := transferVia(t, c1, lan, far+":5303", far+":5303", 64<<20, nil)
		if sent != got {
			t.Errorf("sha256: sent %x, received %x", sent, got)
		}
		after, up := d.gatewayStats(t), d.tapUplink(t)
		// Once the path MTU is known, the container's TSO super-frames
		// cross the gateway and NAT66 whole.
		n, b := up.TxPackets-upBefore.TxPackets, up.TxBytes-upBefore.TxBytes
		if up.TxGSO == upBefore.TxGSO || b/max(n, 1) <= upMTU {
			t.Errorf("uplink sent %d packets of %d bytes on average, %d super-frames: want super-frames, more than %d bytes on average",
				n, b/max(n, 1), up.TxGSO-upBefore.TxGSO, upMTU)
		}
		if after.FragNeeded == before.FragNeeded {
			t.Errorf("the gateway sent no packet too big (frag_needed %d)", after.FragNeeded)
		}
		if out := nsRun(t, c1, "ip", "-6", "route", "get", lanIP6Far); !strings.Contains(out, "mtu "+upMTU6) {
			t.Errorf("c1's route to %s: %q, want the path MTU %s learned from packet too big", lanIP6Far, out, upMTU6)
		}
		if after.Forwarded6 == before.Forwarded6 || after.ToContainer6 == before.ToContainer6 {
			t.Errorf("gateway forwarded6 %d -> %d, to_container6 %d -> %d: want both to grow",
				before.Forwarded6, after.Forwarded6, before.ToContainer6, after.ToContainer6)
		}
	})

	t.Run("64 MiB from the lan", func(t *testing.T) {
		before := d.tapUplink(t)
		sent, got := download(t, c1, lan, far+":5304", 64<<20)
		if sent != got {
			t.Errorf("sha256: sent %x, received %x", sent, got)
		}
		s := d.tapUplink(t)
		n, b := s.RxPackets-before.RxPackets, s.RxBytes-before.RxBytes
		if s.RxGSO == before.RxGSO || b/max(n, 1) <= upMTU || s.RxSegmented != before.RxSegmented {
			t.Errorf("uplink received %d packets of %d bytes on average, %d super-frames, %d segmented: want super-frames handed on whole",
				n, b/max(n, 1), s.RxGSO-before.RxGSO, s.RxSegmented-before.RxSegmented)
		}
	})

	t.Run("published port over IPv6", func(t *testing.T) {
		tcpServer(t, c1, "[::]:80") // Go's tcp6 is IPv6 only
		tcpServer(t, c1, "0.0.0.0:80")
		if a := seenAs(t, lan, "["+upIP6+"]:8080"); a.Addr() != netip.MustParseAddr(lanIP6) {
			t.Errorf("c1 saw %s, want the lan's %s (DNAT66 keeps the client's address)", a, lanIP6)
		}
		if a := seenAs(t, lan, upIP+":8080"); a.Addr().Unmap() != netip.MustParseAddr(lanIP) {
			t.Errorf("c1 saw %s over IPv4, want the lan's %s", a, lanIP)
		}
	})

	t.Run("hop limit 1", func(t *testing.T) {
		out, _ := exec.Command("ip", "netns", "exec", c1, "ping", "-6", "-c", "1", "-W", "2", "-t", "1", lanIP6Far).CombinedOutput()
		if !strings.Contains(string(out), "Time exceeded") || !strings.Contains(string(out), gw6NAT) {
			t.Errorf("ping -t 1: %s, want time exceeded from %s", out, gw6NAT)
		}
	})

	t.Run("conntrack", func(t *testing.T) {
		// Fresh flows: those of the subtests above may have expired
		// on a slow machine.
		ping6(t, c1, lanIP6Far)
		ping(t, c1, lanIP)
		udpServer(t, lan, far+":5305") // the udp subtest's is closed
		if _, err := udpAsk(udpSocket(t, c1, "[::]:40067"), far+":5305", 4*time.Second); err != nil {
			t.Fatalf("UDP to %s: %v", far, err)
		}
		out, errOut, code := d.cli(t, "conntrack", "-f", "ipv6")
		if code != 0 {
			t.Fatalf("conntrack -f ipv6: exit %d: %s", code, errOut)
		}
		want := "src=" + c1IP6NAT + " dst=" + lanIP6Far + " sport=40067 dport=5305 "
		if !strings.Contains(out, want) || !strings.Contains(out, "src="+lanIP6Far+" dst="+upIP6+" sport=5305 dport=40067") {
			t.Errorf("conntrack -f ipv6 lacks the UDP flow %q and its reply:\n%s", want, out)
		}
		if !strings.Contains(out, "icmpv6   58 ") {
			t.Errorf("conntrack -f ipv6 lacks the ping:\n%s", out)
		}
		if strings.Contains(out, lanIP+" ") {
			t.Errorf("conntrack -f ipv6 lists IPv4 flows:\n%s", out)
		}
		v6 := 0
		for _, e := range d.conntrack(t) {
			if e.Family == "ipv6" {
				v6++
				if e.Orig.Src == c1IP6NAT && e.Reply.Dst != upIP6 {
					t.Errorf("IPv6 entry %+v: reply to %s, want the uplink's %s", e, e.Reply.Dst, upIP6)
				}
			}
		}
		if s := d.ctStats(t); v6 == 0 || s.IPv6 != uint64(v6) {
			t.Errorf("conntrack --json lists %d IPv6 entries, --stats says %d", v6, s.IPv6)
		}
		// /metrics has them with a family label.
		seen := map[string]bool{}
		if f := scrapeMetrics(t, metricsURL(t, d))["tapswitch_conntrack_entries"]; f != nil {
			for _, m := range f.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				seen[l["family"]+"/"+l["proto"]] = true
			}
		}
		if !seen["ipv6/udp"] || !seen["ipv6/icmpv6"] || !seen["ipv4/icmp"] {
			t.Errorf("conntrack_entries families/protocols %v, want ipv6/udp, ipv6/icmpv6 and ipv4/icmp among them", seen)
		}
	})
}

// download connects from clientNS to a server it starts in serverNS on
// addr (IPv6), which sends size pseudo-random bytes and closes; it returns
// the sha256 of what was sent and of what arrived.
func download(t *testing.T, clientNS, serverNS, addr string, size int64) (sent, got [32]byte) {
	t.Helper()
	var ln net.Listener
	inNS(t, serverNS, func() (err error) { ln, err = net.Listen("tcp6", addr); return err })
	defer ln.Close()
	done := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		c, err := ln.Accept()
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.NewChaCha8([32]byte{6, 6}), size))
			c.Close()
		}
		done <- [32]byte(h.Sum(nil))
	}()
	var c net.Conn
	inNS(t, clientNS, func() (err error) { c, err = net.DialTimeout("tcp6", addr, 10*time.Second); return err })
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	h := sha256.New()
	if n, err := io.Copy(h, c); err != nil || n != size {
		t.Errorf("received %d of %d bytes: %v", n, size, err)
	}
	return <-done, [32]byte(h.Sum(nil))
}
