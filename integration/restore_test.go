package integration

import (
	"bufio"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// stream is a TCP connection from one container to another that sends
// paced pseudo-random data until stop is closed, while the server hashes
// what arrives.
type stream struct {
	stop    chan struct{}
	sent    chan [32]byte // the sha256 of what was sent, once stopped
	got     chan [32]byte // the sha256 of what arrived, at EOF
	sendErr chan error
}

// startStream connects from clientNS to a server it starts in serverNS at
// serverIP:5301 and sends 32 KiB every 10 ms (about 3 MB/s).
func startStream(t *testing.T, clientNS, serverNS, serverIP string) *stream {
	t.Helper()
	s := &stream{stop: make(chan struct{}), sent: make(chan [32]byte, 1), got: make(chan [32]byte, 1), sendErr: make(chan error, 1)}
	serveTCP(t, serverNS, ":5301", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		io.Copy(h, c)
		s.got <- [32]byte(h.Sum(nil))
	})
	c, err := dialTCP(t, clientNS, net.JoinHostPort(serverIP, "5301"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() {
		h := sha256.New()
		src := rand.NewChaCha8([32]byte{7})
		buf := make([]byte, 32<<10)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				c.(*net.TCPConn).CloseWrite()
				s.sent <- [32]byte(h.Sum(nil))
				s.sendErr <- nil
				return
			case <-tick.C:
			}
			src.Read(buf)
			if _, err := c.Write(buf); err != nil {
				s.sent <- [32]byte(h.Sum(nil))
				s.sendErr <- err
				return
			}
			h.Write(buf)
		}
	}()
	return s
}

// finish stops the stream and wants what arrived to be what was sent, on
// the same connection.
func (s *stream) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	if err := <-s.sendErr; err != nil {
		t.Fatalf("stream: send: %v", err)
	}
	sent := <-s.sent
	select {
	case got := <-s.got:
		if got != sent {
			t.Errorf("stream: sha256 of what arrived %x, of what was sent %x", got, sent)
		}
	case <-time.After(time.Minute):
		t.Fatal("stream: the server did not see the end of the stream")
	}
}

// pinger pings addr from ns every 20 ms with timestamps (ping -D) until
// stopped, and returns the times of the replies.
type pinger struct {
	cmd   *exec.Cmd
	times chan []time.Time
}

func startPinger(t *testing.T, ns, addr string) *pinger {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.02", "-w", "60", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pinger{cmd: cmd, times: make(chan []time.Time, 1)}
	go func() {
		var ts []time.Time
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "[") || !strings.Contains(line, "bytes from") {
				continue
			}
			// "[1764781234.567890] 64 bytes from ..."
			stamp := strings.Trim(strings.Fields(line)[0], "[]")
			if f, err := strconv.ParseFloat(stamp, 64); err == nil {
				ts = append(ts, time.Unix(0, int64(f*1e9)))
			}
		}
		p.times <- ts
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// stopPinger stops it and returns the reply times.
func (p *pinger) stopPinger() []time.Time {
	p.cmd.Process.Signal(syscall.SIGINT)
	ts := <-p.times
	p.cmd.Wait()
	return ts
}

// TestLiveRestore: with --live-restore, a daemon killed (kill -9) or
// stopped (SIGTERM) under a TCP stream and a 20 ms ping between two
// containers, then started again, adopts the ports: the stream goes on
// (same connection, sha256 equal), pings resume within 2 s of the new
// daemon answering, ports and publishes are back and a published port
// answers through the host uplink. tapswitch shutdown then removes
// everything; a daemon without --live-restore removes what one with it
// left.
func TestLiveRestore(t *testing.T) {
	requireRoot(t, "ping")
	for _, how := range []string{"kill -9", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			// DNS on (an upstream of the host namespace's own loopback,
			// never asked) for the aliases, which are kept as well.
			dnsArgs := []string{"--dns-upstream", "127.0.0.1:9"}
			d, host, far := startHost(t, false, append([]string{"--live-restore"}, dnsArgs...)...)
			dir := filepath.Dir(d.sock)
			c1, c2 := newNS(t), newNS(t)
			d.attach(t, c1, "c1", "--no-resolv-conf")
			p2 := d.attach(t, c2, "c2", "-p", "8080:80", "--no-resolv-conf", "--alias", "web2")
			if out, errOut, code := d.cli(t, "alias", "c2", "web2", "www2"); code != 0 {
				t.Fatalf("tapswitch alias c2 web2 www2: exit %d: %s%s", code, out, errOut)
			}
			tcpServer(t, c2, ":80")
			ping(t, c1, ip(p2))
			s := startStream(t, c1, c2, ip(p2))
			pg := startPinger(t, c1, ip(p2))
			time.Sleep(500 * time.Millisecond) // traffic before the stop

			stopped := time.Now()
			if how == "kill -9" {
				d.cmd.Process.Kill()
				<-d.exited
			} else if err := d.stop(t); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			if !slices.Contains(links(t, c1), "eth0") || !slices.Contains(links(t, c2), "eth0") {
				t.Fatalf("the TAPs went with the daemon: c1 %v, c2 %v", links(t, c1), links(t, c2))
			}
			d2 := startDaemonWith(t, dir, []string{"ip", "netns", "exec", host}, append([]string{"--uplink", "host", "--live-restore"}, dnsArgs...)...)
			up := time.Now()
			t.Logf("restart gap (stop to the new daemon answering): %v", up.Sub(stopped).Round(time.Millisecond))
			if !strings.Contains(d2.log.String(), "port restored") {
				t.Errorf("the new daemon's log does not say what it restored:\n%s", d2.log.String())
			}
			var names []string
			for _, p := range d2.ports(t) {
				names = append(names, p.Name)
			}
			if !slices.Contains(names, "c1") || !slices.Contains(names, "c2") {
				t.Errorf("ports after the restart: %v, want c1 and c2", names)
			}
			if p, _ := d2.portNamed(t, "c2"); !slices.Equal(p.Aliases, []string{"web2", "www2"}) {
				t.Errorf("c2's aliases after the restart: %v, want the ones set after the attach, [web2 www2]", p.Aliases)
			}
			out, _, _ := d2.cli(t, "publish", "--list")
			if !strings.Contains(out, "8080") {
				t.Errorf("publishes after the restart: %q, want 8080", out)
			}
			if got := seenAs(t, far, hostVethIP+":8080"); got.Addr().String() != farIP {
				t.Errorf("published port after the restart: the container saw %s, want %s", got, farIP)
			}
			time.Sleep(2500 * time.Millisecond)
			ts := pg.stopPinger()
			s.finish(t)
			i := slices.IndexFunc(ts, func(x time.Time) bool { return x.After(up) })
			switch {
			case i < 0:
				t.Errorf("no ping reply after the restart (%d replies before)", len(ts))
			case ts[i].Sub(up) > 2*time.Second:
				t.Errorf("first ping reply %v after the new daemon answered, want within 2 s", ts[i].Sub(up))
			default:
				t.Logf("pings: %d replies; first after the restart %v after the new daemon answered", len(ts), ts[i].Sub(up).Round(time.Millisecond))
			}
			if how == "SIGTERM" {
				// tapswitch shutdown removes them for good.
				if _, errOut, code := d2.cli(t, "shutdown"); code != 0 {
					t.Fatalf("shutdown: exit %d: %s", code, errOut)
				}
				select {
				case <-d2.exited:
				case <-time.After(10 * time.Second):
					t.Fatal("daemon still running 10 s after tapswitch shutdown")
				}
				for _, ns := range []string{c1, c2} {
					if slices.Contains(links(t, ns), "eth0") {
						t.Errorf("eth0 still in %s after shutdown", ns)
					}
				}
				return
			}
			// kill -9 again, and a daemon without --live-restore cleans up.
			d2.cmd.Process.Kill()
			<-d2.exited
			d3 := startDaemonWith(t, dir, []string{"ip", "netns", "exec", host}, "--uplink", "host")
			if !strings.Contains(d3.log.String(), "removed the TAP of a port a live-restore daemon left") {
				t.Errorf("the daemon without --live-restore does not say what it removed:\n%s", d3.log.String())
			}
			for _, ns := range []string{c1, c2} {
				if slices.Contains(links(t, ns), "eth0") {
					t.Errorf("eth0 left in %s by a daemon without --live-restore", ns)
				}
			}
			if n := len(d3.ports(t)); n != 1 { // the gateway
				t.Errorf("%d ports, want only the gateway", n)
			}
		})
	}
}

// TestLiveRestoreTAPUplink: the routed TAP uplink is kept too: after a
// kill -9 and a start with --live-restore, ts0 is the same interface, with
// the address the lan gave it, and a published port answers the lan again;
// a daemon without --live-restore then replaces the leftover ts0.
func TestLiveRestoreTAPUplink(t *testing.T) {
	requireRoot(t)
	d, lan := startNAT(t, "--live-restore")
	spec := "tap,netns=" + netnsutil.Path(lan) + ",ifname=ts0,ip=" + upIP + "/24,gw=" + lanIP + ",mtu=" + strconv.Itoa(upMTU)
	dir := filepath.Dir(d.sock)
	web := newNS(t)
	d.attach(t, web, "web", "-p", "8080:80")
	tcpServer(t, web, ":80")
	if got := seenAs(t, lan, upIP+":8080"); got.Addr().String() != lanIP {
		t.Fatalf("published port: web saw %s, want %s", got, lanIP)
	}
	d.cmd.Process.Kill()
	<-d.exited
	if !slices.Contains(links(t, lan), "ts0") {
		t.Fatalf("ts0 went with the daemon: %v", links(t, lan))
	}
	d2 := startDaemonWith(t, dir, nil, "--uplink", spec, "--live-restore")
	if got := seenAs(t, lan, upIP+":8080"); got.Addr().String() != lanIP {
		t.Errorf("published port after the restart: web saw %s, want %s", got, lanIP)
	}
	d2.cmd.Process.Kill()
	<-d2.exited
	d3 := startDaemonWith(t, dir, nil, "--uplink", spec)
	if !strings.Contains(d3.log.String(), "removed the uplink TAP a live-restore daemon left") {
		t.Errorf("the daemon without --live-restore does not say it replaced ts0:\n%s", d3.log.String())
	}
}

// TestRootlessLiveRestore: a daemon run as nobody with --live-restore,
// killed (kill -9) with two rootless containers attached by pid, leaves
// their TAPs; the next one adopts them through the namespace helper (root
// in the containers' user namespaces), and the containers reach each other
// again without doing anything; that one, stopped with SIGTERM, leaves
// them too, and a daemon without --live-restore then removes them,
// through the helper as well.
func TestRootlessLiveRestore(t *testing.T) {
	requireRootless(t, "ping")
	host, dir := newNS(t), nobodyDir(t)
	d := startRootlessDaemonDir(t, host, dir, "--live-restore")
	c1, c2 := startRootlessContainer(t), startRootlessContainer(t)
	p1, p2 := d.attachPID(t, c1), d.attachPID(t, c2)
	c1.ping(t, ip(p2))
	kept := func() {
		t.Helper()
		for _, c := range []*container{c1, c2} {
			if !slices.Contains(c.links(t), "eth0") {
				t.Fatalf("the TAP of pid %d went with the daemon: %v", c.pid, c.links(t))
			}
		}
	}
	d.cmd.Process.Kill()
	<-d.exited
	kept()
	d2 := startRootlessDaemonDir(t, host, dir, "--live-restore")
	if n := strings.Count(d2.log.String(), "port restored"); n != 2 {
		t.Errorf("the new daemon restored %d ports, want 2:\n%s", n, d2.log.String())
	}
	if names := d2.portNames(t); !slices.Contains(names, p1.Name) || !slices.Contains(names, p2.Name) {
		t.Errorf("ports after the restart: %v, want %s and %s", names, p1.Name, p2.Name)
	}
	c2.ping(t, ip(p1))

	// An upgrade: SIGTERM leaves the TAPs too.
	if err := d2.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	kept()
	d3 := startRootlessDaemonDir(t, host, dir)
	if n := strings.Count(d3.log.String(), "removed the TAP of a port a live-restore daemon left"); n != 2 {
		t.Errorf("the daemon without --live-restore removed %d TAPs, want 2:\n%s", n, d3.log.String())
	}
	for _, c := range []*container{c1, c2} {
		if slices.Contains(c.links(t), "eth0") {
			t.Errorf("eth0 left in pid %d by a daemon without --live-restore", c.pid)
		}
	}
}
