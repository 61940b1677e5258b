package integration

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// IPv6 of the host uplink's tests: the veth between the host namespace
// and the far one (startHost6), and the containers' /64.
const (
	hostVeth6 = "2001:db8:6::1" // the host namespace's IPv6 address
	far6      = "2001:db8:6::2" // the far namespace's
	subnet6   = "fd42:77::/64"
	gateway6  = "fd42:77::1"
)

// startHost6 is startHost with IPv6 on the link (without duplicate address
// detection, so that the addresses work at once) and a dual-stack daemon.
func startHost6(t *testing.T, args ...string) (d *daemon, host, far string) {
	t.Helper()
	d, host, far = startHost(t, true, append([]string{"--ipv6", "--subnet6", subnet6}, args...)...)
	linkIPv6(t, host, far)
	return d, host, far
}

// linkIPv6 adds IPv6 addresses to the veth between startHost's host and
// far namespaces.
func linkIPv6(t *testing.T, host, far string) {
	t.Helper()
	for _, c := range [][]string{
		{"ip", "-n", host, "addr", "add", hostVeth6 + "/64", "dev", vethOf(t, host), "nodad"},
		{"ip", "-n", far, "addr", "add", far6 + "/64", "dev", "eth0", "nodad"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}

// vethOf returns the name of the veth startHost made in host.
func vethOf(t *testing.T, host string) string {
	t.Helper()
	for _, l := range links(t, host) {
		if strings.HasPrefix(l, "thv") {
			return l
		}
	}
	t.Fatalf("no veth in %s: %v", host, links(t, host))
	return ""
}

// hostPort6 joins an IPv6 address and a port.
func hostPort6(a, port string) string { return net.JoinHostPort(a, port) }

// TestHostUplinkIPv6: a container reaches TCP and UDP servers and pings
// an IPv6 address of a namespace the test made, through AF_INET6 sockets
// of the daemon's namespace (seen from its address); published ports
// listen on [::] too and keep the client's IPv6 address, [::1] clients
// are spliced into the container's namespace (it sees its own IPv6
// address) as 127.0.0.1 ones are, `-p [::1]:...` listens only there, and
// the gateway's IPv6 address reaches the host's ::1.
func TestHostUplinkIPv6(t *testing.T) {
	requireRoot(t, "ping")
	d, host, far := startHost6(t, "--host-loopback")
	c1 := newNS(t)
	p1 := d.attach(t, c1, "c1", "-p", "8080:80", "-p", "8081:81/udp", "-p", "[::1]:8082:82")
	if ip6(p1) == "" {
		t.Fatalf("c1 has no IPv6 address: %+v", p1)
	}

	t.Run("TCP 4 MiB, sha256 equal, seen from the host's IPv6 address", func(t *testing.T) {
		hashServer(t, far, hostPort6(far6, "7000"))
		upload(t, c1, hostPort6(far6, "7000"), 4<<20)
		tcpServer(t, far, hostPort6(far6, "7001"))
		if got := seenAs(t, c1, hostPort6(far6, "7001")); got.Addr().String() != hostVeth6 {
			t.Errorf("far server saw %s, want %s (a socket of the host)", got, hostVeth6)
		}
	})
	t.Run("UDP", func(t *testing.T) {
		udpServer(t, far, hostPort6(far6, "7002"))
		if got := mustUDP(t, udpSocket(t, c1, "[::]:0"), hostPort6(far6, "7002")); got.Addr().String() != hostVeth6 {
			t.Errorf("far server saw %s, want %s", got, hostVeth6)
		}
	})
	t.Run("UDP to a closed port: connection refused", func(t *testing.T) {
		wantUDPRefused(t, c1, hostPort6(far6, "7999"))
	})
	t.Run("ping6", func(t *testing.T) {
		ping6(t, c1, far6)
	})
	t.Run("published TCP over [::]: the client's address kept, 4 MiB intact", func(t *testing.T) {
		tcpServer(t, c1, "[::]:80")
		got := seenAs(t, far, hostPort6(hostVeth6, "8080"))
		if got.Addr().String() != far6 {
			t.Errorf("the container saw the client as %s, want %s", got, far6)
		}
		hashServer(t, c1, "[::]:83")
		if _, errOut, code := d.cli(t, "publish", "8083:83", "--to", "c1"); code != 0 {
			t.Fatalf("publish: exit %d: %s", code, errOut)
		}
		upload(t, far, hostPort6(hostVeth6, "8083"), 4<<20)
	})
	t.Run("published TCP over [::1]: spliced, the container's own IPv6 address, 64 MiB both ways", func(t *testing.T) {
		// A root daemon connects inside the container's namespace, to
		// its own IPv6 address, as for 127.0.0.1 (TestHostUplink).
		tcpServer(t, c1, "[::]:80")
		before := d.stats(t).HostUplink.PublishSpliced
		if got := seenAs(t, host, "[::1]:8080"); got.Addr().String() != ip6(p1) {
			t.Errorf("the container saw a spliced ::1 client as %s, want its own address %s", got, ip6(p1))
		}
		echoBack(t, host, "[::1]:8080", 64<<20)
		if s := d.stats(t).HostUplink; s.PublishSpliced != before+2 || s.SpliceFailed != 0 {
			t.Errorf("publish_spliced %d, splice_failed %d: want %d and 0", s.PublishSpliced, s.SpliceFailed, before+2)
		}
	})
	t.Run("published UDP over [::]: the client's address kept", func(t *testing.T) {
		udpServer(t, c1, "[::]:81")
		s := udpSocket(t, far, "[::]:0")
		got := mustUDP(t, s, hostPort6(hostVeth6, "8081"))
		if want := netip.AddrPortFrom(netip.MustParseAddr(far6), s.LocalAddr().(*net.UDPAddr).AddrPort().Port()); got != want {
			t.Errorf("the container saw the client as %s, want %s", got, want)
		}
	})
	t.Run("-p [::1]:8082:82 listens on ::1 only", func(t *testing.T) {
		tcpServer(t, c1, "[::]:82")
		if got := seenAs(t, host, "[::1]:8082"); got.Addr().String() != ip6(p1) {
			t.Errorf("the container saw a ::1 client as %s, want its own address %s (spliced)", got, ip6(p1))
		}
		for _, addr := range []string{hostPort6(hostVeth6, "8082"), "127.0.0.1:8082"} {
			ns := host
			if strings.Contains(addr, hostVeth6) {
				ns = far
			}
			if _, err := dialTCP(t, ns, addr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("connect to %s: %v, want connection refused", addr, err)
			}
		}
		out, _, _ := d.cli(t, "publish", "--list")
		if !strings.Contains(out, "[::1]:8082:82/tcp") {
			t.Errorf("publish --list lacks [::1]:8082:82/tcp:\n%s", out)
		}
	})
	t.Run("host loopback through the gateway's IPv6 address", func(t *testing.T) {
		tcpServer(t, host, "[::1]:9000")
		if got := seenAs(t, c1, hostPort6(gateway6, "9000")); got.Addr() != netip.IPv6Loopback() {
			t.Errorf("the host's ::1 server saw %s, want ::1", got)
		}
	})
	if s := d.stats(t).Gateway; s.Forwarded6 == 0 || s.ToContainer6 == 0 {
		t.Errorf("gateway forwarded6 %d, to_container6 %d: want both > 0", s.Forwarded6, s.ToContainer6)
	}
}

// TestHostUplinkIPv6ToIPv4Container: a container without IPv6 (the daemon
// runs without --ipv6) gets a connection to its port published on [::]
// over IPv4, from 192.0.0.1 (its client's IPv6 address cannot be shown),
// as Docker's proxy does; a UDP publish on an IPv6 address is refused
// with a clear error.
func TestHostUplinkIPv6ToIPv4Container(t *testing.T) {
	requireRoot(t)
	d, host, far := startHost(t, false)
	linkIPv6(t, host, far)
	c1 := newNS(t)
	d.attach(t, c1, "c1", "-p", "8080:80")
	tcpServer(t, c1, ":80")
	if got := seenAs(t, far, hostPort6(hostVeth6, "8080")); got.Addr().String() != "192.0.0.1" {
		t.Errorf("an IPv6 client reached the IPv4-only container as %s, want 192.0.0.1", got)
	}
	_, errOut, code := d.cli(t, "publish", "[::1]:8081:81/udp", "--to", "c1")
	if code != 1 || !strings.Contains(errOut, "needs a container with an IPv6 address") {
		t.Errorf("publish [::1]:8081:81/udp to an IPv4-only container: exit %d, %q", code, errOut)
	}
}

// TestTAPUplinkIPv6PublishRefused: a routed TAP uplink without ip6= has no
// NAT66, so a publish on an IPv6 address is refused with a clear error, not
// ignored.
func TestTAPUplinkIPv6PublishRefused(t *testing.T) {
	requireRoot(t)
	d, _ := startNAT(t)
	c1 := newNS(t)
	_, errOut, code := d.cli(t, "attach", "--netns", "/run/netns/"+c1, "--name", "c1", "-p", "[::1]:8080:80")
	if code != 1 || !strings.Contains(errOut, "NAT66") {
		t.Errorf("attach -p [::1]:8080:80 with the TAP uplink: exit %d, %q; want exit 1 and a message naming NAT66", code, errOut)
	}
	for _, p := range d.ports(t) {
		if p.Name == "c1" {
			t.Errorf("c1 attached after the error")
		}
	}
}

// TestRootlessHostUplinkIPv6: the same as nobody, for a rootless container:
// a port published on [::1] is reached from the host namespace's ::1,
// through the netstack while the container's lo is down (it sees the
// gateway's IPv6 address), spliced by the dial helper once lo is up (it
// sees its own IPv6 address; 64 MiB both ways, sha256 equal); and the
// gateway's IPv6 address reaches the host's ::1.
func TestRootlessHostUplinkIPv6(t *testing.T) {
	requireRootless(t)
	d, host := startRootlessDaemon(t, "--uplink", "host", "--host-loopback", "--ipv6", "--subnet6", subnet6)
	c := startRootlessContainer(t)
	p := d.attachPID(t, c, "-p", "[::1]:18090:8090")
	cname := c.named(t)
	tcpServer(t, cname, "[::]:8090")
	if got := seenAs(t, host, "[::1]:18090"); got.Addr().String() != gateway6 {
		t.Errorf("the container's lo down: the container saw a ::1 client as %s, want %s (the netstack's path)", got, gateway6)
	}
	if out, err := c.enter("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("ip link set lo up in the container: %v: %s", err, out)
	}
	if got := seenAs(t, host, "[::1]:18090"); got.Addr().String() != ip6(p) {
		t.Errorf("the container saw a spliced ::1 client as %s, want its own address %s", got, ip6(p))
	}
	echoBack(t, host, "[::1]:18090", 64<<20)
	if s := d.stats(t).HostUplink; s.PublishSpliced != 2 || s.SpliceFailed != 0 {
		t.Errorf("publish_spliced %d, splice_failed %d: want 2 and 0", s.PublishSpliced, s.SpliceFailed)
	}
	tcpServer(t, host, "[::1]:15300")
	if got := seenAs(t, cname, hostPort6(gateway6, "15300")); got.Addr() != netip.IPv6Loopback() {
		t.Errorf("the host's ::1 server saw %s, want ::1", got)
	}
}
