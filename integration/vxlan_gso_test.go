package integration

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/vxlan"
)

// The containers' TAPs follow the tunnels (issue 19): a tunnel added at
// runtime bounds the super-frames of the containers attached before it
// (gso_max_segs, vxlan.SegmentsPerSend), removing the last takes the bound
// off (the kernel's 65535), and a daemon restarted with --vxlan over live
// TAPs bounds the ones it adopts. The kernel reads the bound at connect
// and accept, so it is what the device says that matters here: new
// connections follow it.

var gsoMaxSegsRE = regexp.MustCompile(` gso_max_segs (\d+) `)

// gsoMaxSegsOf returns the gso_max_segs in `ip -d link show` output.
func gsoMaxSegsOf(t *testing.T, out string) int {
	t.Helper()
	m := gsoMaxSegsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no gso_max_segs in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// nsGSOMaxSegs returns the gso_max_segs of eth0 in the namespace ns.
func nsGSOMaxSegs(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "link", "show", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s -d link show eth0: %v: %s", ns, err, out)
	}
	return gsoMaxSegsOf(t, string(out))
}

// pidGSOMaxSegs returns the gso_max_segs of eth0 in the network namespace
// of the process pid.
func pidGSOMaxSegs(t *testing.T, pid int) int {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ip", "-d", "link", "show", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -d link show eth0 in pid %d: %v: %s", pid, err, out)
	}
	return gsoMaxSegsOf(t, string(out))
}

// checkSuperFrames captures what c1 sends (port c1) over a new TCP
// connection of 16 MiB to c2 at ip2 and wants super-frames among it, none
// of a TCP payload over maxSegs segments of the largest MSS at mtu.
func checkSuperFrames(t *testing.T, d *daemon, c1, c2, ip2 string, maxSegs, mtu int) {
	t.Helper()
	serveTCP(t, c2, ":5302", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(io.Discard, c)
	})
	file := filepath.Join(t.TempDir(), "c1.pcapng")
	capt := d.startCapture(t, nil, "c1", "-w", file, "tcp")
	c, err := dialTCP(t, c1, net.JoinHostPort(ip2, "5302"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 1<<20)
	for range 16 {
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("send to c2: %v", err)
		}
	}
	c.Close()
	capt.stop(t)
	mss := mtu - 40 // IPv4 and TCP headers without options: the largest segment
	var supers, largest int
	for _, p := range readPCAPNGFile(t, file, "c1") {
		n, ok := tcpPayload4(p.data)
		if !ok || n <= mss {
			continue
		}
		supers++
		largest = max(largest, n)
	}
	if supers == 0 {
		t.Fatalf("no super-frame from c1 among the captured frames: the check would say nothing")
	}
	if largest > maxSegs*mss {
		t.Errorf("a super-frame from c1 carries %d bytes, over %d segments of %d", largest, maxSegs, mss)
	}
	t.Logf("%d super-frames from c1, the largest %d bytes (%d segments of %d at most)", supers, largest, maxSegs, mss)
}

// tcpPayload4 returns the TCP payload length of an IPv4 frame by its
// headers (an untagged Ethernet frame), whatever part of it was captured.
func tcpPayload4(f []byte) (int, bool) {
	if len(f) < 14+20 || f[12] != 0x08 || f[13] != 0x00 || f[14+9] != 6 {
		return 0, false
	}
	ihl := int(f[14]&0x0f) * 4
	if len(f) < 14+ihl+13 {
		return 0, false
	}
	total := int(f[16])<<8 | int(f[17])
	doff := int(f[14+ihl+12]>>4) * 4
	return total - ihl - doff, true
}

// noBound is the kernel's gso_max_segs of a device nobody bounded
// (GSO_MAX_SEGS).
const noBound = 65535

// TestVXLANGSOCapRuntime: a container attached before any tunnel gets the
// bound when `vxlan add` comes, as one attached after; `vxlan del` of the
// last tunnel takes it off both; a daemon killed then and started again
// with --vxlan and --live-restore bounds the TAPs it adopts.
func TestVXLANGSOCapRuntime(t *testing.T) {
	requireRoot(t)
	u := newUnderlay(t)
	const ipA = "198.51.100.1"
	hA := u.host(t, ipA)
	args := []string{"--subnet", "10.81.0.0/16", "--mtu", "1450", "--live-restore"}
	d := startDaemonIn(t, hA, args...)
	dir := filepath.Dir(d.sock)
	c1 := newNS(t)
	d.attach(t, c1, "c1")
	if n := nsGSOMaxSegs(t, c1); n != noBound {
		t.Fatalf("c1 attached without a tunnel: gso_max_segs %d, want %d", n, noBound)
	}
	spec := fmt.Sprintf("vni=42,local=%s,remote=198.51.100.2", ipA)
	want := vxlan.SegmentsPerSend(1450) // 44
	if _, errOut, code := d.cli(t, "vxlan", "add", spec); code != 0 {
		t.Fatalf("vxlan add %s: exit %d: %s", spec, code, errOut)
	}
	if n := nsGSOMaxSegs(t, c1); n != want {
		t.Errorf("c1 after vxlan add: gso_max_segs %d, want %d", n, want)
	}
	c2 := newNS(t)
	p2 := d.attach(t, c2, "c2")
	if n := nsGSOMaxSegs(t, c2); n != want {
		t.Errorf("c2 attached with the tunnel: gso_max_segs %d, want %d", n, want)
	}
	// A connection made now follows the bound: no super-frame from c1
	// carries more than want segments.
	checkSuperFrames(t, d, c1, c2, ip(p2), want, 1450)
	if _, errOut, code := d.cli(t, "vxlan", "del", "42"); code != 0 {
		t.Fatalf("vxlan del 42: exit %d: %s", code, errOut)
	}
	containers := map[string]string{"c1": c1, "c2": c2}
	for name, ns := range containers {
		if n := nsGSOMaxSegs(t, ns); n != noBound {
			t.Errorf("%s after vxlan del of the last tunnel: gso_max_segs %d, want %d", name, n, noBound)
		}
	}

	d.cmd.Process.Kill()
	<-d.exited
	d2 := startDaemonWith(t, dir, []string{"ip", "netns", "exec", hA}, append(args, "--vxlan", spec)...)
	if names := d2.portNames(t); !slices.Contains(names, "c1") || !slices.Contains(names, "c2") {
		t.Fatalf("ports after the restart: %v, want c1 and c2:\n%s", names, d2.log.String())
	}
	for name, ns := range containers {
		if n := nsGSOMaxSegs(t, ns); n != want {
			t.Errorf("%s adopted by a daemon with --vxlan: gso_max_segs %d, want %d", name, n, want)
		}
	}
}

// TestVXLANGSOCapRootless is TestVXLANGSOCapRuntime for a daemon run as
// nobody, whose TAPs are in rootless containers' namespaces: the namespace
// helper sets the bound, on a TAP it made and on one it adopted.
func TestVXLANGSOCapRootless(t *testing.T) {
	requireRootless(t)
	u := newUnderlay(t)
	const ipR, port = "198.51.100.1", 47890
	hR, dir := u.host(t, ipR), nobodyDir(t)
	args := []string{"--subnet", "10.81.0.0/16", "--mtu", "1450", "--live-restore"}
	d := startRootlessDaemonDir(t, hR, dir, args...)
	c1 := startRootlessContainer(t)
	p1 := d.attachPID(t, c1)
	if n := pidGSOMaxSegs(t, c1.pid); n != noBound {
		t.Fatalf("c1 attached without a tunnel: gso_max_segs %d, want %d", n, noBound)
	}
	spec := fmt.Sprintf("vni=42,local=%s,remote=198.51.100.3,port=%d", ipR, port)
	want := vxlan.SegmentsPerSend(1450)
	if _, errOut, code := d.cli(t, "vxlan", "add", spec); code != 0 {
		t.Fatalf("vxlan add %s: exit %d: %s", spec, code, errOut)
	}
	if n := pidGSOMaxSegs(t, c1.pid); n != want {
		t.Errorf("c1 after vxlan add: gso_max_segs %d, want %d", n, want)
	}
	if _, errOut, code := d.cli(t, "vxlan", "del", "42"); code != 0 {
		t.Fatalf("vxlan del 42: exit %d: %s", code, errOut)
	}
	if n := pidGSOMaxSegs(t, c1.pid); n != noBound {
		t.Errorf("c1 after vxlan del of the last tunnel: gso_max_segs %d, want %d", n, noBound)
	}

	d.cmd.Process.Kill()
	<-d.exited
	d2 := startRootlessDaemonDir(t, hR, dir, append(args, "--vxlan", spec)...)
	if names := d2.portNames(t); !slices.Contains(names, p1.Name) {
		t.Fatalf("ports after the restart: %v, want %s:\n%s", names, p1.Name, d2.log.String())
	}
	if n := pidGSOMaxSegs(t, c1.pid); n != want {
		t.Errorf("c1 adopted by a daemon with --vxlan: gso_max_segs %d, want %d", n, want)
	}
}
