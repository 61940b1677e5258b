package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRootlessPublishSplice runs the daemon as nobody with the host uplink:
// a client on the host namespace's 127.0.0.1 uploads 8 MiB to a published
// port and gets their sha256 back over the same connection (a half-close
// between), through the splice path: the daemon's dial helper connects
// inside the container and the two sockets are spliced, which stats count
// (publish_spliced) and the container sees as its own address. A client
// on another address keeps its address and the netstack's path; so does a
// loopback client while an ACL rule exists (it would not see the splice),
// and while the container's lo is down (`unshare --net` leaves it down; a
// connection to the container's own address would hang). The helper ends
// with the port.
func TestRootlessPublishSplice(t *testing.T) {
	requireRootless(t)
	d, host := startRootlessDaemon(t, "--uplink", "host")
	c := startRootlessContainer(t)
	p := d.attachPID(t, c, "-p", "18090:8090", "-p", "18091:8091")
	cname := c.named(t)
	spliced := func() uint64 { return d.stats(t).HostUplink.PublishSpliced }

	tcpServer(t, cname, ":8091")
	if seen := seenAs(t, host, "127.0.0.1:18091"); seen.Addr().String() != "192.0.0.1" {
		t.Errorf("loopback client, the container's lo down: the container saw %s, want 192.0.0.1 (the netstack's path)", seen)
	}
	if s := d.stats(t).HostUplink; s.PublishSpliced != 0 || s.SpliceFailed != 0 {
		t.Errorf("lo down: publish_spliced %d, splice_failed %d, want 0 and 0 (declined)", s.PublishSpliced, s.SpliceFailed)
	}
	if out, err := c.enter("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("ip link set lo up in the container: %v: %s", err, out)
	}

	hashServer(t, cname, ":8090")
	upload(t, host, "127.0.0.1:18090", 8<<20)
	if n := spliced(); n != 1 {
		t.Errorf("publish_spliced %d after the upload from 127.0.0.1, want 1", n)
	}
	if n := dialHelpers(t, d.cmd.Process.Pid); n != 1 {
		t.Errorf("%d dial helpers run, want 1 (started for the first loopback client)", n)
	}

	if seen := seenAs(t, host, "127.0.0.1:18091"); seen.Addr().String() != ip(p) {
		t.Errorf("spliced loopback client: the container saw %s, want its own address %s", seen, ip(p))
	}
	client := vethClient(t, host)
	if seen := seenAs(t, client, "198.51.100.1:18091"); seen.Addr().String() != "198.51.100.2" {
		t.Errorf("client on another address: the container saw %s, want 198.51.100.2", seen)
	}
	if n := spliced(); n != 2 {
		t.Errorf("publish_spliced %d, want 2 (the other client is not spliced)", n)
	}

	if _, errOut, code := d.cli(t, "rule", "add", "--port", p.Name, "count"); code != 0 {
		t.Fatalf("rule add: exit %d: %s", code, errOut)
	}
	if seen := seenAs(t, host, "127.0.0.1:18091"); seen.Addr().String() != "192.0.0.1" {
		t.Errorf("loopback client with an ACL rule: the container saw %s, want 192.0.0.1 (the netstack's path)", seen)
	}
	if n := spliced(); n != 2 {
		t.Errorf("publish_spliced %d with an ACL rule, want still 2", n)
	}

	c.kill()
	eventually(t, 10*time.Second, "the dial helper ended with the port", func() bool {
		return dialHelpers(t, d.cmd.Process.Pid) == 0
	})
}

// dialHelpers counts the child processes of pid that run the dial helper
// (nsenter execs tapswitch __dial-helper in place).
func dialHelpers(t *testing.T, pid int) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split
		// after its closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(b[i+1:])); len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "cmdline"))
		if bytes.Contains(cmdline, []byte("__dial-helper")) {
			n++
		}
	}
	return n
}

// echoBack connects from ns to a tcpServer at addr, sends size random
// bytes while reading its echo, half-closes, and wants the echo whole
// (sha256 equal): the same bytes both ways over one connection.
func echoBack(t *testing.T, ns, addr string, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	c, err := dialTCP(t, ns, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("read the address line from %s: %v", addr, err)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		sent <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err := <-sent; err != nil {
		t.Fatalf("write %d bytes to %s: %v", size, addr, err)
	}
	if want := sha256.Sum256(data); err != nil || n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echo from %s: %d bytes (%v), want the %d sent with sha256 equal", addr, n, err, size)
	}
}
