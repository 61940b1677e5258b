package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// TestPingMesh attaches three namespaces and pings every pair and the
// gateway, then checks the listings.
func TestPingMesh(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t)
	ns, ports := d.attachN(t, 3, "c")
	if want := "10.90.0.2/16"; ports[0].IP != want {
		t.Errorf("first port's address: got %s, want %s (Docker's .2 first)", ports[0].IP, want)
	}
	for i, from := range ns {
		ping(t, from, "10.90.0.1")
		for j, to := range ports {
			if i != j {
				ping(t, from, ip(to))
			}
		}
	}

	out, _, code := d.cli(t, "ports")
	if code != 0 {
		t.Fatalf("ports: exit %d", code)
	}
	for _, p := range ports {
		if !strings.Contains(out, p.Name) || !strings.Contains(out, p.MAC) || !strings.Contains(out, p.IP) {
			t.Errorf("ports table lacks %s %s %s:\n%s", p.Name, p.MAC, p.IP, out)
		}
	}
	for _, p := range d.ports(t) {
		if p.Stats.RxPackets == 0 || p.Stats.TxPackets == 0 {
			t.Errorf("port %s: rx %d tx %d packets after pings, want both > 0", p.Name, p.Stats.RxPackets, p.Stats.TxPackets)
		}
		// TAPs negotiate TSO; the gateway takes plain frames only.
		if want := "tso4"; p.Kind == "tap" && !strings.Contains(p.Offloads, want) {
			t.Errorf("port %s: offloads %q, want them to include %s", p.Name, p.Offloads, want)
		}
		if p.Kind == "gateway" && p.Offloads != "none" {
			t.Errorf("gateway: offloads %q, want none", p.Offloads)
		}
	}
	out, _, code = d.cli(t, "fdb")
	if code != 0 {
		t.Fatalf("fdb: exit %d", code)
	}
	for _, p := range ports {
		if !strings.Contains(out, p.MAC+"  "+p.Name) {
			t.Errorf("fdb lacks %s on %s:\n%s", p.MAC, p.Name, out)
		}
	}
	if !strings.Contains(out, "gateway") || !strings.Contains(out, "static") {
		t.Errorf("fdb lacks the gateway's static entry:\n%s", out)
	}
}

// transfer sends size bytes of pseudo-random data over TCP from a client in
// clientNS to a server in serverNS, and returns the sha256 of what was sent
// and of what arrived. progress, if not nil, counts bytes received.
func transfer(t *testing.T, clientNS, serverNS, serverIP string, size int64, progress *atomic.Int64) (sent, got [32]byte) {
	t.Helper()
	return transferVia(t, clientNS, serverNS, ":5201", net.JoinHostPort(serverIP, "5201"), size, progress)
}

// transferVia is transfer with the server listening on listen in serverNS
// and the client dialling dial, which may be a NAT's published address.
// Both use IPv6 when dial is an IPv6 address ("[ADDR]:PORT").
func transferVia(t *testing.T, clientNS, serverNS, listen, dial string, size int64, progress *atomic.Int64) (sent, got [32]byte) {
	t.Helper()
	network := "tcp4"
	if strings.HasPrefix(dial, "[") {
		network = "tcp6"
	}
	var ln net.Listener
	if err := netnsutil.Do(netnsutil.Path(serverNS), func() (err error) {
		ln, err = net.Listen(network, listen)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		var w io.Writer = h
		if progress != nil {
			w = io.MultiWriter(h, counter{progress})
		}
		n, err := io.Copy(w, c)
		res <- result{sum: [32]byte(h.Sum(nil)), n: n, err: err}
	}()

	var conn net.Conn
	if err := netnsutil.Do(netnsutil.Path(clientNS), func() (err error) {
		conn, err = net.DialTimeout(network, dial, 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size)
	n, err := io.Copy(io.MultiWriter(conn, h), src)
	conn.Close()
	if err != nil || n != size {
		t.Fatalf("send: %d of %d bytes: %v", n, size, err)
	}
	r := <-res
	if r.err != nil || r.n != size {
		t.Fatalf("receive: %d of %d bytes: %v", r.n, size, r.err)
	}
	return [32]byte(h.Sum(nil)), r.sum
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// TestTCPTransfer sends 100 MiB between two containers and compares hashes.
func TestTCPTransfer(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a, b, pb := d.attachAB(t)
	start := time.Now()
	sent, got := transfer(t, a, b, ip(pb), 100<<20, nil)
	if sent != got {
		t.Fatalf("sha256: sent %x, received %x", sent, got)
	}
	t.Logf("100 MiB in %s", time.Since(start).Round(time.Millisecond))
}

// packetSocket opens an AF_PACKET socket for ARP on eth0 inside ns.
func packetSocket(t *testing.T, ns string) (fd int, ifindex int) {
	t.Helper()
	err := netnsutil.Do(netnsutil.Path(ns), func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// received collects, for up to wait, the frames on fd that carry marker as
// their ARP target address and did not originate on this host.
func received(fd int, marker [4]byte, wait time.Duration) int {
	n := 0
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		m, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // the 100 ms receive timeout
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		// Ethernet 14 + ARP: target protocol address at 24..28 of ARP.
		if m >= 42 && [4]byte(buf[38:42]) == marker {
			n++
		}
	}
	return n
}

// TestBroadcastARP sends one broadcast ARP request from one container: every
// other container sees it once, and the sender never gets it back.
func TestBroadcastARP(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	ns, ports := d.attachN(t, 3, "b")
	fds := make([]int, 3)
	var ifindex0 int
	for i, n := range ns {
		fds[i], _ = packetSocket(t, n)
		if i == 0 {
			_, ifindex0 = packetSocket(t, n)
		}
	}
	// An ARP request for an address nobody has, in our own subnet.
	marker := [4]byte{10, 90, 255, 254}
	mac, _ := net.ParseMAC(ports[0].MAC)
	frame := arpFrame(mac, mac, ip(ports[0]), netip.AddrFrom4(marker).String())
	dst := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex0, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	if err := unix.Sendto(fds[0], frame, 0, dst); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		if n := received(fds[i], marker, 500*time.Millisecond); n != 1 {
			t.Errorf("%s received the broadcast %d times, want 1", ports[i].Name, n)
		}
	}
	if n := received(fds[0], marker, 300*time.Millisecond); n != 0 {
		t.Errorf("the sender %s got its own broadcast back %d times", ports[0].Name, n)
	}
}

// TestDetachUnderTraffic detaches a third container while two others
// stream: the stream arrives whole.
func TestDetachUnderTraffic(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a, b, c := newNS(t), newNS(t), newNS(t)
	d.attach(t, a, "a")
	pb := d.attach(t, b, "b")
	d.attach(t, c, "c")
	var progress atomic.Int64
	detached := make(chan error, 1)
	go func() {
		for progress.Load() < 8<<20 {
			time.Sleep(time.Millisecond)
		}
		_, errOut, code := d.cli(t, "detach", "c")
		if code != 0 {
			detached <- fmt.Errorf("detach: exit %d: %s", code, errOut)
			return
		}
		detached <- nil
	}()
	sent, got := transfer(t, a, b, ip(pb), 64<<20, &progress)
	if sent != got {
		t.Errorf("sha256: sent %x, received %x", sent, got)
	}
	if err := <-detached; err != nil {
		t.Fatal(err)
	}
	if slices.Contains(links(t, c), "eth0") {
		t.Error("eth0 still in the detached namespace")
	}
	for _, p := range d.ports(t) {
		if p.Name == "c" {
			t.Error("port c still listed after detach")
		}
	}
}

// TestNetnsDeleted deletes a container's namespace: its port goes away and
// its address is given to the next container.
func TestNetnsDeleted(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a, b, pb := d.attachAB(t)
	if err := netnsutil.Del(b); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "port b removed after its namespace was deleted", func() bool {
		for _, p := range d.ports(t) {
			if p.Name == "b" {
				return false
			}
		}
		return true
	})
	pc := d.attach(t, newNS(t), "c")
	if pc.IP != pb.IP {
		t.Errorf("next container got %s, want the released %s", pc.IP, pb.IP)
	}
	ping(t, a, ip(pc))
}

// TestAttachErrors checks that every bad attach fails with one clear line
// and leaves no TAP, address or port behind.
func TestAttachErrors(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	first := newNS(t)
	p1 := d.attach(t, first, "c1")
	ns := newNS(t)
	taken := newNS(t)
	if out, err := exec.Command("ip", "-n", taken, "link", "add", "eth0", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("add dummy eth0: %v: %s", err, out)
	}
	tests := []struct {
		name string
		args []string
		ns   string // namespace whose links must stay as they were
		want string // in the error line
	}{
		{"namespace missing", []string{"--netns", "/run/netns/tswi-no-such-ns", "--name", "x"}, ns, "network namespace not found"},
		{"name in use", []string{"--netns", netnsutil.Path(ns), "--name", "c1"}, ns, `port name "c1" is already in use`},
		{"ip outside subnet", []string{"--netns", netnsutil.Path(ns), "--ip", "10.91.0.5"}, ns, "outside the subnet 10.90.0.0/16"},
		{"ip taken", []string{"--netns", netnsutil.Path(ns), "--ip", ip(p1)}, ns, "is taken by port c1"},
		{"ip is the gateway", []string{"--netns", netnsutil.Path(ns), "--ip", "10.90.0.1"}, ns, "gateway"},
		{"malformed ip", []string{"--netns", netnsutil.Path(ns), "--ip", "10.90.0.300"}, ns, "not an IP address"},
		{"malformed mac", []string{"--netns", netnsutil.Path(ns), "--mac", "02:42:zz:00:00:01"}, ns, "mac"},
		{"multicast mac", []string{"--netns", netnsutil.Path(ns), "--mac", "01:00:5e:00:00:01"}, ns, "multicast"},
		{"mac taken", []string{"--netns", netnsutil.Path(ns), "--mac", p1.MAC}, ns, "is taken by c1"},
		{"interface name taken", []string{"--netns", netnsutil.Path(taken)}, taken, "already exists"},
		{"bad interface name", []string{"--netns", netnsutil.Path(ns), "--ifname", "a/b"}, ns, "a/b"},
		{"bad mtu", []string{"--netns", netnsutil.Path(ns), "--mtu", "70000"}, ns, "mtu 70000"},
	}
	// The daemon runs in this (the host's) namespace, where it creates each
	// TAP under a temporary name "tsw<its PID>_<n>" before moving it: none
	// may be left. Other links of the host come and go with other programs.
	tempPrefix := fmt.Sprintf("tsw%d_", d.cmd.Process.Pid)
	daemonLinks := func() []string {
		return slices.DeleteFunc(links(t, ""), func(n string) bool { return !strings.HasPrefix(n, tempPrefix) })
	}
	hostBefore := daemonLinks()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nsBefore := links(t, tt.ns)
			out, errOut, code := d.cli(t, append([]string{"attach"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit status: got %d, want 1 (stdout %q)", code, out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr: got %q, want one line containing %q", errOut, tt.want)
			}
			if after := links(t, tt.ns); !slices.Equal(after, nsBefore) {
				t.Errorf("namespace links: got %v, want %v", after, nsBefore)
			}
			if out, _ := exec.Command("ip", "-n", tt.ns, "-4", "-o", "addr", "show", "scope", "global").CombinedOutput(); len(out) != 0 {
				t.Errorf("an address was left in the namespace: %s", out)
			}
			if after := daemonLinks(); !slices.Equal(after, hostBefore) {
				t.Errorf("the daemon's links in the host namespace: got %v, want %v", after, hostBefore)
			}
			if got := len(d.ports(t)); got != 2 {
				t.Errorf("ports: got %d, want 2 (gateway and c1)", got)
			}
		})
	}
}

// TestSIGTERM checks that the daemon removes every TAP and its socket on
// SIGTERM and exits 0.
func TestSIGTERM(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a, b, _ := d.attachAB(t)
	if err := d.stop(t); err != nil {
		t.Fatalf("daemon exit: %v, want status 0\n%s", err, d.log.String())
	}
	for _, n := range []string{a, b} {
		if slices.Contains(links(t, n), "eth0") {
			t.Errorf("eth0 left in %s after SIGTERM", n)
		}
	}
	if _, err := os.Stat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestControlBeforeSubcommand: --control before the subcommand reaches the
// daemon as it does after it (tapswitch --control PATH ports, as docker -H),
// for a subcommand with subcommands of its own too; given both, the one
// after the subcommand wins.
func TestControlBeforeSubcommand(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	d.attach(t, newNS(t), "c1")
	for _, args := range [][]string{
		{"--control", d.sock, "ports"},
		{"--control=" + d.sock, "ports"},
		{"--control", "/nonexistent/tapswitch.sock", "ports", "--control", d.sock},
	} {
		if out, errOut, code := run(t, args...); code != 0 || !strings.Contains(out, "c1") || !strings.Contains(out, "10.90.0.2") {
			t.Errorf("tapswitch %q: exit %d, stdout %q, stderr %q; want the port c1 listed", args, code, out, errOut)
		}
	}
	if out, errOut, code := run(t, "--control", d.sock, "rule", "list", "--json"); code != 0 || out != "[]\n" {
		t.Errorf("tapswitch --control SOCK rule list: exit %d, stdout %q, stderr %q; want []", code, out, errOut)
	}
}

// TestSecondDaemonRefused starts a second daemon on the same socket.
func TestSecondDaemonRefused(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	_, errOut, code := run(t, "run", "--control", d.sock)
	if code != 1 || !strings.Contains(errOut, "another tapswitch daemon is running") {
		t.Errorf("second daemon: exit %d, stderr %q; want 1 and a refusal", code, errOut)
	}
	if _, _, code := d.cli(t, "ports"); code != 0 {
		t.Error("the first daemon stopped answering")
	}
}

// TestOverlappingSubnetRefused runs the daemon in a namespace that has a
// route into the asked subnet.
func TestOverlappingSubnetRefused(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	for _, args := range [][]string{
		{"link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"addr", "add", "10.77.1.1/24", "dev", "d0"},
		{"link", "set", "d1", "up"},
		{"link", "set", "d0", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "--subnet", "10.77.0.0/16", "--control", t.TempDir()+"/s.sock")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "overlaps the route 10.77.1.0/24 dev d0") {
		t.Errorf("run: got %q, want a refusal naming the route", out)
	}
}
