package integration

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
	"github.com/tapswitch/tapswitch/internal/testutil"
)

// The outside world of the NAT tests: a "lan" namespace on the uplink's
// link, with a second address on its loopback that the switch reaches
// through its gateway (the lan's 198.51.100.1).
const (
	lanIP  = "198.51.100.1" // the lan's address on the link, the uplink's gateway
	lanIP2 = "203.0.113.1"  // off the link: routed via lanIP
	upIP   = "198.51.100.2" // the switch's uplink address
	upMTU  = 1400           // smaller than the containers' 1500, for fragmentation needed
)

// startNAT creates a lan namespace and a daemon whose TAP uplink is in it,
// with args added to `tapswitch run`.
func startNAT(t *testing.T, args ...string) (*daemon, string) {
	t.Helper()
	lan := newNS(t)
	spec := "tap,netns=" + netnsutil.Path(lan) + ",ifname=ts0,ip=" + upIP + "/24,gw=" + lanIP + ",mtu=" + strconv.Itoa(upMTU)
	d := startDaemon(t, append([]string{"--uplink", spec}, args...)...)
	for _, a := range [][]string{
		{"-n", lan, "addr", "add", lanIP + "/24", "dev", "ts0"},
		{"-n", lan, "addr", "add", lanIP2 + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", a, err, out)
		}
	}
	return d, lan
}

// inNS runs fn inside the namespace ns, failing the test on error.
func inNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := netnsutil.Do(netnsutil.Path(ns), fn); err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
}

// tcpServer listens on addr in ns. Each connection first receives the
// client's address as the server sees it, on a line, then an echo of
// what it sends.
func tcpServer(t *testing.T, ns, addr string) {
	t.Helper()
	serveTCP(t, ns, addr, func(c net.Conn) {
		c.Write([]byte(c.RemoteAddr().String() + "\n"))
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			c.Write(buf[:n])
		}
	})
}

// serveTCP listens on addr in ns until the test ends and runs handle on
// each connection, on a goroutine of its own, closing it after.
func serveTCP(t *testing.T, ns, addr string, handle func(net.Conn)) {
	t.Helper()
	ln, err := netnsutil.ServeTCP(ns, family("tcp", addr), addr, handle)
	if err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
}

// udpServer listens on addr in ns and answers every datagram with the
// sender's address as the server sees it.
func udpServer(t *testing.T, ns, addr string) {
	t.Helper()
	var pc net.PacketConn
	inNS(t, ns, func() (err error) { pc, err = net.ListenPacket(family("udp", addr), addr); return err })
	t.Cleanup(func() { pc.Close() })
	go testutil.ServeUDP(pc, func(_ []byte, from net.Addr) []byte { return []byte(from.String()) })
}

// family returns proto ("tcp", "udp") for the family of addr's host:
// IPv6 for an IPv6 literal ("[::]:80"), IPv4 otherwise (":80" too).
func family(proto, addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil && strings.Contains(h, ":") {
		return proto + "6"
	}
	return proto + "4"
}

// dialTCP connects from ns to addr within timeout.
func dialTCP(t *testing.T, ns, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNS(t, ns, func() error {
		c, err = net.DialTimeout(family("tcp", addr), addr, timeout)
		return nil
	})
	if err == nil {
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return c, err
}

// seenAs connects from ns to the TCP server at addr and returns the client
// address the server saw.
func seenAs(t *testing.T, ns, addr string) netip.AddrPort {
	t.Helper()
	c, err := dialTCP(t, ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", ns, addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return netip.MustParseAddrPort(strings.TrimSpace(line))
}

// udpSocket opens a UDP socket in ns bound to laddr ("" for any).
func udpSocket(t *testing.T, ns, laddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() error {
		pc, err := net.ListenPacket(family("udp", laddr), laddr)
		if err == nil {
			c = pc.(*net.UDPConn)
		}
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// udpAsk sends a datagram from c to addr and returns the reply (the
// sender's address as the server saw it), or an error after wait.
func udpAsk(c *net.UDPConn, addr string, wait time.Duration) (string, error) {
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	buf := make([]byte, 1500)
	// UDP may lose the first datagram while ARP resolves: ask twice.
	for try := 0; try < 2; try++ {
		if _, err := c.WriteToUDP([]byte("hello"), dst); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(wait / 2))
		n, _, err := c.ReadFromUDP(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if try == 1 {
			return "", err
		}
	}
	return "", nil
}

func mustUDP(t *testing.T, c *net.UDPConn, addr string) netip.AddrPort {
	t.Helper()
	r, err := udpAsk(c, addr, 4*time.Second)
	if err != nil {
		t.Fatalf("UDP from %s to %s: %v", c.LocalAddr(), addr, err)
	}
	return netip.MustParseAddrPort(r)
}

func (d *daemon) conntrack(t *testing.T) []api.ConntrackEntry {
	t.Helper()
	return cliJSON[[]api.ConntrackEntry](t, d, "conntrack", "--json")
}

func (d *daemon) ctStats(t *testing.T) api.ConntrackStats {
	t.Helper()
	return cliJSON[api.ConntrackStats](t, d, "conntrack", "--stats", "--json")
}

// wantUDPRefused sends to the closed UDP port addr from ns until a read
// fails (up to three tries) and wants that failure to be "connection
// refused": the ICMP port unreachable, translated back to the container.
func wantUDPRefused(t *testing.T, ns, addr string) {
	t.Helper()
	var c net.Conn
	inNS(t, ns, func() (err error) { c, err = net.Dial(family("udp", addr), addr); return err })
	defer c.Close()
	var err error
	for try := 0; try < 3 && !errors.Is(err, syscall.ECONNREFUSED); try++ {
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 100))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after sending to closed port %s: %v, want connection refused (the ICMP port unreachable, translated)", addr, err)
	}
}

func pingOut(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ping", "-c", "1", "-W", "2"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestNATOutbound: containers reach the lan through the uplink with TCP,
// UDP and ping, masqueraded to the uplink address; mappings are endpoint
// independent and distinct per container; ICMP errors come back
// translated; the gateway sends time exceeded and fragmentation needed.
func TestNATOutbound(t *testing.T) {
	requireRoot(t, "ping")
	d, lan := startNAT(t)
	c1, c2 := newNS(t), newNS(t)
	p1 := d.attach(t, c1, "c1")
	d.attach(t, c2, "c2")
	tcpServer(t, lan, lanIP+":7000")
	udpServer(t, lan, lanIP+":7001")
	udpServer(t, lan, lanIP2+":7001")

	t.Run("ping", func(t *testing.T) {
		ping(t, c1, lanIP)
		ping(t, c1, lanIP2) // through the uplink's gateway
		ping(t, lan, upIP)  // the switch answers on its uplink address
	})
	t.Run("TCP seen from the uplink address", func(t *testing.T) {
		if got := seenAs(t, c1, lanIP+":7000"); got.Addr().String() != upIP {
			t.Errorf("lan server saw %s, want %s", got, upIP)
		}
	})
	t.Run("UDP EIM: one mapping for two destinations", func(t *testing.T) {
		s := udpSocket(t, c1, ":40000")
		a := mustUDP(t, s, lanIP+":7001")
		b := mustUDP(t, s, lanIP2+":7001")
		if a.Addr().String() != upIP || a != b {
			t.Errorf("mapped %s for %s and %s for %s, want the same %s:port (RFC 4787 REQ-1)", a, lanIP, b, lanIP2, upIP)
		}
	})
	t.Run("UDP: two containers, same source port, distinct mappings", func(t *testing.T) {
		a := mustUDP(t, udpSocket(t, c1, ":40001"), lanIP+":7001")
		b := mustUDP(t, udpSocket(t, c2, ":40001"), lanIP+":7001")
		if a.Addr().String() != upIP || b.Addr().String() != upIP || a.Port() == b.Port() {
			t.Errorf("c1 mapped to %s, c2 to %s: want distinct ports on %s", a, b, upIP)
		}
	})
	t.Run("UDP to a closed port: connection refused", func(t *testing.T) {
		wantUDPRefused(t, c1, lanIP+":7999")
	})
	t.Run("TTL 1: time exceeded", func(t *testing.T) {
		out, _ := pingOut(c1, "-t", "1", lanIP)
		if !strings.Contains(out, "From 10.90.0.1") || !strings.Contains(out, "Time to live exceeded") {
			t.Errorf("ping -t 1 %s:\n%s\nwant time exceeded from the gateway", lanIP, out)
		}
	})
	t.Run("DF over the uplink MTU: fragmentation needed", func(t *testing.T) {
		out, _ := pingOut(c1, "-M", "do", "-s", "1450", lanIP)
		if !strings.Contains(out, "Frag needed") || !strings.Contains(out, "mtu = "+strconv.Itoa(upMTU)) {
			t.Errorf("ping -M do -s 1450 %s:\n%s\nwant fragmentation needed with mtu %d", lanIP, out, upMTU)
		}
		// Without DF the gateway fragments: the lan reassembles the
		// datagram and answers (briefly: NAT drops non-first
		// fragments, so the answer must fit in one packet).
		s := udpSocket(t, c2, "")
		rc, err := s.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DONT)
		})
		if err != nil {
			t.Fatal(err)
		}
		big := make([]byte, 1450)
		for try := 0; try < 2; try++ {
			s.WriteToUDP(big, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(lanIP+":7001")))
			s.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err = s.ReadFromUDP(make([]byte, 100)); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("a 1478-byte UDP datagram without DF over a %d-byte uplink: no answer: %v", upMTU, err)
		}
	})
	t.Run("conntrack lists the flows", func(t *testing.T) {
		var tcp, udp, icmp bool
		for _, e := range d.conntrack(t) {
			if e.Orig.Src != ip(p1) {
				continue
			}
			switch {
			case e.Proto == "tcp" && e.Orig.Dst == lanIP && e.Orig.Dport == 7000 && e.Reply.Dst == upIP:
				tcp = true
			case e.Proto == "udp" && e.Orig.Sport == 40000 && e.Reply.Src == lanIP2 && e.ReplyPackets > 0:
				udp = true
			case e.Proto == "icmp" && e.Orig.Dst == lanIP:
				icmp = true
			}
		}
		if !tcp || !udp || !icmp {
			out, _, _ := d.cli(t, "conntrack")
			t.Errorf("conntrack: tcp %v udp %v icmp %v, want all three of c1's flows:\n%s", tcp, udp, icmp, out)
		}
		out, _, code := d.cli(t, "conntrack")
		if code != 0 || !strings.Contains(out, "src="+ip(p1)+" dst="+lanIP+" sport=") || !strings.Contains(out, "flow entries have been shown") {
			t.Errorf("conntrack table (exit %d):\n%s", code, out)
		}
	})
}

// TestNATPublish: published TCP and UDP ports and a range reach the
// container, which sees the lan client's address; hairpin from another
// container; an unpublished port is not reachable; publish and unpublish
// at runtime; detach removes the container's publishes.
func TestNATPublish(t *testing.T) {
	requireRoot(t)
	d, lan := startNAT(t)
	web, other := newNS(t), newNS(t)
	p := d.attach(t, web, "web", "-p", "8080:80", "-p", "5353:53/udp", "-p", "9000-9002:7000-7002/udp")
	if strings.Join(p.Publish, " ") != "8080:80/tcp 5353:53/udp 9000-9002:7000-7002/udp" {
		t.Errorf("attach reports publish %q", p.Publish)
	}
	d.attach(t, other, "other")
	for _, a := range []string{":80", ":81", ":443"} {
		tcpServer(t, web, a)
	}
	udpServer(t, web, ":53")
	udpServer(t, web, ":7001")

	t.Run("lan to TCP 8080 keeps the client address", func(t *testing.T) {
		if got := seenAs(t, lan, upIP+":8080"); got.Addr().String() != lanIP {
			t.Errorf("web saw %s, want the lan client %s", got, lanIP)
		}
	})
	t.Run("lan to UDP 5353 and the range", func(t *testing.T) {
		s := udpSocket(t, lan, "")
		if got := mustUDP(t, s, upIP+":5353"); got.Addr().String() != lanIP {
			t.Errorf("web saw %s, want %s", got, lanIP)
		}
		if got := mustUDP(t, s, upIP+":9001"); got.Addr().String() != lanIP {
			t.Errorf("web (port 7001 of the range) saw %s, want %s", got, lanIP)
		}
	})
	t.Run("hairpin TCP and UDP", func(t *testing.T) {
		if got := seenAs(t, other, upIP+":8080"); got.Addr().String() != upIP {
			t.Errorf("web saw %s through the hairpin, want %s (RFC 5382 REQ-8)", got, upIP)
		}
		if got := mustUDP(t, udpSocket(t, other, ""), upIP+":5353"); got.Addr().String() != upIP {
			t.Errorf("web saw %s through the hairpin, want %s (RFC 4787 REQ-9)", got, upIP)
		}
	})
	t.Run("unpublished port is not reachable", func(t *testing.T) {
		if c, err := dialTCP(t, lan, upIP+":81", time.Second); err == nil {
			c.Close()
			t.Errorf("connected from the lan to unpublished %s:81", upIP)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"publish", "8080-8081:90-91", "--to", "other"}, 1, "overlaps"},
			{[]string{"publish", "9000-9001:80", "--to", "other"}, 2, "differ in length"},
			{[]string{"publish", "70000:80", "--to", "other"}, 2, "not a port number"},
			{[]string{"publish", "8081:80", "--to", "nobody"}, 1, `no port named "nobody"`},
			{[]string{"publish", "8081:80"}, 2, "--to NAME is required"},
			{[]string{"unpublish", "1234/udp"}, 1, "no such published port"},
			{[]string{"unpublish", "1234/sctp"}, 2, "tcp or udp"},
		} {
			_, errOut, code := d.cli(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("tapswitch %s: exit %d, %q; want exit %d and %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.want)
			}
		}
		// An attach whose publish conflicts leaves nothing behind.
		ns := newNS(t)
		_, errOut, code := d.cli(t, "attach", "--netns", netnsutil.Path(ns), "--name", "late", "-p", "5353:53/udp")
		if code != 1 || !strings.Contains(errOut, "overlaps") {
			t.Errorf("attach with an overlapping publish: exit %d %q", code, errOut)
		}
		for _, q := range d.ports(t) {
			if q.Name == "late" {
				t.Errorf("a failed attach left port %s", q.Name)
			}
		}
	})
	t.Run("publish and unpublish at runtime", func(t *testing.T) {
		out, errOut, code := d.cli(t, "publish", "8443:443", "--to", "web")
		if code != 0 || !strings.Contains(out, "published 8443:443/tcp to web") {
			t.Fatalf("publish: exit %d %q %q", code, out, errOut)
		}
		out, _, _ = d.cli(t, "ports")
		if !strings.Contains(out, "8080:80/tcp,8443:443/tcp,5353:53/udp,9000-9002:7000-7002/udp") {
			t.Errorf("ports lacks the PUBLISH column:\n%s", out)
		}
		c, err := dialTCP(t, lan, upIP+":8443", 5*time.Second)
		if err != nil {
			t.Fatalf("connect to the new publish: %v", err)
		}
		r := bufio.NewReader(c)
		r.ReadString('\n')
		if _, _, code := d.cli(t, "unpublish", "8443/tcp"); code != 0 {
			t.Fatalf("unpublish: exit %d", code)
		}
		if c2, err := dialTCP(t, lan, upIP+":8443", time.Second); err == nil {
			c2.Close()
			t.Errorf("a new connection to %s:8443 after unpublish succeeded", upIP)
		}
		// The connection made before lives on.
		c.Write([]byte("still there\n"))
		if line, err := r.ReadString('\n'); err != nil || line != "still there\n" {
			t.Errorf("the established connection after unpublish: %q, %v", line, err)
		}
	})
	t.Run("detach removes the publishes", func(t *testing.T) {
		if _, _, code := d.cli(t, "detach", "web"); code != 0 {
			t.Fatalf("detach: exit %d", code)
		}
		out, _, _ := d.cli(t, "publish", "--list")
		if strings.Contains(out, "web") {
			t.Errorf("publish --list after detaching web:\n%s", out)
		}
	})
}

// TestNATConntrackTimeouts: flows expire after a short configured timeout,
// and --flush empties the table.
func TestNATConntrackTimeouts(t *testing.T) {
	requireRoot(t)
	d, lan := startNAT(t, "--ct-udp-timeout", "2s", "--ct-udp-unreplied-timeout", "2s")
	c1 := newNS(t)
	d.attach(t, c1, "c1")
	udpServer(t, lan, lanIP+":7001")
	mustUDP(t, udpSocket(t, c1, ""), lanIP+":7001")
	if es := d.conntrack(t); len(es) != 1 || es[0].Proto != "udp" || es[0].State != "REPLIED" || es[0].Timeout > 2 {
		t.Fatalf("conntrack after one UDP exchange: %+v, want one replied udp entry with at most 2s left", es)
	}
	eventually(t, 6*time.Second, "the UDP flow expires", func() bool { return len(d.conntrack(t)) == 0 })
	if s := d.ctStats(t); s.Expired == 0 {
		t.Errorf("stats after expiry: %+v, want expired > 0", s)
	}

	// A TCP connection, whose timeouts were not shortened.
	tcpServer(t, lan, lanIP+":7000")
	seenAs(t, c1, lanIP+":7000")
	out, _, code := d.cli(t, "conntrack", "--flush")
	if code != 0 || !strings.Contains(out, "1 flow entries have been deleted") {
		t.Errorf("conntrack --flush: exit %d %q", code, out)
	}
	if es := d.conntrack(t); len(es) != 0 {
		t.Errorf("conntrack after --flush: %+v", es)
	}
}

// TestNATTableFull: with room for one connection, an established TCP
// connection keeps working while new flows are refused and counted.
func TestNATTableFull(t *testing.T) {
	requireRoot(t)
	d, lan := startNAT(t, "--ct-max", "1")
	c1 := newNS(t)
	d.attach(t, c1, "c1")
	tcpServer(t, lan, lanIP+":7000")
	udpServer(t, lan, lanIP+":7001")
	c, err := dialTCP(t, c1, lanIP+":7000", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	r.ReadString('\n')
	if _, err := udpAsk(udpSocket(t, c1, ""), lanIP+":7001", time.Second); err == nil {
		t.Errorf("a new UDP flow got through a full table")
	}
	if s := d.ctStats(t); s.Refused == 0 || s.Drops["table-full"] == 0 {
		t.Errorf("stats %+v, want refused and table-full drops counted", s)
	}
	c.Write([]byte("established\n"))
	if line, err := r.ReadString('\n'); err != nil || line != "established\n" {
		t.Errorf("the established connection with a full table: %q, %v", line, err)
	}
}

// TestNATNoUplink: without an uplink, publishing is refused clearly.
func TestNATNoUplink(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	ns := newNS(t)
	_, errOut, code := d.cli(t, "attach", "--netns", netnsutil.Path(ns), "-p", "8080:80")
	if code != 1 || !strings.Contains(errOut, "needs an uplink") {
		t.Errorf("attach -p without an uplink: exit %d %q", code, errOut)
	}
	d.attach(t, ns, "c1")
	_, errOut, code = d.cli(t, "publish", "8080:80", "--to", "c1")
	if code != 1 || !strings.Contains(errOut, "needs an uplink") {
		t.Errorf("publish without an uplink: exit %d %q", code, errOut)
	}
	_, errOut, code = run(t, "run", "--uplink", "tap,netns=/nonexistent,ip=198.51.100.2/33")
	if code != 2 || !strings.Contains(errOut, "ip=198.51.100.2/33") {
		t.Errorf("run with a bad --uplink: exit %d %q", code, errOut)
	}
}

// TestNATBulk moves 64 MiB each way through NAT and the routed TAP uplink,
// whose TAP has offloads on, so the kernels on both sides send TSO
// super-frames: container -> lan (masquerade) and lan -> a published port
// (DNAT) keep their sha256, and the uplink's counters show the super-frames
// crossed it whole each way (none segmented in software, frames larger
// than the link's MTU on average).
func TestNATBulk(t *testing.T) {
	requireRoot(t)
	d, lan := startNAT(t, "--metrics", "127.0.0.1:0")
	c1 := newNS(t)
	d.attach(t, c1, "c1", "-p", "15201:5201")
	const size = 64 << 20
	t.Run("container to lan", func(t *testing.T) {
		before := d.tapUplink(t)
		sent, got := transferVia(t, c1, lan, lanIP+":5202", lanIP+":5202", size, nil)
		if sent != got {
			t.Errorf("sha256: sent %x, received %x", sent, got)
		}
		s := d.tapUplink(t)
		wantSuperFrames(t, "sent", s.TxPackets-before.TxPackets, s.TxBytes-before.TxBytes, s.TxGSO-before.TxGSO)
	})
	t.Run("lan to published port", func(t *testing.T) {
		before := d.tapUplink(t)
		sent, got := transferVia(t, lan, c1, ":5201", upIP+":15201", size, nil)
		if sent != got {
			t.Errorf("sha256: sent %x, received %x", sent, got)
		}
		s := d.tapUplink(t)
		wantSuperFrames(t, "received", s.RxPackets-before.RxPackets, s.RxBytes-before.RxBytes, s.RxGSO-before.RxGSO)
		if s.RxSegmented != 0 {
			t.Errorf("uplink segmented %d super-frames in software, want 0", s.RxSegmented)
		}
		// The container's port took them whole too.
		for _, p := range d.ports(t) {
			if p.Name == "c1" && p.Stats.TxBytes/max(p.Stats.TxPackets, 1) <= 1514 {
				t.Errorf("port c1: %d bytes a frame on average, want more than 1514 (super-frames)", p.Stats.TxBytes/max(p.Stats.TxPackets, 1))
			}
		}
	})
	// The same counters in /metrics: scraped after `stats`, each at least
	// what it showed (counters only grow).
	s := d.tapUplink(t)
	mf := scrapeMetrics(t, metricsURL(t, d))
	for _, m := range []struct {
		name, label, value string
		min                uint64
	}{
		{"tapswitch_tap_uplink_gso_total", "direction", "in", s.RxGSO},
		{"tapswitch_tap_uplink_gso_total", "direction", "out", s.TxGSO},
		{"tapswitch_tap_uplink_packets_total", "direction", "in", s.RxPackets},
		{"tapswitch_tap_uplink_rx_segmented_total", "", "", s.RxSegmented},
		{"tapswitch_tap_uplink_rx_csum_total", "", "", s.RxCsum},
	} {
		got, ok := metricValue(mf, m.name, m.label, m.value)
		if !ok || got < float64(m.min) {
			t.Errorf("/metrics %s{%s=%q}: got %v (found %v), want at least %d as in stats", m.name, m.label, m.value, got, ok, m.min)
		}
	}
}

// metricValue returns the value of the counter or gauge name whose label
// has value (any, when label is ""), and whether there is one.
func metricValue(mf map[string]*dto.MetricFamily, name, label, value string) (float64, bool) {
	for _, m := range mf[name].GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			match = match || l.GetName() == label && l.GetValue() == value
		}
		if match {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// wantSuperFrames checks what the uplink moved one way (n datagrams of b
// bytes in all, gso of them super-frames): super-frames, more than the
// link's MTU on average.
func wantSuperFrames(t *testing.T, way string, n, b, gso uint64) {
	t.Helper()
	avg := b / max(n, 1)
	t.Logf("uplink: %d datagrams %s, %d super-frames, %d bytes", n, way, gso, b)
	if gso == 0 || avg <= upMTU {
		t.Errorf("uplink %s %d datagrams of %d bytes on average, %d super-frames: want super-frames, more than %d bytes on average",
			way, n, avg, gso, upMTU)
	}
}

// tapUplink returns the TAP uplink's counters.
func (d *daemon) tapUplink(t *testing.T) api.TAPUplinkStats {
	t.Helper()
	s := cliJSON[api.Stats](t, d, "stats", "--json")
	if s.TAPUplink == nil {
		t.Fatalf("stats --json: no tap_uplink in %+v", s)
	}
	return *s.TAPUplink
}
