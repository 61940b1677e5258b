package tap

// Tests in this file create real TAP devices and network namespaces: they need
// root and skip without it (fail when CI=true). Every namespace is named
// tswt<pid>x<n>, every frame stays inside it, and everything is removed in
// t.Cleanup.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

var (
	testMAC  = net.HardwareAddr{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02} // the TAP inside the namespace
	peerMAC  = net.HardwareAddr{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x03} // a made-up peer on the switch side
	testAddr = netip.MustParsePrefix("10.90.0.2/16")
	testGw   = netip.MustParseAddr("10.90.0.1")
	peerIP   = netip.MustParseAddr("10.90.0.3")
)

// etherTypeTest is IEEE 802 "local experimental" EtherType 1, which no
// kernel protocol handles.
const etherTypeTest = 0x88b5

// requireRoot skips the test without the privileges and tools it needs, or
// fails it when CI=true.
func requireRoot(t testing.TB) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create TAP devices and network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		fail("needs /dev/net/tun: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fail("needs the ip command (iproute2): %v", err)
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var nsSeq atomic.Int32

// newNetns creates a named network namespace and returns its name and path;
// it is deleted when the test ends, unless the test deleted it.
func newNetns(t testing.TB) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("tswt%dx%d", os.Getpid(), nsSeq.Add(1))
	path = filepath.Join("/run/netns", name)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := os.Stat(path); err == nil {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", name, err, out)
			}
		}
	})
	return name, path
}

// withHandle calls fn with a netlink handle in the namespace at path, and
// closes it afterwards so that it does not keep the namespace alive.
func withHandle(t *testing.T, path string, fn func(h *netlink.Handle)) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink in %s: %v", path, err)
	}
	defer h.Close()
	fn(h)
}

// linkNames returns the sorted names of the links in the namespace at path.
func linkNames(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	withHandle(t, path, func(h *netlink.Handle) {
		links, err := h.LinkList()
		if err != nil {
			t.Fatalf("list links in %s: %v", path, err)
		}
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
	})
	slices.Sort(names)
	return names
}

// hostTempLinks returns the links in the test's own namespace that carry a
// temporary name of this process.
func hostTempLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	prefix := tempPrefix + strconv.Itoa(os.Getpid()) + "_"
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names
}

// inNetns runs fn on an OS thread inside the namespace at path. Sockets
// created by fn stay in that namespace after it returns.
func inNetns(t *testing.T, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only if it is back in its own
		// namespace; otherwise it ends with this goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		err = netns.Set(ns)
		ns.Close()
		if err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func testConfig(path string) Config {
	return Config{Netns: path, Name: "eth0", MAC: testMAC, MTU: 1400, Addr: testAddr, Gateway: testGw}
}

// create creates a Device and closes it when the test ends.
func create(t testing.TB, cfg Config) *Device {
	t.Helper()
	d, err := Create(cfg)
	if err != nil {
		t.Fatalf("Create(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// readFrame reads frames from d until one satisfies match, and returns it
// with its virtio_net_hdr. It fails the test after timeout.
func readFrame(t *testing.T, d *Device, timeout time.Duration, match func(frame []byte) bool) []byte {
	t.Helper()
	if err := d.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	defer d.f.SetReadDeadline(time.Time{})
	buf := make([]byte, vswitch.BufSize)
	for {
		n, err := d.Read(buf, vswitch.Headroom)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		frame := buf[vswitch.Headroom : vswitch.Headroom+n]
		if len(frame) >= vswitch.VnetHdrLen+14 && match(frame) {
			return frame
		}
	}
}

// ethernet returns a frame for Device.Write: a zero virtio_net_hdr, then an
// Ethernet header and payload.
func ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, vswitch.VnetHdrLen, vswitch.VnetHdrLen+14+len(payload))
	b = append(b, dst...)
	b = append(b, src...)
	b = append(b, byte(etherType>>8), byte(etherType))
	return append(b, payload...)
}

// arp returns an ARP packet for IPv4 over Ethernet (RFC 826).
func arp(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := []byte{
		0x00, 0x01, // hardware type: Ethernet
		0x08, 0x00, // protocol type: IPv4
		6, 4, // hardware, protocol address length
		byte(op >> 8), byte(op),
	}
	b = append(b, sha...)
	b = append(b, spa.AsSlice()...)
	b = append(b, tha...)
	return append(b, tpa.AsSlice()...)
}

// isARP reports whether frame (with its virtio_net_hdr) is an ARP packet with
// operation op and target protocol address tpa.
func isARP(frame []byte, op uint16, tpa netip.Addr) bool {
	e := frame[vswitch.VnetHdrLen:]
	if len(e) < 14+28 || e[12] != 0x08 || e[13] != 0x06 {
		return false
	}
	a := e[14:]
	return a[6] == byte(op>>8) && a[7] == byte(op) && netip.AddrFrom4([4]byte(a[24:28])) == tpa
}

func zeroVnetHdr(t *testing.T, frame []byte) {
	t.Helper()
	if h := frame[:vswitch.VnetHdrLen]; !bytes.Equal(h, make([]byte, vswitch.VnetHdrLen)) {
		t.Errorf("virtio_net_hdr = % x, want zeros", h)
	}
}

// tunFd calls fn with the fd of d's file without making it blocking (as
// os.File.Fd would).
func tunFd(t *testing.T, d *Device, fn func(fd int)) {
	t.Helper()
	rc, err := d.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

func TestCreate(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	if got := d.Name(); got != "eth0" {
		t.Errorf("Name() = %q, want eth0", got)
	}
	if got := d.Netns(); got != path {
		t.Errorf("Netns() = %q, want %q", got, path)
	}
	withHandle(t, path, func(h *netlink.Handle) {
		link, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatalf("eth0 in %s: %v", path, err)
		}
		a := link.Attrs()
		if got, want := link.Type(), "tuntap"; got != want {
			t.Errorf("link type = %q, want %q", got, want)
		}
		if got := a.HardwareAddr; !bytes.Equal(got, testMAC) {
			t.Errorf("MAC = %s, want %s", got, testMAC)
		}
		if got, want := a.MTU, 1400; got != want {
			t.Errorf("MTU = %d, want %d", got, want)
		}
		if a.Flags&net.FlagUp == 0 {
			t.Errorf("flags = %v, want up", a.Flags)
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ad := range addrs {
			got = append(got, ad.IPNet.String())
		}
		if want := []string{testAddr.String()}; !slices.Equal(got, want) {
			t.Errorf("addresses = %v, want %v", got, want)
		}
		// A fresh namespace's lo is down; Create brings it up.
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("lo flags = %v, want up", lo.Attrs().Flags)
		}
		routes, err := h.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range routes {
			isDefault := r.Dst == nil || r.Dst.String() == "0.0.0.0/0"
			if isDefault && r.Gw.Equal(testGw.AsSlice()) {
				found = true
			}
		}
		if !found {
			t.Errorf("routes = %v, want a default route via %s", routes, testGw)
		}
	})
	if got := hostTempLinks(t); len(got) != 0 {
		t.Errorf("temporary links left in the host namespace: %v", got)
	}
}

// TestCreateGSOMaxSegs checks that Config.GSOMaxSegs becomes the device's
// gso_max_segs, and that without it the kernel's default stays.
func TestCreateGSOMaxSegs(t *testing.T) {
	requireRoot(t)
	for _, tt := range []struct{ set, want int }{{44, 44}, {0, 65535}} {
		_, path := newNetns(t)
		cfg := testConfig(path)
		cfg.GSOMaxSegs = tt.set
		create(t, cfg)
		withHandle(t, path, func(h *netlink.Handle) {
			link, err := h.LinkByName("eth0")
			if err != nil {
				t.Fatalf("eth0 in %s: %v", path, err)
			}
			if got := int(link.Attrs().GSOMaxSegs); got != tt.want {
				t.Errorf("GSOMaxSegs %d: gso_max_segs = %d, want %d", tt.set, got, tt.want)
			}
		})
	}
}

// TestCreateProcPath creates a TAP in the namespace of a process, named by
// /proc/PID/ns/net.
func TestCreateProcPath(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// ip netns exec enters the namespace and then execs sleep in the same
	// process: wait until the process is in the namespace.
	procPath := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got unix.Stat_t
		if err := unix.Stat(procPath, &got); err == nil && got.Ino == want.Ino && got.Dev == want.Dev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never entered %s", procPath, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := create(t, testConfig(procPath))
	if got := d.Netns(); got != procPath {
		t.Errorf("Netns() = %q, want %q", got, procPath)
	}
	if got := linkNames(t, path); !slices.Contains(got, "eth0") {
		t.Errorf("links in %s = %v, want eth0 among them", path, got)
	}
}

// TestCreateCallerNetns creates a TAP with Netns "" from a thread inside a
// test namespace, so that the test's own namespace is left alone.
func TestCreateCallerNetns(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	var d *Device
	err := inNetns(t, path, func() (err error) {
		d, err = Create(Config{Name: "tsw0", MAC: testMAC, MTU: 9000})
		return err
	})
	if err != nil {
		t.Fatalf("Create in the caller's namespace: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if got := d.Netns(); got != "" {
		t.Errorf("Netns() = %q, want \"\"", got)
	}
	withHandle(t, path, func(h *netlink.Handle) {
		link, err := h.LinkByName("tsw0")
		if err != nil {
			t.Fatalf("tsw0 in %s: %v", path, err)
		}
		if got, want := link.Attrs().MTU, 9000; got != want {
			t.Errorf("MTU = %d, want %d", got, want)
		}
		if got := link.Attrs().HardwareAddr; !bytes.Equal(got, testMAC) {
			t.Errorf("MAC = %s, want %s", got, testMAC)
		}
	})
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := linkNames(t, path); slices.Contains(got, "tsw0") {
		t.Errorf("links after Close = %v, want no tsw0", got)
	}
}

// TestVnetHdr checks the TUNSETIFF flags and the header size as the kernel
// shows them inside the namespace.
func TestVnetHdr(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	d := create(t, testConfig(path))

	out := strings.TrimSpace(run(t, "ip", "netns", "exec", name, "cat", "/sys/class/net/eth0/tun_flags"))
	flags, err := strconv.ParseUint(out, 0, 32)
	if err != nil {
		t.Fatalf("tun_flags %q: %v", out, err)
	}
	// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, and not IFF_PERSIST: closing the
	// file deletes the device.
	if want := uint64(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR); flags != want {
		t.Errorf("tun_flags = %#x, want %#x", flags, want)
	}
	out = run(t, "ip", "-n", name, "-d", "link", "show", "eth0")
	for _, want := range []string{"tun type tap", "pi off", "vnet_hdr on", "persist off"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip -d link show eth0 = %q, want %q in it", out, want)
		}
	}
	tunFd(t, d, func(fd int) {
		size, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
		if err != nil {
			t.Fatalf("TUNGETVNETHDRSZ: %v", err)
		}
		if size != vswitch.VnetHdrLen {
			t.Errorf("TUNGETVNETHDRSZ = %d, want %d", size, vswitch.VnetHdrLen)
		}
	})
}

// TestFramesARP sends a datagram from inside the namespace to an address of
// its subnet: the kernel asks for the address by ARP, the test answers as the
// switch would, and the datagram follows to the MAC of the answer.
func TestFramesARP(t *testing.T) {
	requireRoot(t)
	t.Run("offloads", func(t *testing.T) { framesARP(t, false) })
	t.Run("no offloads", func(t *testing.T) { framesARP(t, true) })
}

// framesARP is TestFramesARP with offloads on or off: with them on, the
// datagram comes with a partial checksum (checkPartialUDP).
func framesARP(t *testing.T, noOffloads bool) {
	_, path := newNetns(t)
	cfg := testConfig(path)
	cfg.NoOffloads = noOffloads
	d := create(t, cfg)

	var fd int
	if err := inNetns(t, path, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("UDP socket in %s: %v", path, err)
	}
	defer unix.Close(fd)
	payload := []byte("tapswitch test datagram")
	if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: 9, Addr: peerIP.As4()}); err != nil {
		t.Fatalf("sendto %s:9: %v", peerIP, err)
	}

	req := readFrame(t, d, 5*time.Second, func(f []byte) bool { return isARP(f, 1, peerIP) })
	zeroVnetHdr(t, req)
	e := req[vswitch.VnetHdrLen:]
	if got, want := net.HardwareAddr(e[6:12]), testMAC; !bytes.Equal(got, want) {
		t.Errorf("ARP request source MAC = %s, want %s", got, want)
	}

	reply := ethernet(testMAC, peerMAC, 0x0806, arp(2, peerMAC, peerIP, testMAC, testAddr.Addr()))
	buf := append(make([]byte, vswitch.Headroom), reply...)
	if n, err := d.Write(buf, vswitch.Headroom); err != nil || n != len(reply) {
		t.Fatalf("Write(ARP reply) = %d, %v, want %d, nil", n, err, len(reply))
	}

	ip := readFrame(t, d, 5*time.Second, func(f []byte) bool {
		e := f[vswitch.VnetHdrLen:]
		return bytes.Equal(e[:6], peerMAC) && e[12] == 0x08 && e[13] == 0x00
	})
	if noOffloads {
		zeroVnetHdr(t, ip)
	} else {
		checkPartialUDP(t, ip)
	}
	pkt := ip[vswitch.VnetHdrLen+14:]
	if len(pkt) < 28 {
		t.Fatalf("IPv4 packet of %d bytes", len(pkt))
	}
	if got := netip.AddrFrom4([4]byte(pkt[16:20])); got != peerIP {
		t.Errorf("IPv4 destination = %s, want %s", got, peerIP)
	}
	ihl := int(pkt[0]&0x0f) * 4
	if got := pkt[9]; got != unix.IPPROTO_UDP {
		t.Fatalf("IPv4 protocol = %d, want UDP", got)
	}
	if got := pkt[ihl+8:]; !bytes.Equal(got, payload) {
		t.Errorf("UDP payload = %q, want %q", got, payload)
	}
}

// packetSocket opens an AF_PACKET socket bound to eth0 in the namespace at
// path, with a receive timeout.
func packetSocket(t *testing.T, path string) (fd, ifindex int) {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	err := inNetns(t, path, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifindex}); err != nil {
		t.Fatalf("bind packet socket: %v", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd, ifindex
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestFramesPacketSocket moves a frame of a protocol no kernel handles in
// both directions between the Device and a packet socket in the namespace.
func TestFramesPacketSocket(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	fd, ifindex := packetSocket(t, path)

	t.Run("Write", func(t *testing.T) {
		frame := ethernet(testMAC, peerMAC, etherTypeTest, []byte("from the switch"))
		buf := append(make([]byte, vswitch.Headroom), frame...)
		if n, err := d.Write(buf, vswitch.Headroom); err != nil || n != len(frame) {
			t.Fatalf("Write = %d, %v, want %d, nil", n, err, len(frame))
		}
		want := frame[vswitch.VnetHdrLen:]
		rb := make([]byte, 2048)
		for {
			n, from, err := unix.Recvfrom(fd, rb, 0)
			if err != nil {
				t.Fatalf("recvfrom in the namespace (frame never arrived?): %v", err)
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if bytes.Equal(rb[:n], want) {
				return
			}
		}
	})

	t.Run("Read", func(t *testing.T) {
		frame := ethernet(peerMAC, testMAC, etherTypeTest, []byte("to the switch"))
		to := &unix.SockaddrLinklayer{Protocol: htons(etherTypeTest), Ifindex: ifindex, Halen: 6}
		copy(to.Addr[:], peerMAC)
		if err := unix.Sendto(fd, frame[vswitch.VnetHdrLen:], 0, to); err != nil {
			t.Fatalf("sendto from the namespace: %v", err)
		}
		got := readFrame(t, d, 5*time.Second, func(f []byte) bool {
			e := f[vswitch.VnetHdrLen:]
			return e[12] == etherTypeTest>>8 && e[13] == etherTypeTest&0xff
		})
		if !bytes.Equal(got, frame) {
			t.Errorf("Read frame = % x, want % x", got, frame)
		}
	})
}

func TestWriteTooBig(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	buf := make([]byte, vswitch.Headroom+vswitch.MaxFrame+1)
	if _, err := d.Write(buf, vswitch.Headroom); !errors.Is(err, vswitch.ErrFrameTooBig) {
		t.Errorf("Write(%d bytes) = %v, want ErrFrameTooBig", vswitch.MaxFrame+1, err)
	}
}

func TestClose(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := linkNames(t, path), []string{"lo"}; !slices.Equal(got, want) {
		t.Errorf("links after Close = %v, want %v", got, want)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	buf := make([]byte, vswitch.BufSize)
	if _, err := d.Read(buf, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	frame := ethernet(testMAC, peerMAC, etherTypeTest, nil)
	if _, err := d.Write(frame, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	// No address: the kernel sends nothing on its own (no ARP), and IPv6
	// is the only source of frames, so disable it.
	name := strings.TrimPrefix(path, "/run/netns/")
	run(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	d := create(t, Config{Netns: path, Name: "eth0", MAC: testMAC})
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, vswitch.BufSize)
		_, err := d.Read(buf, vswitch.Headroom)
		errc <- err
	}()
	// Give Read time to block; it returns net.ErrClosed in either order.
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("Read returned before Close: %v", err)
	default:
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
}

// TestCreateErrors checks that every failure of Create leaves nothing behind:
// no temporary link in the caller's namespace, no new link in the target one.
func TestCreateErrors(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, ns, path string) Config // returns the config to try
		hook  string                                     // fail the step that starts with this
		want  error
	}{
		{
			name: "missing namespace",
			setup: func(t *testing.T, ns, path string) Config {
				return testConfig(path + "-missing")
			},
			want: ErrNetnsNotFound,
		},
		{
			name: "not a namespace",
			setup: func(t *testing.T, ns, path string) Config {
				f := filepath.Join(t.TempDir(), "netns")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return testConfig(f)
			},
			want: ErrNotNetns,
		},
		{
			name: "not a network namespace",
			setup: func(t *testing.T, ns, path string) Config {
				return testConfig("/proc/self/ns/uts")
			},
			want: ErrNotNetns,
		},
		{
			name: "name taken",
			setup: func(t *testing.T, ns, path string) Config {
				run(t, "ip", "-n", ns, "tuntap", "add", "dev", "eth0", "mode", "tap")
				return testConfig(path)
			},
			want: ErrLinkExists,
		},
		{
			name:  "invalid config",
			setup: func(t *testing.T, ns, path string) Config { c := testConfig(path); c.MTU = 65535; return c },
			want:  ErrInvalidConfig,
		},
		{
			// Passes Validate, fails in the kernel at the last step,
			// with the TAP in the namespace: a default route exists.
			name: "default route exists",
			setup: func(t *testing.T, ns, path string) Config {
				run(t, "ip", "-n", ns, "route", "add", "blackhole", "default")
				return testConfig(path)
			},
			want: unix.EEXIST,
		},
	}
	errHook := errors.New("injected failure")
	for _, step := range []string{"open", "look up", "set MAC", "set MTU", "move to netns", "rename", "add address", "set up", "set lo up", "add default route"} {
		tests = append(tests, struct {
			name  string
			setup func(t *testing.T, ns, path string) Config
			hook  string
			want  error
		}{
			name:  "fail at " + step,
			setup: func(t *testing.T, ns, path string) Config { return testConfig(path) },
			hook:  step,
			want:  errHook,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, path := newNetns(t)
			cfg := tt.setup(t, ns, path)
			before := linkNames(t, path)
			hooked := false
			if tt.hook != "" {
				testHook = func(step string) error {
					if strings.HasPrefix(step, tt.hook) {
						hooked = true
						return errHook
					}
					return nil
				}
				t.Cleanup(func() { testHook = nil })
			}
			d, err := Create(cfg)
			if err == nil {
				d.Close()
				t.Fatalf("Create succeeded, want an error wrapping %v", tt.want)
			}
			t.Logf("Create: %v", err)
			if !errors.Is(err, tt.want) {
				t.Errorf("Create = %v, want an error wrapping %v", err, tt.want)
			}
			if tt.hook != "" && !hooked {
				t.Errorf("step %q never ran", tt.hook)
			}
			if got := linkNames(t, path); !slices.Equal(got, before) {
				t.Errorf("links in the namespace = %v, want %v as before", got, before)
			}
			if got := hostTempLinks(t); len(got) != 0 {
				t.Errorf("temporary links left in the host namespace: %v", got)
			}
		})
	}
}

// TestNetnsDeleted deletes the namespace while a Read is blocked: the kernel
// deletes the TAP with the namespace, and Read fails with an error that is
// not net.ErrClosed.
func TestNetnsDeleted(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	d := create(t, testConfig(path))
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, vswitch.BufSize)
		for {
			// Frames sent by the kernel before the namespace dies
			// (IPv6 neighbour discovery, MLD) are read and dropped.
			if _, err := d.Read(buf, vswitch.Headroom); err != nil {
				done <- result{err, time.Now()}
				return
			}
		}
	}()
	start := time.Now()
	run(t, "ip", "netns", "del", name)
	select {
	case r := <-done:
		t.Logf("Read after ip netns del: %v (errno %d) after %v", r.err, errnoOf(r.err), r.at.Sub(start))
		if errors.Is(r.err, net.ErrClosed) {
			t.Errorf("Read = %v, want an error that is not net.ErrClosed", r.err)
		}
		if !errors.Is(r.err, unix.EBADFD) {
			t.Errorf("Read = %v, want EBADFD (tun_get: the device is detached)", r.err)
		}
		// The kernel deleted the TAP rather than moving it back to
		// the caller's namespace.
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if bytes.Equal(l.Attrs().HardwareAddr, testMAC) {
				t.Errorf("TAP back in the caller's namespace as %s", l.Attrs().Name)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked 10s after ip netns del")
	}
	buf := make([]byte, vswitch.BufSize)
	frame := ethernet(testMAC, peerMAC, etherTypeTest, nil)
	_, err := d.Write(frame, 0)
	t.Logf("Write after the namespace died: %v", err)
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after the namespace died = %v, want an error that is not net.ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := d.Read(buf, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
}

func errnoOf(err error) int {
	var e unix.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	return -1
}

// TestTunSocketNetns checks the reason Create opens /dev/net/tun in the
// caller's namespace: the tun file's socket belongs to (and holds a reference
// to) the namespace it was opened in.
func TestTunSocketNetns(t *testing.T) {
	requireRoot(t)

	t.Run("Create", func(t *testing.T) {
		_, path := newNetns(t)
		d := create(t, testConfig(path))
		var want unix.Stat_t
		if err := unix.Stat("/proc/self/ns/net", &want); err != nil {
			t.Fatal(err)
		}
		tunFd(t, d, func(fd int) {
			nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
			if err != nil {
				t.Fatalf("SIOCGSKNS: %v", err)
			}
			defer unix.Close(nsfd)
			var got unix.Stat_t
			if err := unix.Fstat(nsfd, &got); err != nil {
				t.Fatal(err)
			}
			if got.Ino != want.Ino || got.Dev != want.Dev {
				t.Errorf("namespace of the tun socket = inode %d, want the caller's namespace, inode %d", got.Ino, want.Ino)
			}
		})
	})

	// Opened inside the namespace, the tun file keeps it alive after ip
	// netns del, TAP and all: the mistake Create avoids.
	t.Run("opened inside", func(t *testing.T) {
		name, path := newNetns(t)
		ifname := fmt.Sprintf("tswt%di", os.Getpid())
		var fd int
		err := inNetns(t, path, func() error {
			var err error
			fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			ifr, err := unix.NewIfreq(ifname)
			if err != nil {
				return err
			}
			ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
			return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		})
		if err != nil {
			t.Fatalf("TAP opened in %s: %v", path, err)
		}
		defer unix.Close(fd)
		run(t, "ip", "netns", "del", name)

		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			t.Fatalf("SIOCGSKNS: %v", err)
		}
		ns := netns.NsHandle(nsfd)
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if _, err := h.LinkByName(ifname); err != nil {
			t.Errorf("TAP in the deleted namespace: %v, want it still there", err)
		}
	})
}

// TestReadWriteAllocs pins that a Write and a Read allocate nothing: the
// test writes an ARP request for the namespace's address and reads the reply.
func TestReadWriteAllocs(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	req := ethernet(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, peerMAC, 0x0806,
		arp(1, peerMAC, peerIP, make(net.HardwareAddr, 6), testAddr.Addr()))
	wbuf := append(make([]byte, vswitch.Headroom), req...)
	rbuf := make([]byte, vswitch.BufSize)
	if err := d.f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var failed error
	roundTrip := func() {
		if _, err := d.Write(wbuf, vswitch.Headroom); err != nil {
			failed = err
			return
		}
		for {
			n, err := d.Read(rbuf, vswitch.Headroom)
			if err != nil {
				failed = err
				return
			}
			if isARP(rbuf[vswitch.Headroom:vswitch.Headroom+n], 2, peerIP) {
				return
			}
		}
	}
	allocs := testing.AllocsPerRun(50, roundTrip)
	if failed != nil {
		t.Fatalf("ARP round trip: %v", failed)
	}
	if allocs != 0 {
		t.Errorf("allocations per Write+Read = %v, want 0", allocs)
	}
}

// BenchmarkWrite measures Write of a 64-byte frame that the namespace's
// kernel drops (unknown EtherType).
func BenchmarkWrite(b *testing.B) {
	requireRoot(b)
	_, path := newNetns(b)
	d := create(b, testConfig(path))
	frame := ethernet(testMAC, peerMAC, etherTypeTest, make([]byte, 64-14))
	buf := append(make([]byte, vswitch.Headroom), frame...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Write(buf, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
	}
}
