package integration

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// The host uplink's tests run the daemon inside a namespace they create
// (its "host"), linked by a veth to a second namespace ("far") that plays a
// server elsewhere on the host's network and a client of published ports.
const (
	hostVethIP = "203.0.113.1" // the host namespace's address
	farIP      = "203.0.113.2" // the far namespace's address
	gatewayIP  = "10.90.0.1"   // the gateway of the default subnet
)

// startHost creates a host namespace and a far one, linked, and runs a
// daemon with the host uplink (the default) inside the host namespace,
// with args added. pingOK sets net.ipv4.ping_group_range there so that the
// daemon may open ICMP echo sockets.
func startHost(t *testing.T, pingOK bool, args ...string) (d *daemon, host, far string) {
	t.Helper()
	host, far = newNS(t), newNS(t)
	veth := fmt.Sprintf("thv%d-%d", nsSeq, os.Getpid()%100000)
	cmds := [][]string{
		{"ip", "-n", host, "link", "set", "lo", "up"},
		{"ip", "-n", far, "link", "set", "lo", "up"},
		{"ip", "-n", host, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", far},
		{"ip", "-n", host, "addr", "add", hostVethIP + "/24", "dev", veth},
		{"ip", "-n", far, "addr", "add", farIP + "/24", "dev", "eth0"},
		{"ip", "-n", host, "link", "set", veth, "up"},
		{"ip", "-n", far, "link", "set", "eth0", "up"},
	}
	if pingOK {
		// Per namespace; written through /proc rather than sysctl(8),
		// which minimal systems lack.
		cmds = append(cmds, []string{"ip", "netns", "exec", host, "sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range"})
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	d = startDaemonIn(t, host, append([]string{"--uplink", "host"}, args...)...)
	return d, host, far
}

func (d *daemon) stats(t *testing.T) api.Stats {
	t.Helper()
	s := cliJSON[api.Stats](t, d, "stats", "--json")
	if s.HostUplink == nil {
		t.Fatalf("stats --json: no host_uplink in %+v", s)
	}
	return s
}

// hashServer listens on addr in ns: it reads to EOF and answers with the
// hex sha256 of what it read.
func hashServer(t *testing.T, ns, addr string) {
	t.Helper()
	serveTCP(t, ns, addr, func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		c.Write([]byte(hex.EncodeToString(h.Sum(nil))))
	})
}

// upload sends size random bytes from ns to a hashServer at addr, closes
// its sending side only (a half-close the uplink must carry), and wants the
// server's answer, on the same connection, to be their sha256.
func upload(t *testing.T, ns, addr string, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	c, err := dialTCP(t, ns, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("sha256 from the server at %s: %q, want %x", addr, got, want)
	}
}

// TestHostUplink: a container reaches a server elsewhere on the host's
// network through host sockets (TCP 100 MiB, UDP, ping), a refused host
// connect is a refused connect in the container, published TCP and UDP
// ports are host listeners that keep the client's address, a host port in
// use is a clear error, the host's loopback is reached through the
// gateway's address with --host-loopback, and 1000 connections leave no
// goroutine or socket behind.
func TestHostUplink(t *testing.T) {
	requireRoot(t, "ping")
	d, host, far := startHost(t, true, "--host-loopback")
	c1 := newNS(t)
	p1 := d.attach(t, c1, "c1", "-p", "8080:80", "-p", "8081:81/udp", "-p", "8082:82")

	t.Run("TCP 100 MiB, sha256 equal", func(t *testing.T) {
		hashServer(t, far, farIP+":7000")
		upload(t, c1, farIP+":7000", 100<<20)
	})
	t.Run("TCP seen from the host's address", func(t *testing.T) {
		tcpServer(t, far, farIP+":7001")
		if got := seenAs(t, c1, farIP+":7001"); got.Addr().String() != hostVethIP {
			t.Errorf("far server saw %s, want %s (a socket of the host)", got, hostVethIP)
		}
	})
	t.Run("refused host connect: refused in the container", func(t *testing.T) {
		_, err := dialTCP(t, c1, farIP+":7999", 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to a closed port: %v, want connection refused", err)
		}
		if s := d.stats(t).HostUplink; s.TCPRefused == 0 {
			t.Errorf("tcp_refused: 0")
		}
	})
	t.Run("UDP echo", func(t *testing.T) {
		udpServer(t, far, farIP+":7002")
		if got := mustUDP(t, udpSocket(t, c1, ""), farIP+":7002"); got.Addr().String() != hostVethIP {
			t.Errorf("far server saw %s, want %s", got, hostVethIP)
		}
	})
	t.Run("UDP to a closed port: connection refused", func(t *testing.T) {
		wantUDPRefused(t, c1, farIP+":7999")
	})
	t.Run("ping through ICMP sockets", func(t *testing.T) {
		ping(t, c1, farIP)
		if s := d.stats(t).HostUplink; s.ICMPTotal == 0 || s.ICMPDenied != 0 {
			t.Errorf("icmp_total %d, icmp_denied %d: want > 0 and 0", s.ICMPTotal, s.ICMPDenied)
		}
	})
	t.Run("published TCP: the container sees the client", func(t *testing.T) {
		tcpServer(t, c1, ":80")
		var c net.Conn
		inNS(t, far, func() (err error) { c, err = net.DialTimeout("tcp4", hostVethIP+":8080", 5*time.Second); return err })
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(line), c.LocalAddr().String(); got != want {
			t.Errorf("the container saw the client as %s, want %s", got, want)
		}
	})
	t.Run("published TCP: a client on the host's loopback is spliced", func(t *testing.T) {
		// A root daemon connects inside the container's namespace, to
		// the container's own address, and splices the two sockets
		// (TestHostUplinkDefaults has splice=off, the netstack's way).
		// A client of ::1 too: the container has no IPv6 address, so
		// over IPv4, as the netstack would carry it.
		tcpServer(t, c1, ":80")
		before := d.stats(t).HostUplink.PublishSpliced
		for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080"} {
			if got := seenAs(t, host, addr); got.Addr().String() != ip(p1) {
				t.Errorf("the container saw a spliced client of %s as %s, want its own address %s", addr, got, ip(p1))
			}
		}
		if s := d.stats(t).HostUplink; s.PublishSpliced != before+2 {
			t.Errorf("publish_spliced %d, want %d", s.PublishSpliced, before+2)
		}
	})
	t.Run("published UDP range", func(t *testing.T) {
		udpServer(t, c1, ":9001")
		if _, errOut, code := d.cli(t, "publish", "9000-9001:9000-9001/udp", "--to", "c1"); code != 0 {
			t.Fatalf("publish: exit %d: %s", code, errOut)
		}
		s := udpSocket(t, far, "")
		if got := mustUDP(t, s, hostVethIP+":9001"); got.Addr().String() != farIP {
			t.Errorf("the container saw the client as %s, want %s", got, farIP)
		}
	})
	t.Run("published TCP 50 MiB into the container, sha256 equal", func(t *testing.T) {
		hashServer(t, c1, ":82")
		upload(t, far, hostVethIP+":8082", 50<<20)
	})
	t.Run("published UDP: the container sees the client", func(t *testing.T) {
		udpServer(t, c1, ":81")
		s := udpSocket(t, far, "")
		got := mustUDP(t, s, hostVethIP+":8081")
		if want := netip.AddrPortFrom(netip.MustParseAddr(farIP), s.LocalAddr().(*net.UDPAddr).AddrPort().Port()); got != want {
			t.Errorf("the container saw the client as %s, want %s", got, want)
		}
	})
	t.Run("host port in use: a clear error, nothing published", func(t *testing.T) {
		var ln net.Listener
		inNS(t, host, func() (err error) { ln, err = net.Listen("tcp4", ":8090"); return err })
		defer ln.Close()
		c2 := newNS(t)
		_, errOut, code := d.cli(t, "attach", "--netns", "/run/netns/"+c2, "--name", "c2", "-p", "8090:80")
		if code != 1 || !strings.Contains(errOut, "8090") || !strings.Contains(errOut, "already in use") {
			t.Errorf("attach -p 8090:80 with 8090 taken: exit %d, %q; want exit 1 and a message naming the port", code, errOut)
		}
		_, errOut, code = d.cli(t, "publish", "8090:80", "--to", "c1")
		if code != 1 || !strings.Contains(errOut, "already in use") {
			t.Errorf("publish 8090:80 with 8090 taken: exit %d, %q", code, errOut)
		}
		out, _, _ := d.cli(t, "publish", "--list")
		if strings.Contains(out, "8090") {
			t.Errorf("8090 published after the errors:\n%s", out)
		}
		for _, p := range d.ports(t) {
			if p.Name == "c2" {
				t.Errorf("c2 attached after the error")
			}
		}
	})
	t.Run("host loopback through the gateway", func(t *testing.T) {
		tcpServer(t, host, "127.0.0.1:9000")
		if got := seenAs(t, c1, gatewayIP+":9000"); !got.Addr().IsLoopback() {
			t.Errorf("host loopback server saw %s, want a loopback address", got)
		}
	})
	t.Run("1000 short connections leave nothing behind", func(t *testing.T) {
		tcpServer(t, far, farIP+":7003")
		settle := func() api.Stats {
			var s api.Stats
			eventually(t, 20*time.Second, "tcp connections ended", func() bool {
				s = d.stats(t)
				return s.HostUplink.TCPActive == 0
			})
			return s
		}
		base := settle().Process
		inNS(t, c1, func() error {
			for i := range 1000 {
				c, err := net.DialTimeout("tcp4", farIP+":7003", 5*time.Second)
				if err != nil {
					return fmt.Errorf("connection %d: %w", i, err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil {
					return fmt.Errorf("connection %d: %w", i, err)
				}
			}
			return nil
		})
		var now api.ProcessStats
		eventually(t, 20*time.Second, "goroutines and fds back to the baseline", func() bool {
			s := settle()
			now = s.Process
			return now.Goroutines <= base.Goroutines+2 && now.OpenFDs <= base.OpenFDs
		})
		t.Logf("before: %+v, after: %+v", base, now)
	})
}

// TestHostUplinkDefaults: without --host-loopback the gateway's address is
// the gateway's (a reset, nothing made on the host); without
// ping_group_range permission ping is refused, counted and warned about
// once; with splice=off a published port's client on the host's loopback
// goes through the netstack and appears as 192.0.0.1.
func TestHostUplinkDefaults(t *testing.T) {
	requireRoot(t, "ping")
	d, host, far := startHost(t, false, "--uplink", "host,splice=off")
	c1 := newNS(t)
	d.attach(t, c1, "c1")

	t.Run("host loopback off", func(t *testing.T) {
		var accepted atomic.Int32
		serveTCP(t, host, "127.0.0.1:9000", func(net.Conn) { accepted.Add(1) })
		_, err := dialTCP(t, c1, gatewayIP+":9000", 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connect to the gateway's 9000: %v, want connection refused", err)
		}
		// The uplink's loopback address itself leads nowhere either.
		_, err = dialTCP(t, c1, "192.0.0.1:9000", 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connect to 192.0.0.1:9000: %v, want connection refused", err)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the host's loopback server accepted %d connections", n)
		}
		if s := d.stats(t).HostUplink; s.LoopbackRefused == 0 || s.TCPTotal != 0 {
			t.Errorf("loopback_refused %d, tcp_total %d: want > 0 and 0", s.LoopbackRefused, s.TCPTotal)
		}
	})
	t.Run("ping not permitted", func(t *testing.T) {
		out, err := pingOut(c1, farIP)
		if err == nil {
			t.Errorf("ping %s answered without ping_group_range:\n%s", farIP, out)
		}
		pingOut(c1, farIP)
		if s := d.stats(t).HostUplink; s.ICMPDenied < 2 || s.ICMPSockets != 0 {
			t.Errorf("icmp_denied %d, icmp_sockets %d: want >= 2 and 0", s.ICMPDenied, s.ICMPSockets)
		}
		if n := strings.Count(d.log.String(), "ping_group_range"); n != 1 {
			t.Errorf("the warning appears %d times in the log, want once:\n%s", n, d.log.String())
		}
	})
	t.Run("published TCP: a client on the host's loopback is 192.0.0.1", func(t *testing.T) {
		if _, errOut, code := d.cli(t, "publish", "8080:80", "--to", "c1"); code != 0 {
			t.Fatalf("publish: exit %d: %s", code, errOut)
		}
		tcpServer(t, c1, ":80")
		if got := seenAs(t, host, "127.0.0.1:8080"); got.Addr().String() != "192.0.0.1" {
			t.Errorf("the container saw a loopback client as %s, want 192.0.0.1", got)
		}
	})
	t.Run("TCP still works", func(t *testing.T) {
		tcpServer(t, far, farIP+":7001")
		if got := seenAs(t, c1, farIP+":7001"); got.Addr().String() != hostVethIP {
			t.Errorf("far server saw %s, want %s", got, hostVethIP)
		}
	})
}
