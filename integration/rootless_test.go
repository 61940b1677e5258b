package integration

import (
	"bufio"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// The rootless rig. CI runs as root, so these tests drop privileges
// themselves: the daemon, its CLI and the containers run as nobody (uid and
// gid 65534, no supplementary groups) through setpriv; the containers are
// `unshare --user --map-root-user --net` processes of that user, entered with
// `nsenter --preserve-credentials -U -n -t PID`. The daemon runs inside a
// namespace the test creates (its "host"), so nothing reaches the machine's
// own network. /dev/net/tun is made 0666 for the test, as ordinary
// distributions ship it, and put back after.

// nobody is the unprivileged user of the rootless tests.
const nobody = 65534

// asNobody is the command line prefix that runs a command as nobody.
var asNobody = []string{"setpriv", "--reuid", strconv.Itoa(nobody), "--regid", strconv.Itoa(nobody), "--clear-groups"}

// tunMode counts the tests that need /dev/net/tun at 0666 and remembers
// its mode before the first.
var tunMode struct {
	mu   sync.Mutex
	n    int
	orig fs.FileMode
}

// requireRootless is requireRoot for the rootless tests: it also needs the
// tools of the rig, makes /dev/net/tun usable by everyone for the test and
// the test binary executable by nobody.
func requireRootless(t *testing.T, tools ...string) {
	t.Helper()
	requireRoot(t, append([]string{"setpriv", "unshare", "nsenter"}, tools...)...)
	tunMode.mu.Lock()
	defer tunMode.mu.Unlock()
	if tunMode.n == 0 {
		fi, err := os.Stat("/dev/net/tun")
		if err != nil {
			t.Fatal(err)
		}
		tunMode.orig = fi.Mode().Perm()
		if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
			t.Fatal(err)
		}
	}
	tunMode.n++
	t.Cleanup(func() {
		tunMode.mu.Lock()
		defer tunMode.mu.Unlock()
		if tunMode.n--; tunMode.n == 0 {
			if err := os.Chmod("/dev/net/tun", tunMode.orig); err != nil {
				t.Error(err)
			}
		}
	})
	// TestMain's temporary directory is 0700.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
}

// startRootlessDaemon starts `tapswitch run args...` as nobody inside a new
// namespace (returned), with its control socket in a directory of nobody's
// given as XDG_RUNTIME_DIR; the daemon's CLI runs as nobody too.
func startRootlessDaemon(t *testing.T, args ...string) (*daemon, string) {
	t.Helper()
	host := newNS(t)
	return startRootlessDaemonIn(t, host, args...), host
}

// startRootlessDaemonIn is startRootlessDaemon in the namespace host.
func startRootlessDaemonIn(t *testing.T, host string, args ...string) *daemon {
	t.Helper()
	return startRootlessDaemonDir(t, host, nobodyDir(t), args...)
}

// nobodyDir returns a new temporary directory of nobody's, removed when
// the test ends.
func nobodyDir(t *testing.T) string {
	t.Helper()
	dir := tempDir(t, "tswr")
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startRootlessDaemonDir is startRootlessDaemonIn with the control socket
// (and the state file) in dir, a directory of nobody's: a daemon started
// again there finds what the one before left.
func startRootlessDaemonDir(t *testing.T, host, dir string, args ...string) *daemon {
	t.Helper()
	prefix := append([]string{"ip", "netns", "exec", host}, asNobody...)
	prefix = append(prefix, "env", "XDG_RUNTIME_DIR="+dir)
	d := startDaemonWith(t, dir, prefix, args...)
	d.as = asNobody
	return d
}

// container is a rootless "container": a process of nobody in its own user
// and network namespaces.
type container struct {
	pid    int
	proc   *exec.Cmd
	exited chan struct{}
}

// startContainer starts `unshare --user --map-root-user --net sleep
// infinity` after prefix (asNobody for a rootless one, nil for root's
// `unshare --net`) and waits until its namespace exists. The test's cleanup
// kills it.
func startContainer(t *testing.T, prefix []string, unshare ...string) *container {
	t.Helper()
	line := append(append(append([]string{}, prefix...), "unshare"), unshare...)
	line = append(line, "sleep", "infinity")
	c := &container{proc: exec.Command(line[0], line[1:]...), exited: make(chan struct{})}
	if err := c.proc.Start(); err != nil {
		t.Fatal(err)
	}
	c.pid = c.proc.Process.Pid
	go func() { c.proc.Wait(); close(c.exited) }()
	t.Cleanup(c.kill)
	// Once unshare has made the namespaces it execs sleep; before that, a
	// process whose uid setpriv changed is not dumpable, and nobody could
	// not open its namespaces.
	eventually(t, 5*time.Second, "unshare ran sleep in its namespaces", func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.pid))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep"
	})
	return c
}

func startRootlessContainer(t *testing.T) *container {
	t.Helper()
	return startContainer(t, asNobody, "--user", "--map-root-user", "--net")
}

// kill kills the container's process and waits for it.
func (c *container) kill() {
	c.proc.Process.Kill()
	<-c.exited
}

// enter runs args in the container's namespaces as nobody (root inside)
// and returns the combined output.
func (c *container) enter(args ...string) ([]byte, error) {
	line := append(append([]string{}, asNobody...), "nsenter", "--preserve-credentials", "-U", "-n", "-t", strconv.Itoa(c.pid))
	line = append(line, args...)
	return exec.Command(line[0], line[1:]...).CombinedOutput()
}

// ping pings addr from the container and fails the test without a reply.
func (c *container) ping(t *testing.T, addr string) {
	t.Helper()
	if out, err := c.enter("ping", "-c", "2", "-i", "0.2", "-W", "2", addr); err != nil {
		t.Errorf("ping %s from pid %d: %v\n%s", addr, c.pid, err, out)
	}
}

// links lists the container's interfaces.
func (c *container) links(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(c.pid), "-n", "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link in pid %d: %v: %s", c.pid, err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

// attachPID attaches the container by pid through the CLI and returns the
// port.
func (d *daemon) attachPID(t *testing.T, c *container, extra ...string) api.Port {
	t.Helper()
	return cliJSON[api.Port](t, d, append([]string{"attach", "--pid", strconv.Itoa(c.pid), "--json"}, extra...)...)
}

// portNames lists the daemon's port names.
func (d *daemon) portNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, p := range d.ports(t) {
		names = append(names, p.Name)
	}
	return names
}

// TestRootlessAttachByPID runs the daemon as nobody and attaches two
// rootless containers by pid: they reach the gateway and each other; when
// one's process dies, its port goes and its address is free again.
func TestRootlessAttachByPID(t *testing.T) {
	requireRootless(t, "ping")
	d, _ := startRootlessDaemon(t)
	c1, c2 := startRootlessContainer(t), startRootlessContainer(t)
	p1 := d.attachPID(t, c1)
	p2 := d.attachPID(t, c2)
	if want := fmt.Sprintf("/proc/%d/ns/net", c1.pid); p1.Name != fmt.Sprintf("pid-%d", c1.pid) || p1.Netns != want {
		t.Errorf("port: got name %q netns %q, want pid-%d in %s", p1.Name, p1.Netns, c1.pid, want)
	}
	if got := c1.links(t); !slices.Contains(got, "eth0") {
		t.Errorf("links in the container: got %v, want eth0 among them", got)
	}
	info, err := d.client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c1.ping(t, info.Gateway)
	c1.ping(t, ip(p2))
	c2.ping(t, ip(p1))

	c1.kill()
	eventually(t, 10*time.Second, "port removed after its process died", func() bool {
		return !slices.Contains(d.portNames(t), p1.Name)
	})
	// The lowest free address is given first: c1's again.
	c3 := startRootlessContainer(t)
	if p3 := d.attachPID(t, c3); p3.IP != p1.IP {
		t.Errorf("address after the first container died: got %s, want its %s back", p3.IP, p1.IP)
	}
	c3.ping(t, ip(p2))
	if !strings.Contains(d.log.String(), "helper=true") {
		t.Errorf("daemon log does not say the helper attached:\n%s", d.log.String())
	}

	// By path there is no process to watch: the port outlives the
	// process (its TAP keeps the namespace) until it is detached.
	c4 := startRootlessContainer(t)
	path := fmt.Sprintf("/proc/%d/ns/net", c4.pid)
	if _, errOut, code := d.cli(t, "attach", "--netns", path, "--name", "bypath"); code != 0 {
		t.Fatalf("attach --netns %s: exit %d: %s", path, code, errOut)
	}
	c4.ping(t, info.Gateway)
	c4.kill()
	if !slices.Contains(d.portNames(t), "bypath") {
		t.Errorf("port attached by path gone after its process died; want it kept until detach")
	}
	if _, errOut, code := d.cli(t, "detach", "bypath"); code != 0 {
		t.Errorf("detach bypath: exit %d: %s", code, errOut)
	}
}

// TestRootlessAttachErrors checks that bad attaches by an unprivileged
// daemon fail with one clear line and leave nothing behind.
func TestRootlessAttachErrors(t *testing.T) {
	requireRootless(t)
	d, host := startRootlessDaemon(t)
	rootless := startRootlessContainer(t)
	// root's own namespace: not nobody's.
	rootOwned := startContainer(t, nil, "--net")
	// nobody's process, but in the daemon's own namespace (owned by the
	// host's user namespace, where nobody has no capabilities).
	hostProc := exec.Command("ip", append(append([]string{"netns", "exec", host}, asNobody...), "sleep", "infinity")...)
	if err := hostProc.Start(); err != nil {
		t.Fatal(err)
	}
	hostExited := make(chan struct{})
	go func() { hostProc.Wait(); close(hostExited) }()
	t.Cleanup(func() { hostProc.Process.Kill(); <-hostExited })
	eventually(t, 5*time.Second, "ip netns exec ran sleep", func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", hostProc.Process.Pid))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep"
	})

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no such pid", []string{"--pid", "999999999"}, "no process with pid 999999999"},
		{"root's namespace", []string{"--pid", strconv.Itoa(rootOwned.pid)}, "permission denied: namespace of another user"},
		{"host's user namespace", []string{"--pid", strconv.Itoa(hostProc.Process.Pid)}, "it belongs to the user namespace the daemon runs in"},
		{"netns that does not exist", []string{"--netns", "/run/netns/tswr-none"}, "network namespace not found"},
		{"interface name taken inside", []string{"--pid", strconv.Itoa(rootless.pid), "--ifname", "lo"}, "interface already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := d.cli(t, append([]string{"attach"}, tt.args...)...)
			t.Logf("%s", errOut)
			if code != 1 || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("attach %v: got exit %d, %q; want exit 1 and one line with %q", tt.args, code, errOut, tt.want)
			}
		})
	}
	if got := d.portNames(t); len(got) != 1 || got[0] != "gateway" {
		t.Errorf("ports after failed attaches: got %v, want only the gateway", got)
	}
	for _, c := range []*container{rootless, rootOwned} {
		if got := c.links(t); len(got) != 1 || got[0] != "lo" {
			t.Errorf("links in pid %d after failed attaches: got %v, want only lo", c.pid, got)
		}
	}
	// The failures took nothing: the container attaches now with the
	// subnet's first address.
	if p := d.attachPID(t, rootless); ip(p) != "10.90.0.2" {
		t.Errorf("address after failed attaches: got %s, want 10.90.0.2", p.IP)
	}
}

// TestHelperAttachAsRoot runs the helper path as root (run --attach-helper):
// a rootless container by pid, entered as root of its user namespace, and a
// namespace of root's by path, which needs no user namespace change; they
// ping each other, detach removes the TAP, and the rootless port goes when
// its process dies.
func TestHelperAttachAsRoot(t *testing.T) {
	requireRootless(t, "ping")
	d := startDaemon(t, "--attach-helper")
	c := startRootlessContainer(t)
	pc := d.attachPID(t, c)
	ns := newNS(t)
	pn := d.attach(t, ns, "byns")
	if out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", ip(pc)).CombinedOutput(); err != nil {
		t.Errorf("ping the rootless container from %s: %v\n%s", ns, err, out)
	}
	c.ping(t, ip(pn))
	if !strings.Contains(d.log.String(), "helper=true") {
		t.Errorf("daemon log does not say the helper attached:\n%s", d.log.String())
	}

	if _, errOut, code := d.cli(t, "detach", "byns"); code != 0 {
		t.Fatalf("detach: exit %d: %s", code, errOut)
	}
	eventually(t, 5*time.Second, "eth0 deleted from "+ns+" after detach", func() bool {
		return !slices.Contains(links(t, ns), "eth0")
	})
	c.kill()
	eventually(t, 10*time.Second, "port removed after its process died", func() bool {
		return !slices.Contains(d.portNames(t), pc.Name)
	})
	if _, err := os.Stat(netnsutil.Path(ns)); err != nil {
		t.Fatal(err)
	}
}

// TestRootlessTapUplinkRefused checks that an unprivileged daemon refuses
// the routed TAP uplink, which needs root, with one clear line.
func TestRootlessTapUplinkRefused(t *testing.T) {
	requireRootless(t)
	host, far := newNS(t), newNS(t)
	dir := t.TempDir()
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	prefix := append([]string{"ip", "netns", "exec", host}, asNobody...)
	_, errOut, code := runAs(t, prefix, "run", "--control", filepath.Join(dir, "ctl.sock"),
		"--uplink", "tap,netns="+netnsutil.Path(far)+",ip=203.0.113.2/24")
	if want := "--uplink tap needs root"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("run --uplink tap as nobody: exit %d, %q; want exit 1 and %q", code, errOut, want)
	}
	if got := links(t, far); len(got) != 1 || got[0] != "lo" {
		t.Errorf("links in %s: got %v, want only lo", far, got)
	}
}

// named gives the container's network namespace a name (`ip netns attach`),
// so that the helpers that run code in named namespaces work in it; the
// name goes when the test ends.
func (c *container) named(t *testing.T) string {
	t.Helper()
	nsSeq++
	name := fmt.Sprintf("tswi%d-%d", os.Getpid(), nsSeq)
	if out, err := exec.Command("ip", "netns", "attach", name, strconv.Itoa(c.pid)).CombinedOutput(); err != nil {
		t.Fatalf("ip netns attach %s %d: %v: %s", name, c.pid, err, out)
	}
	t.Cleanup(func() { netnsutil.Del(name) })
	return name
}

// TestRootlessHostUplink runs the daemon as nobody with the host uplink and
// --host-loopback: a rootless container sends 100 MiB over TCP to a server
// on the host namespace's 127.0.0.1 through the gateway's address, and gets
// a UDP echo from there; a client in another namespace reaches the
// container's published TCP and UDP ports through the host namespace's
// address, and the container sees the client's own address.
func TestRootlessHostUplink(t *testing.T) {
	requireRootless(t, "curl")
	d, host := startRootlessDaemon(t, "--uplink", "host", "--host-loopback", "--metrics", "127.0.0.1:19100")
	// Metrics are served by the unprivileged daemon in its namespace.
	if out, err := exec.Command("ip", "netns", "exec", host, "curl", "-sS", "http://127.0.0.1:19100/metrics").CombinedOutput(); err != nil || !strings.Contains(string(out), "tapswitch_host_uplink_") {
		t.Errorf("metrics of the unprivileged daemon: %v, %d bytes without tapswitch_host_uplink_", err, len(out))
	}
	c := startRootlessContainer(t)
	d.attachPID(t, c, "-p", "18080:8080", "-p", "18081:8081/udp")
	cname := c.named(t)
	info, err := d.client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gw := info.Gateway

	sent, got := transferVia(t, cname, host, "127.0.0.1:15201", net.JoinHostPort(gw, "15201"), 100<<20, nil)
	if sent != got {
		t.Errorf("100 MiB to the host's 127.0.0.1: sha256 sent %x, received %x", sent, got)
	}

	udpServer(t, host, "127.0.0.1:15353")
	if from := mustUDP(t, udpSocket(t, cname, ""), net.JoinHostPort(gw, "15353")); !from.Addr().IsLoopback() {
		t.Errorf("UDP echo from the host's 127.0.0.1: the server saw %s, want a loopback address", from)
	}

	client := vethClient(t, host)
	tcpServer(t, cname, ":8080")
	if seen := seenAs(t, client, "198.51.100.1:18080"); seen.Addr() != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("published TCP port: the container saw the client as %s, want 198.51.100.2", seen)
	}
	udpServer(t, cname, ":8081")
	if seen := mustUDP(t, udpSocket(t, client, ""), "198.51.100.1:18081"); seen.Addr() != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("published UDP port: the container saw the client as %s, want 198.51.100.2", seen)
	}
	// From the host's own loopback too (the container cannot be shown a
	// loopback source; the uplink maps it).
	conn, err := dialTCP(t, host, "127.0.0.1:18080", 5*time.Second)
	if err != nil {
		t.Fatalf("published TCP port from the host's 127.0.0.1: %v", err)
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Errorf("published TCP port from the host's 127.0.0.1: %v", err)
	}

	// The container dies: its port, publishes and their listeners go.
	c.kill()
	eventually(t, 10*time.Second, "port removed after its process died", func() bool {
		return len(d.portNames(t)) == 1
	})
	// The port leaves the listing just before its listeners close (the
	// daemon removes it first, then its publishes).
	eventually(t, 10*time.Second, "published port 18080 closed after the container died", func() bool {
		conn, err := dialTCP(t, client, "198.51.100.1:18080", 5*time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

// vethClient creates a client namespace on a veth link to the namespace
// host: the client is 198.51.100.2/24, the host 198.51.100.1 on that link.
func vethClient(t *testing.T, host string) string {
	t.Helper()
	client := newNS(t)
	for _, args := range [][]string{
		{"-n", host, "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", client},
		{"-n", host, "addr", "add", "198.51.100.1/24", "dev", "cl0"},
		{"-n", host, "link", "set", "cl0", "up"},
		{"-n", client, "addr", "add", "198.51.100.2/24", "dev", "eth0"},
		{"-n", client, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return client
}
