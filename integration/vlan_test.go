package integration

import (
	"encoding/binary"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/checksum"
)

// Helpers for the tests of issue 8 (VLANs, isolation, port security, ACL
// rules, hub mode): this file and acl_test.go.

// nsRun runs a command inside ns and returns its combined output; it fails
// the test if the command fails.
func nsRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v\n%s", ns, args, err, out)
	}
	return string(out)
}

// noPing pings addr from ns and fails the test if a reply comes back.
func noPing(t *testing.T, ns, addr string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", addr).CombinedOutput()
	if err == nil {
		t.Errorf("ping %s from %s: got a reply, want none\n%s", addr, ns, out)
	}
}

// portStats returns the counters of the port called name.
func (d *daemon) portStats(t *testing.T, name string) api.PortStats {
	t.Helper()
	for _, p := range d.ports(t) {
		if p.Name == name {
			return p.Stats
		}
	}
	t.Fatalf("no port %s", name)
	return api.PortStats{}
}

// gatewayStats returns the gateway's counters.
func (d *daemon) gatewayStats(t *testing.T) api.GatewayStats {
	t.Helper()
	s, err := d.client.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s.Gateway
}

// rules lists the daemon's rules.
func (d *daemon) rules(t *testing.T) []api.RuleStats {
	t.Helper()
	return cliJSON[[]api.RuleStats](t, d, "rule", "list", "--json")
}

// addRule runs `tapswitch rule add args...` and returns the new rule's ID
// as printed.
func (d *daemon) addRule(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := d.cli(t, append([]string{"rule", "add"}, args...)...)
	if code != 0 {
		t.Fatalf("rule add %v: exit %d: %s", args, code, errOut)
	}
	return strings.TrimSpace(out)
}

// neighMAC returns the link-layer address ns's neighbour table has for
// addr on dev, or "" if none.
func neighMAC(t *testing.T, ns, dev, addr string) string {
	t.Helper()
	f := strings.Fields(nsRun(t, ns, "ip", "neigh", "show", addr, "dev", dev))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// rawSender opens an AF_PACKET socket on eth0 in ns that sends whole
// Ethernet frames, whatever their source addresses.
func rawSender(t *testing.T, ns string) func(frame []byte) {
	t.Helper()
	var fd, ifindex int
	inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	return func(frame []byte) {
		t.Helper()
		to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
		copy(to.Addr[:], frame[:6])
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			t.Fatalf("send a raw frame from %s: %v", ns, err)
		}
	}
}

// sniffer is an AF_PACKET socket on eth0 in a namespace that receives
// every frame (ETH_P_ALL) with its VLAN.
type sniffer struct{ fd int }

// newSniffer opens a sniffer in ns, with a 100 ms receive timeout.
func newSniffer(t *testing.T, ns string) *sniffer {
	t.Helper()
	var fd int
	inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	t.Cleanup(func() { unix.Close(fd) })
	return &sniffer{fd}
}

// find reads incoming frames for up to wait until match accepts one. vlan
// is the 802.1Q VLAN the frame came with, -1 if untagged; frame is
// untagged either way (the kernel moves a received tag into the packet's
// metadata, which PACKET_AUXDATA reports).
func (s *sniffer) find(wait time.Duration, match func(frame []byte, vlan int) bool) bool {
	buf, oob := make([]byte, 65536), make([]byte, 256)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		n, oobn, _, from, err := unix.Recvmsg(s.fd, buf, oob, 0)
		if err != nil {
			continue // the receive timeout
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f, vlan := buf[:n], -1
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 20 {
				status := binary.NativeEndian.Uint32(m.Data[0:])
				if status&unix.TP_STATUS_VLAN_VALID != 0 {
					vlan = int(binary.NativeEndian.Uint16(m.Data[16:]) & 0x0fff)
				}
			}
		}
		if len(f) >= 18 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_8021Q { // a tag left in the frame
			vlan = int(binary.BigEndian.Uint16(f[14:]) & 0x0fff)
			f = append(f[:12:12], f[16:]...)
		}
		if match(f, vlan) {
			return true
		}
	}
	return false
}

// tagged returns frame with an 802.1Q tag for vlan after its MACs.
func tagged(frame []byte, vlan uint16) []byte {
	f := append([]byte{}, frame[:12]...)
	f = binary.BigEndian.AppendUint16(f, unix.ETH_P_8021Q)
	f = binary.BigEndian.AppendUint16(f, vlan)
	return append(f, frame[12:]...)
}

// isARP reports whether f is an ARP packet of operation op (1 request, 2
// reply) with sender address spa and target address tpa.
func isARP(f []byte, op uint16, spa, tpa string) bool {
	return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP && binary.BigEndian.Uint16(f[20:]) == op &&
		net.IP(f[28:32]).String() == spa && net.IP(f[38:42]).String() == tpa
}

// isEcho reports whether f is an IPv4 ICMP echo of type typ (8 request, 0
// reply) from src to dst.
func isEcho(f []byte, typ byte, src, dst string) bool {
	return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_IP && f[14]>>4 == 4 && f[23] == 1 &&
		f[14+int(f[14]&0xf)*4] == typ && net.IP(f[26:30]).String() == src && net.IP(f[30:34]).String() == dst
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// arpFrame is a broadcast ARP request from the Ethernet source src, with
// sender hardware address sha, sender address spa and target address tpa;
// spa == tpa makes a gratuitous ARP.
func arpFrame(src, sha net.HardwareAddr, spa, tpa string) []byte {
	f := make([]byte, 0, 60)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, unix.ETH_P_ARP)
	f = append(f, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	f = append(f, sha...)
	f = append(f, net.ParseIP(spa).To4()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, net.ParseIP(tpa).To4()...)
	return append(f, make([]byte, 60-len(f))...)
}

// echoFrame is an ICMP echo request from src/srcIP to dst/dstIP.
func echoFrame(src, dst net.HardwareAddr, srcIP, dstIP string) []byte {
	f := make([]byte, 14+20+8+8)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 1 // version 4, IHL 5; TTL; ICMP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	copy(ip[12:], net.ParseIP(srcIP).To4())
	copy(ip[16:], net.ParseIP(dstIP).To4())
	binary.BigEndian.PutUint16(ip[10:], checksum.Checksum(ip, 0))
	icmp := f[34:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], 0x7473)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	copy(icmp[8:], "tapswtch")
	binary.BigEndian.PutUint16(icmp[2:], checksum.Checksum(icmp, 0))
	return f
}

// TestVLANAccess puts two containers on VLAN 10 and two on VLAN 20, with
// the gateway on VLAN 10: each reaches its VLAN's peer and not the other
// VLAN, and only VLAN 10 reaches the gateway.
func TestVLANAccess(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--gateway-vlan", "10")
	a1, a2, b1, b2 := newNS(t), newNS(t), newNS(t), newNS(t)
	pa1 := d.attach(t, a1, "a1", "--vlan", "10")
	pa2 := d.attach(t, a2, "a2", "--vlan", "10")
	pb1 := d.attach(t, b1, "b1", "--vlan", "20")
	pb2 := d.attach(t, b2, "b2", "--vlan", "20")
	if pa1.VLAN != 10 || pb1.VLAN != 20 {
		t.Fatalf("attach: VLANs %d and %d, want 10 and 20", pa1.VLAN, pb1.VLAN)
	}
	ping(t, a1, ip(pa2))
	ping(t, b1, ip(pb2))
	ping(t, a1, "10.90.0.1")
	noPing(t, a1, ip(pb1))
	noPing(t, b2, ip(pa2))
	noPing(t, b1, "10.90.0.1")

	out, _, code := d.cli(t, "ports")
	if code != 0 {
		t.Fatalf("ports: exit %d", code)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		want := map[string]string{"gateway": "10", "a1": "10", "a2": "10", "b1": "20", "b2": "20"}[f[0]]
		if want != "" && f[4] != want {
			t.Errorf("ports: %s has VLAN %q, want %s:\n%s", f[0], f[4], want, out)
		}
	}
	// The FDB is per VLAN: a2's MAC was learned on VLAN 10.
	fdb := cliJSON[[]api.FDBEntry](t, d, "fdb", "--json")
	found := false
	for _, e := range fdb {
		if e.MAC == pa2.MAC {
			found = true
			if e.VLAN != 10 || e.Port != "a2" {
				t.Errorf("fdb: %s on VLAN %d port %s, want VLAN 10 port a2", e.MAC, e.VLAN, e.Port)
			}
		}
	}
	if !found {
		t.Errorf("fdb lacks %s:\n%+v", pa2.MAC, fdb)
	}
}

// TestVLANTrunk attaches a trunk carrying VLANs 10 and 20, and access
// ports on VLANs 10 and 20. The trunk's frames tagged 10 reach the VLAN 10
// port and its answers come back tagged 10, never seen on VLAN 20; the
// trunk's untagged traffic (native VLAN 1) reaches the gateway; a VLAN the
// trunk does not carry, two tags, or a tag on an access port is dropped and
// counted.
//
// This kernel has no 802.1Q devices (CONFIG_VLAN_8021Q is not set, so `ip
// link add ... type vlan` fails): the trunk's tagged side is a raw socket
// that sends tagged frames and reads the tag of received ones from
// PACKET_AUXDATA.
//
// The tagged frames come from an address that is not the trunk's: port
// security checks IPv4 sources on untagged frames only (an access port's,
// a trunk's native VLAN's), so a trunk's VLANs may use any address; their
// source MAC is still checked.
func TestVLANTrunk(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t)
	tr, a10, a20 := newNS(t), newNS(t), newNS(t)
	pt := d.attach(t, tr, "t", "--trunk", "10,20")
	p10 := d.attach(t, a10, "v10", "--vlan", "10")
	d.attach(t, a20, "v20", "--vlan", "20")
	if pt.VLANs() != "1,T:10,20" {
		t.Errorf("trunk port VLANs: %q, want 1,T:10,20", pt.VLANs())
	}
	tMAC, mac10 := mustMAC(t, pt.MAC), mustMAC(t, p10.MAC)
	const trunkIP = "10.90.9.10" // the trunk's address on VLAN 10
	send, sn, sn20 := rawSender(t, tr), newSniffer(t, tr), newSniffer(t, a20)

	send(tagged(arpFrame(tMAC, tMAC, trunkIP, ip(p10)), 10))
	if !sn.find(3*time.Second, func(f []byte, vlan int) bool { return vlan == 10 && isARP(f, 2, ip(p10), trunkIP) }) {
		t.Errorf("no ARP reply from v10 tagged with VLAN 10 on the trunk")
	}
	if sn20.find(300*time.Millisecond, func(f []byte, vlan int) bool { return isARP(f, 1, trunkIP, ip(p10)) }) {
		t.Errorf("the VLAN 20 port saw the trunk's VLAN 10 broadcast")
	}
	send(tagged(echoFrame(tMAC, mac10, trunkIP, ip(p10)), 10))
	if !sn.find(3*time.Second, func(f []byte, vlan int) bool { return vlan == 10 && isEcho(f, 0, ip(p10), trunkIP) }) {
		t.Errorf("no echo reply from v10 tagged with VLAN 10 on the trunk")
	}
	ping(t, tr, "10.90.0.1") // untagged: native VLAN 1, the gateway's

	errs := func(name string) uint64 { return d.portStats(t, name).RxVLANErrors }
	for _, c := range []struct {
		what, port string
		send       func([]byte)
		frame      []byte
	}{
		{"a VLAN the trunk does not carry", "t", send, tagged(arpFrame(tMAC, tMAC, trunkIP, ip(p10)), 30)},
		{"two tags", "t", send, tagged(tagged(arpFrame(tMAC, tMAC, trunkIP, ip(p10)), 10), 10)},
		{"a tag on an access port", "v10", rawSender(t, a10), tagged(arpFrame(mac10, mac10, ip(p10), "10.90.9.12"), 10)},
	} {
		before := errs(c.port)
		c.send(c.frame)
		eventually(t, 5*time.Second, c.what+": "+c.port+"'s rx_vlan_errors to count it", func() bool { return errs(c.port) == before+1 })
	}
}

// TestHubMode checks that in hub mode a unicast frame between two
// containers reaches a third one too.
func TestHubMode(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--mode", "hub")
	ns, ports := d.attachN(t, 3, "h")
	sn := newSniffer(t, ns[2])
	ping(t, ns[0], ip(ports[1]))
	if !sn.find(2*time.Second, func(f []byte, vlan int) bool {
		// h1's echo request to h2, unicast to h2's MAC.
		return net.HardwareAddr(f[0:6]).String() == ports[1].MAC && isEcho(f, 8, ip(ports[0]), ip(ports[1]))
	}) {
		t.Errorf("h3 did not see h1's unicast echo request to h2 in hub mode")
	}
	out, _, code := d.cli(t, "pipeline")
	if code != 0 || !strings.Contains(out, "mode: hub") {
		t.Errorf("pipeline: exit %d:\n%s\nwant mode: hub", code, out)
	}
}
