package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/vxlan"
)

// The overlay rig: hosts are namespaces on an underlay, a Linux bridge in
// a namespace of its own, with addresses in 198.51.100.0/24; containers
// are namespaces attached to a host's tapswitch, or veths on a kernel
// host's bridge.

// underlay is the namespace of the bridge joining the hosts.
type underlay struct {
	ns string
	n  int
}

func newUnderlay(t *testing.T) *underlay {
	t.Helper()
	u := &underlay{ns: newNS(t)}
	ipIn(t, u.ns, "link", "add", "br0", "type", "bridge")
	ipIn(t, u.ns, "link", "set", "br0", "up")
	return u
}

// host adds a host namespace with the underlay address addr (/24) on u0.
func (u *underlay) host(t *testing.T, addr string) string {
	t.Helper()
	h := newNS(t)
	u.n++
	port := fmt.Sprintf("p%d", u.n)
	ipIn(t, h, "link", "add", "u0", "type", "veth", "peer", "name", port, "netns", u.ns)
	ipIn(t, u.ns, "link", "set", port, "master", "br0", "up")
	ipIn(t, h, "addr", "add", addr+"/24", "dev", "u0")
	ipIn(t, h, "link", "set", "u0", "up")
	ipIn(t, h, "link", "set", "lo", "up")
	return h
}

// ipIn runs `ip -n ns args...` and fails the test on error.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	nsRun(t, ns, append([]string{"ip"}, args...)...)
}

// kernelHost makes host a Linux VXLAN host: bridge br0 with vx42 (VNI 42,
// dstport port, head-end replication to remotes by all-zero FDB entries)
// and a container namespace on a veth with addr. It returns the container.
func kernelHost(t *testing.T, host, local, addr string, port int, remotes ...string) string {
	t.Helper()
	// On a veth underlay the kernel hands the inner TCP checksum over
	// partial (CHECKSUM_PARTIAL crosses veth), which only another kernel
	// trusts; a NIC would fill it in. Checksum in software, as a host
	// with a real NIC does in effect.
	nsRun(t, host, "ethtool", "-K", "u0", "tx", "off")
	ipIn(t, host, "link", "add", "vx42", "type", "vxlan", "id", "42", "local", local, "dstport", fmt.Sprint(port), "dev", "u0")
	ipIn(t, host, "link", "add", "br0", "type", "bridge")
	ipIn(t, host, "link", "set", "vx42", "master", "br0", "up")
	for _, r := range remotes {
		nsRun(t, host, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx42", "dst", r)
	}
	c := newNS(t)
	ipIn(t, host, "link", "add", "kv0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", c)
	ipIn(t, host, "link", "set", "kv0", "master", "br0", "up")
	ipIn(t, host, "link", "set", "br0", "up")
	ipIn(t, c, "addr", "add", addr+"/16", "dev", "eth0")
	ipIn(t, c, "link", "set", "eth0", "mtu", "1450", "up")
	ipIn(t, c, "link", "set", "lo", "up")
	return c
}

func (d *daemon) vxlans(t *testing.T) []api.VXLAN {
	t.Helper()
	return cliJSON[[]api.VXLAN](t, d, "vxlan", "list", "--json")
}

// fdbEntry returns the entry of mac in d's FDB.
func (d *daemon) fdbEntry(t *testing.T, mac string) (api.FDBEntry, bool) {
	t.Helper()
	for _, e := range cliJSON[[]api.FDBEntry](t, d, "fdb", "--json") {
		if e.MAC == mac {
			return e, true
		}
	}
	return api.FDBEntry{}, false
}

// TestVXLANOverlay joins two tapswitch hosts and a Linux host (bridge and
// vxlan device) into one L2 segment on VNI 42: every pair of containers
// pings, ARP resolves across, 64 MiB cross with the same sha256 both ways,
// remote MACs show in the FDB with their VTEP and age out, a broadcast
// reaches every host once, container MTUs leave room for the
// encapsulation, and a forged frame claiming the gateway's MAC is dropped.
func TestVXLANOverlay(t *testing.T) {
	requireRoot(t, "bridge", "ping", "ethtool")
	u := newUnderlay(t)
	const ipA, ipB, ipK = "198.51.100.1", "198.51.100.2", "198.51.100.3"
	hA, hB, hK := u.host(t, ipA), u.host(t, ipB), u.host(t, ipK)
	run := func(h, local, rng string, remotes ...string) *daemon {
		spec := "vni=42,local=" + local
		for _, r := range remotes {
			spec += ",remote=" + r
		}
		return startDaemonIn(t, h, "--subnet", "10.80.0.0/16", "--ip-range", rng, "--vxlan", spec, "--fdb-ageing", "4s")
	}
	dA := run(hA, ipA, "10.80.1.0/24", ipB, ipK)
	dB := run(hB, ipB, "10.80.2.0/24", ipA, ipK)
	k1 := kernelHost(t, hK, ipK, "10.80.3.2", vxlan.DefaultPort, ipA, ipB)
	a1, b1 := newNS(t), newNS(t)
	pa, pb := dA.attach(t, a1, "a1"), dB.attach(t, b1, "b1")
	if ip(pa) != "10.80.1.1" || ip(pb) != "10.80.2.1" {
		t.Fatalf("addresses %s and %s, want the first of each host's --ip-range", pa.IP, pb.IP)
	}
	if pa.MTU != 1450 {
		t.Errorf("container MTU %d, want 1450 (the underlay's 1500 less 50)", pa.MTU)
	}
	// Super-frames of at most 44 segments: one sendmsg each (vxlan.SegmentsPerSend).
	if out := nsRun(t, a1, "ip", "-d", "link", "show", "eth0"); !strings.Contains(out, " gso_max_segs 44 ") {
		t.Errorf("container eth0 %q, want gso_max_segs 44", out)
	}
	addrs := map[string]string{a1: ip(pa), b1: ip(pb), k1: "10.80.3.2"}
	for from := range addrs {
		for to, addr := range addrs {
			if from != to {
				ping(t, from, addr)
			}
		}
	}
	if t.Failed() {
		return
	}
	// Capture at the tunnel port: a1's echo requests to b1 leave through
	// it (outbound), the replies come in through it.
	file := filepath.Join(t.TempDir(), "vxlan42.pcapng")
	c := dA.startCapture(t, nil, "vxlan42", "-w", file, "icmp")
	ping(t, a1, ip(pb))
	c.stop(t)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	pkts, _ := readPCAPNG(t, f)
	f.Close()
	var reqs, reps int
	for _, p := range pkts {
		switch p.icmpEcho() {
		case ip(pa) + " > " + ip(pb) + " request":
			reqs++
		case ip(pb) + " > " + ip(pa) + " reply":
			reps++
		}
	}
	if reqs != 2 || reps != 2 {
		t.Errorf("capture at vxlan42: %d echo requests and %d replies, want 2 and 2", reqs, reps)
	}
	// ARP resolved across the overlay, to the container's own MAC.
	if out := nsRun(t, a1, "ip", "neigh", "show", ip(pb)); !strings.Contains(out, pb.MAC) {
		t.Errorf("a1's neighbour entry for b1: %q, want %s", out, pb.MAC)
	}
	// Remote MACs in the FDB, with their VTEP.
	kMAC := strings.Fields(nsRun(t, k1, "cat", "/sys/class/net/eth0/address"))[0]
	for mac, vtep := range map[string]string{pb.MAC: ipB, kMAC: ipK} {
		e, ok := dA.fdbEntry(t, mac)
		if !ok || e.Port != "vxlan42" || e.VTEP != vtep {
			t.Errorf("A's fdb entry for %s: %+v (found %v), want port vxlan42 VTEP %s", mac, e, ok, vtep)
		}
	}

	// 64 MiB both ways, tapswitch to tapswitch and tapswitch to kernel.
	for ns, addr := range addrs {
		hashServer(t, ns, addr+":7000")
	}
	for i, c := range []struct{ from, addr string }{
		{a1, ip(pb)}, {b1, ip(pa)}, {a1, "10.80.3.2"}, {k1, ip(pa)},
	} {
		t.Run(fmt.Sprintf("stream%d", i), func(t *testing.T) { upload(t, c.from, c.addr+":7000", 64<<20) })
	}

	// A broadcast from a1 reaches b1 and k1 once each.
	broadcastOnce(t, a1, []string{b1, k1})

	// A forged frame from the underlay claiming the gateway's MAC.
	// Then one claiming a1's MAC.
	forge(t, hK, ipA, vxlan.DefaultPort, "02:42:0a:50:00:01")
	forge(t, hK, ipA, vxlan.DefaultPort, pa.MAC)
	eventually(t, 5*time.Second, "A counts the forged frames", func() bool {
		return dA.vxlans(t)[0].Stats.RxClaimed >= 2
	})
	if e, ok := dA.fdbEntry(t, "02:42:0a:50:00:01"); !ok || e.Port != "gateway" {
		t.Errorf("gateway MAC's fdb entry after the forged frame: %+v", e)
	}
	if e, ok := dA.fdbEntry(t, pa.MAC); ok && e.Port != "a1" {
		t.Errorf("a1's fdb entry after the forged frame: %+v", e)
	}
	// Per-VTEP counters.
	v := dA.vxlans(t)[0]
	for _, e := range v.VTEPs {
		if e.Remote && (e.RxPackets == 0 || e.TxPackets == 0) {
			t.Errorf("VTEP %s: %+v, want traffic both ways", e.Addr, e)
		}
	}
	// With no more traffic, the remote MACs age out (--fdb-ageing 4s).
	eventually(t, 20*time.Second, "b1's MAC ages out of A's fdb", func() bool {
		_, ok := dA.fdbEntry(t, pb.MAC)
		return !ok
	})
}

// broadcastOnce sends one UDP datagram to 255.255.255.255 from ns and
// wants each of to to receive it exactly once.
func broadcastOnce(t *testing.T, from string, to []string) {
	t.Helper()
	const port = 7999
	var conns []net.PacketConn
	for _, ns := range to {
		var pc net.PacketConn
		inNS(t, ns, func() (err error) { pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port)); return err })
		defer pc.Close()
		conns = append(conns, pc)
	}
	var send net.PacketConn
	inNS(t, from, func() (err error) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
			return serr
		}}
		send, err = lc.ListenPacket(t.Context(), "udp4", "0.0.0.0:0")
		return err
	})
	defer send.Close()
	if _, err := send.WriteTo([]byte("hello overlay"), &net.UDPAddr{IP: net.IPv4bcast, Port: port}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				t.Errorf("%s: no broadcast: %v", to[i], err)
				return
			}
			// A copy would follow at once: flooding is synchronous.
			pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, _, err := pc.ReadFrom(buf); err == nil {
				t.Errorf("%s: the broadcast came twice (%q)", to[i], buf[:n])
			}
		}()
	}
	wg.Wait()
}

// forge sends from ns a VXLAN datagram (VNI 42) to addr:port whose inner
// frame, a broadcast, claims src as its source MAC.
func forge(t *testing.T, ns, addr string, port int, src string) {
	t.Helper()
	mac, err := net.ParseMAC(src)
	if err != nil {
		t.Fatal(err)
	}
	d := make([]byte, vxlan.HeaderLen+60)
	vxlan.PutHeader(d, 42)
	eth := d[vxlan.HeaderLen:]
	copy(eth, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(eth[6:], mac)
	eth[12], eth[13] = 0x88, 0xb5
	inNS(t, ns, func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(d)
		return err
	})
}

// TestVXLANRootless runs the daemon as nobody with its tunnel on a high
// port, added and removed at runtime through the CLI: a rootless container
// and a kernel host's container reach each other while the tunnel is
// there, and not after it is removed.
func TestVXLANRootless(t *testing.T) {
	requireRootless(t, "bridge", "ping", "ethtool")
	u := newUnderlay(t)
	const ipR, ipK, port = "198.51.100.1", "198.51.100.3", 47890
	hR, hK := u.host(t, ipR), u.host(t, ipK)
	k1 := kernelHost(t, hK, ipK, "10.80.3.2", port, ipR)
	d := startRootlessDaemonIn(t, hR, "--subnet", "10.80.0.0/16", "--ip-range", "10.80.1.0/24", "--mtu", "1450")
	spec := fmt.Sprintf("vni=42,local=%s,remote=%s,port=%d", ipR, ipK, port)
	if _, errOut, code := d.cli(t, "vxlan", "add", spec); code != 0 {
		t.Fatalf("vxlan add %s: exit %d: %s", spec, code, errOut)
	}
	if _, errOut, code := d.cli(t, "vxlan", "add", spec); code == 0 || !strings.Contains(errOut, "already has a tunnel") {
		t.Errorf("second vxlan add for vni 42: exit %d: %s, want a conflict", code, errOut)
	}
	c1 := startRootlessContainer(t)
	p := d.attachPID(t, c1)
	c1.ping(t, "10.80.3.2")
	ping(t, k1, ip(p))
	v := d.vxlans(t)
	if len(v) != 1 || v[0].Port != port || len(v[0].VTEPs) == 0 || v[0].VTEPs[0].RxPackets == 0 {
		t.Errorf("vxlan list: %+v, want vni 42 on port %d with traffic from %s", v, port, ipK)
	}
	if _, errOut, code := d.cli(t, "vxlan", "del", "42"); code != 0 {
		t.Fatalf("vxlan del 42: exit %d: %s", code, errOut)
	}
	noPing(t, k1, ip(p))
	if v := d.vxlans(t); len(v) != 0 {
		t.Errorf("vxlan list after del: %+v, want none", v)
	}
}

// TestVXLANIPv6Underlay joins two tapswitch hosts over an IPv6 underlay:
// containers get the underlay MTU less 70, ping each other, and 8 MiB
// cross whole.
func TestVXLANIPv6Underlay(t *testing.T) {
	requireRoot(t, "ping")
	u := newUnderlay(t)
	const ipA, ipB = "2001:db8:100::1", "2001:db8:100::2"
	var d [2]*daemon
	for i, local := range []string{ipA, ipB} {
		h := u.host(t, "198.51.100."+fmt.Sprint(i+1))
		ipIn(t, h, "addr", "add", local+"/64", "dev", "u0", "nodad")
		remote := []string{ipB, ipA}[i]
		d[i] = startDaemonIn(t, h, "--subnet", "10.80.0.0/16", "--ip-range", fmt.Sprintf("10.80.%d.0/24", i+1),
			"--vxlan", "vni=42,local="+local+",remote="+remote)
	}
	a1, b1 := newNS(t), newNS(t)
	pa, pb := d[0].attach(t, a1, "a1"), d[1].attach(t, b1, "b1")
	if pa.MTU != 1430 {
		t.Errorf("container MTU %d over IPv6, want 1430", pa.MTU)
	}
	ping(t, a1, ip(pb))
	ping(t, b1, ip(pa))
	hashServer(t, b1, ip(pb)+":7000")
	upload(t, a1, ip(pb)+":7000", 8<<20)
}

// arpFrom captures ARP at d's tunnel port while fn runs and returns how
// many ARP frames from mac came out of the tunnel.
func (d *daemon) arpFrom(t *testing.T, mac string, fn func()) int {
	t.Helper()
	file := filepath.Join(t.TempDir(), "arp.pcapng")
	c := d.startCapture(t, nil, "vxlan42", "-w", file, "arp")
	fn()
	c.stop(t)
	n := 0
	for _, p := range readPCAPNGFile(t, file, "vxlan42") {
		if len(p.data) >= 12 && net.HardwareAddr(p.data[6:12]).String() == mac {
			n++
		}
	}
	return n
}

// arping runs iputils arping in ns on eth0 with args and returns its
// output and exit code (1: no reply, or with -D a reply: a duplicate).
func arping(t *testing.T, ns string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "arping", "-I", "eth0"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("arping %v in %s: %v\n%s", args, ns, err, out)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestVXLANSuppress joins two tapswitch hosts with ARP and ND suppression
// on (the default): once host A has learned b1's addresses from what came
// out of the tunnel, a1's broadcast ARP requests and multicast NSs for
// them are answered by A with b1's MAC and not one crosses to B (a
// capture at B's tunnel port), while pings work; a duplicate
// address detection probe is never answered by the switch: it crosses,
// and b1 defends its address.
func TestVXLANSuppress(t *testing.T) {
	requireRoot(t, "arping", "ping")
	u := newUnderlay(t)
	const ipA, ipB = "198.51.100.1", "198.51.100.2"
	hA, hB := u.host(t, ipA), u.host(t, ipB)
	dA := startDaemonIn(t, hA, "--subnet", "10.80.0.0/16", "--ip-range", "10.80.1.0/24", "--ipv6", "--subnet6", "fd42:80::/64",
		"--vxlan", "vni=42,local="+ipA+",remote="+ipB)
	dB := startDaemonIn(t, hB, "--subnet", "10.80.0.0/16", "--ip-range", "10.80.2.0/24", "--ipv6", "--subnet6", "fd42:80::/64",
		"--vxlan", "vni=42,local="+ipB+",remote="+ipA+",suppress=on")
	a1, b1 := newNS(t), newNS(t)
	pa := dA.attach(t, a1, "a1", "--ip6", "fd42:80::a1")
	pb := dB.attach(t, b1, "b1", "--ip6", "fd42:80::b1")
	if v := dA.vxlans(t)[0]; !v.Stats.Suppress {
		t.Fatalf("A's tunnel: suppression off, want on by default: %+v", v.Stats)
	}
	// b1 asks for a1 (flooded: A knows nothing of b1 yet): A learns b1's
	// address from the request's sender, B a1's from the reply.
	if out, code := arping(t, b1, "-c", "1", "-w", "5", ip(pa)); code != 0 {
		t.Fatalf("arping a1 from b1: exit %d\n%s", code, out)
	}
	supp := dA.vxlans(t)[0].Stats.ARPSuppressed
	// iputils arping broadcasts its first request only, and waits a
	// second between requests: one arping per request.
	const n = 5
	crossed := dB.arpFrom(t, pa.MAC, func() {
		for range n {
			out, code := arping(t, a1, "-c", "1", "-w", "5", ip(pb))
			if code != 0 || !strings.Contains(out, "reply from "+ip(pb)+" ["+strings.ToUpper(pb.MAC)+"]") {
				t.Fatalf("arping b1 from a1: exit %d, want a reply with b1's MAC %s\n%s", code, pb.MAC, out)
			}
		}
	})
	if got := dA.vxlans(t)[0].Stats.ARPSuppressed - supp; got != n {
		t.Errorf("A answered %d of %d ARP requests, want all", got, n)
	}
	if crossed != 0 {
		t.Errorf("%d of a1's ARP requests reached B, want none", crossed)
	}
	// A probe for b1's address (RFC 5227, sender 0.0.0.0) is not
	// answered by the switch: it crosses, and b1 defends its address.
	supp = dA.vxlans(t)[0].Stats.ARPSuppressed
	crossed = dB.arpFrom(t, pa.MAC, func() {
		if out, code := arping(t, a1, "-D", "-c", "1", "-w", "5", ip(pb)); code != 1 || !strings.Contains(out, strings.ToUpper(pb.MAC)) {
			t.Errorf("arping -D b1's address from a1: exit %d, want b1's reply (exit 1)\n%s", code, out)
		}
	})
	if got := dA.vxlans(t)[0].Stats.ARPSuppressed; got != supp || crossed != 1 {
		t.Errorf("the probe: answered by A %d times, reached B %d times; want 0 and 1", got-supp, crossed)
	}
	// The kernel's own resolution: a1 forgets b1, pings it, and A answers.
	nsRun(t, a1, "ip", "neigh", "flush", "dev", "eth0")
	ping(t, a1, ip(pb))
	if out := nsRun(t, a1, "ip", "neigh", "show", ip(pb)); !strings.Contains(out, pb.MAC) {
		t.Errorf("a1's neighbour entry for b1: %q, want %s", out, pb.MAC)
	}
	if dA.vxlans(t)[0].Stats.ARPSuppressed == supp {
		t.Error("a1's kernel resolved b1 without A answering")
	}
	// IPv6: b1's solicitation for a1 teaches A b1's address; then a1's
	// solicitation for b1 is answered by A with an NA.
	ping(t, b1, "fd42:80::a1")
	nsRun(t, a1, "ip", "-6", "neigh", "flush", "dev", "eth0")
	ping(t, a1, "fd42:80::b1")
	if out := nsRun(t, a1, "ip", "-6", "neigh", "show", "fd42:80::b1"); !strings.Contains(out, pb.MAC) {
		t.Errorf("a1's neighbour entry for fd42:80::b1: %q, want %s", out, pb.MAC)
	}
	if v := dA.vxlans(t)[0]; v.Stats.NDSuppressed == 0 || v.Stats.Neighs < 2 {
		t.Errorf("A's tunnel: %d NS answered, %d addresses learned; want at least 1 and 2", v.Stats.NDSuppressed, v.Stats.Neighs)
	}
	if out, _, code := dA.cli(t, "vxlan", "list"); code != 0 || !strings.Contains(out, "ARP-SUPPRESSED") {
		t.Errorf("vxlan list: exit %d, want the suppression columns:\n%s", code, out)
	}
	// What A answers for: b1's addresses, at b1's MAC.
	learned := map[string]string{}
	for _, n := range cliJSON[[]api.VXLANNeigh](t, dA, "vxlan", "neigh", "42", "--json") {
		learned[n.IP] = n.MAC
	}
	for _, a := range []string{ip(pb), "fd42:80::b1"} {
		if learned[a] != pb.MAC {
			t.Errorf("vxlan neigh 42 on A: %s at %q, want %s (all: %v)", a, learned[a], pb.MAC, learned)
		}
	}
}
