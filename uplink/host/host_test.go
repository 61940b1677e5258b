package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/wire"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec, want string
		ok         bool
	}{
		{"host", "host,addr=192.0.0.8,loopback=192.0.0.1,loopback6=64:ff9b::c000:1,mtu=1500", true},
		{"host,addr=198.51.100.9,loopback=198.51.100.10,mtu=9000", "host,addr=198.51.100.9,loopback=198.51.100.10,loopback6=64:ff9b::c633:640a,mtu=9000", true},
		{"host,loopback6=fd00:1::1", "host,addr=192.0.0.8,loopback=192.0.0.1,loopback6=fd00:1::1,mtu=1500", true},
		{"host,loopback6=::1", "loopback6=::1: not a unicast IPv6 address", false},
		{"host,loopback6=::ffff:1.2.3.4", "not a unicast IPv6 address", false},
		{"host,loopback6=192.0.2.1", "not a unicast IPv6 address", false},
		{"host,splice=off", "host,addr=192.0.0.8,loopback=192.0.0.1,loopback6=64:ff9b::c000:1,mtu=1500,splice=off", true},
		{"host,splice=on", "host,addr=192.0.0.8,loopback=192.0.0.1,loopback6=64:ff9b::c000:1,mtu=1500", true},
		{"host,splice=no", "splice=no: on or off expected", false},
		{"host,ip=1.2.3.4", `unknown key "ip"`, false},
		{"host,addr=127.0.0.1", "not a unicast host address", false},
		{"host,addr=fd00::1", "only IPv4", false},
		{"host,addr=192.0.0.1", "addr and loopback are both", false},
		{"host,mtu=100", "mtu=100", false},
		{"host,mtu", "want key=value", false},
		{"host,mtu=1500,mtu=1400", "given twice", false},
		{"tap", "not a host uplink", false},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			c, err := ParseSpec(tt.spec)
			wantErr := ""
			if !tt.ok {
				wantErr = tt.want
			}
			if testutil.WantErr(t, err, ErrInvalidSpec, wantErr) {
				return
			}
			if got := c.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// echoServer serves TCP on 127.0.0.1 until the test ends: it copies what
// it reads back, then closes its side.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	return echoServerAt(t, "tcp4", "127.0.0.1:0")
}

// echoServerAt is echoServer on addr of network.
func echoServerAt(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	ln := testutil.Listen(t, network, addr)
	go netnsutil.Serve(ln, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echoThrough sends size random bytes from the container's side (the
// rig's peer stack) to an echo server on the host's loopback, reached
// through the uplink's Loopback address, half-closes, and wants the same bytes
// back.
func echoThrough(t *testing.T, r *rig, size int) {
	t.Helper()
	srv := echoServer(t)
	c, err := gonet.DialTCP(r.peer, r.full(srv), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, size)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.CloseWrite() // half-close: the echo server sees EOF, then closes
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo: got %d bytes, want %d, with sha256 equal", len(got), len(data))
	}
}

func TestTCPThroughHostLoopback(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	echoThrough(t, r, 4<<20)
	s := r.u.Stats()
	if s.TCPTotal != 1 {
		t.Errorf("tcp total: got %d, want 1", s.TCPTotal)
	}
	waitFor(t, "tcp active back to 0", func() bool { return r.u.Stats().TCPActive == 0 })
}

func TestTCPSuperSegmentsToTheContainer(t *testing.T) {
	r := newRigGSO(t, Config{HostLoopback: true}, true)
	echoThrough(t, r, 8<<20)
	if r.gsoSeen.Load() == 0 {
		t.Errorf("no super-segment larger than the MTU came back")
	}
}

func TestTCPRefusedIsReset(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	// A port nobody listens on.
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), testutil.FreePort(t, "tcp4", "127.0.0.1"))
	_, err := gonet.DialTCP(r.peer, r.full(ap), ipv4.ProtocolNumber)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial a closed host port: got %v, want connection refused", err)
	}
	if got := r.u.Stats().TCPRefused; got != 1 {
		t.Errorf("tcp refused: got %d, want 1", got)
	}
}

func TestLoopbackOffByDefault(t *testing.T) {
	r := newRig(t, Config{})
	srv := echoServer(t)
	_, err := gonet.DialTCP(r.peer, r.full(srv), ipv4.ProtocolNumber)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial the host's loopback without HostLoopback: got %v, want connection refused", err)
	}
	s := r.u.Stats()
	if s.LoopbackRefused != 1 || s.TCPTotal != 0 {
		t.Errorf("loopback refused %d, tcp total %d: want 1 and 0", s.LoopbackRefused, s.TCPTotal)
	}
}

func TestLoopbackAddressesNeverReached(t *testing.T) {
	// 127.0.0.0/8 itself is refused even with HostLoopback: only
	// Loopback leads there.
	r := newRig(t, Config{HostLoopback: true})
	srv := echoServer(t)
	fa := r.full(srv)
	fa.Addr = tcpip.AddrFrom4(srv.Addr().As4())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := gonet.DialContextTCP(ctx, r.peer, fa, ipv4.ProtocolNumber); err == nil {
		t.Fatalf("dial %s: connected", srv)
	}
	c, err := gonet.DialUDP(r.peer, nil, &fa, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	waitFor(t, "refusals counted", func() bool { return r.u.Stats().LoopbackRefused >= 2 })
	if s := r.u.Stats(); s.TCPTotal != 0 || s.UDPTotal != 0 {
		t.Errorf("tcp total %d, udp total %d: want 0 and 0", s.TCPTotal, s.UDPTotal)
	}
}

func TestHostResetIsReset(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	ln := testutil.Listen(t, "tcp4", "127.0.0.1:0")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // a RST
	}()
	c, err := gonet.DialTCP(r.peer, r.full(ln.Addr().(*net.TCPAddr).AddrPort()), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	_, err = io.ReadAll(c)
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read after the host reset: got %v, want connection reset", err)
	}
	waitFor(t, "reset counted", func() bool { return r.u.Stats().TCPResets == 1 })
	waitFor(t, "the netstack endpoint freed", func() bool { return len(r.u.stack.RegisteredEndpoints()) == 0 })
}

// udpEchoServer echoes UDP on addr of network until the test ends; "big"
// is answered with 4000 bytes, a reply over the MTU.
func udpEchoServer(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go testutil.ServeUDP(pc, func(b []byte, _ net.Addr) []byte {
		if string(b) == "big" {
			return bytes.Repeat([]byte("b"), 4000)
		}
		return b
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// udpEchoes sends a datagram of 1 byte, one of 1400 and "big" on c and
// wants each echo (4000 bytes for "big", fragmented by the uplink).
func udpEchoes(t *testing.T, c net.Conn) {
	t.Helper()
	for _, tt := range []struct{ send, want []byte }{
		{[]byte("1"), []byte("1")},
		{bytes.Repeat([]byte("k"), 1400), bytes.Repeat([]byte("k"), 1400)},
		{[]byte("big"), bytes.Repeat([]byte("b"), 4000)},
	} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(tt.send); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8192)
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("send %d bytes: %v", len(tt.send), err)
		}
		if !bytes.Equal(b[:n], tt.want) {
			t.Fatalf("send %d bytes: got %d bytes back, want %d", len(tt.send), n, len(tt.want))
		}
	}
}

// udpEchoThrough dials the echo server at dst from the container over
// proto, wants udpEchoes through it and all of them through one socket
// (one per mapping), and returns the connection, closed when the test
// ends.
func udpEchoThrough(t *testing.T, r *rig, dst tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) net.Conn {
	t.Helper()
	c, err := gonet.DialUDP(r.peer, nil, &dst, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	udpEchoes(t, c)
	if s := r.u.Stats(); s.UDPSockets != 1 || s.UDPTotal != 1 {
		t.Errorf("udp sockets %d, total %d: want 1 and 1 (one per mapping)", s.UDPSockets, s.UDPTotal)
	}
	return c
}

func TestUDPEcho(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	dst := r.full(udpEchoServer(t, "udp4", "127.0.0.1:0"))
	c := udpEchoThrough(t, r, dst, ipv4.ProtocolNumber)
	// A datagram the container fragments is reassembled, and its echo
	// fragmented on the way back.
	big := make([]byte, 3000)
	rand.Read(big)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8192)
	n, err := c.Read(b)
	if err != nil || !bytes.Equal(b[:n], big) {
		t.Fatalf("a 3000-byte datagram: got %d bytes back (%v)", n, err)
	}
	if s := r.u.Stats(); s.Reassembled != 1 || s.FragmentsDropped != 0 {
		t.Errorf("reassembled %d, fragments dropped %d: want 1 and 0", s.Reassembled, s.FragmentsDropped)
	}
}

func TestUDPPortUnreachable(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	pc, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	// Watch the uplink's output directly: the error must quote the
	// datagram as the mapping sent it.
	got := r.watch()
	pkt := make([]byte, 28+7)
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], closed.Port())
	binary.BigEndian.PutUint16(pkt[24:], 15)
	copy(pkt[28:], "anyone?")
	putIPv4(pkt, len(pkt), wire.ProtoUDP, r.u.addr, r.u.loopback, 9, 0)
	r.u.Send(pkt, 0)
	select {
	case p := <-got:
		if p[9] != wire.ProtoICMP || [4]byte(p[12:16]) != r.u.loopback || [4]byte(p[16:20]) != r.u.addr {
			t.Fatalf("error header %x: want ICMP from %v to %v", p[:20], r.u.loopback, r.u.addr)
		}
		m := p[20:]
		if m[0] != 3 || m[1] != 3 || checksum.Checksum(m, 0) != 0 {
			t.Fatalf("ICMP %d/%d (checksum ok: %v), want a valid port unreachable", m[0], m[1], checksum.Checksum(m, 0) == 0)
		}
		q := m[8:]
		if [4]byte(q[12:16]) != r.u.addr || [4]byte(q[16:20]) != r.u.loopback || checksum.Checksum(q[:20], 0) != 0 ||
			binary.BigEndian.Uint16(q[20:]) != 40000 || binary.BigEndian.Uint16(q[22:]) != closed.Port() {
			t.Fatalf("quoted %x: want the datagram %v:40000 -> %v:%d", q, r.u.Addr(), r.u.Config().Loopback, closed.Port())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ICMP error")
	}
	if s := r.u.Stats(); s.UDPErrors != 1 || s.UDPSockets != 1 {
		t.Errorf("udp errors %d, sockets %d: want 1 and 1 (the socket lives on)", s.UDPErrors, s.UDPSockets)
	}
}

func TestUDPIdleSocketCloses(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true, UDPTimeout: 200 * time.Millisecond})
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := r.full(pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c, err := gonet.DialUDP(r.peer, nil, &dst, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	waitFor(t, "a udp socket", func() bool { return r.u.Stats().UDPSockets == 1 })
	waitFor(t, "the idle udp socket closed", func() bool { return r.u.Stats().UDPSockets == 0 })
}

// pingAllowed reports whether this process may open ICMP echo sockets.
func pingAllowed() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return false
	}
	var lo, hi int
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	lo, hi = atoi(f[0]), atoi(f[1])
	g := os.Getgid()
	return lo <= g && g <= hi
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestICMPEchoOrDenied(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	// An echo request from the uplink's address, identifier 0x1234, to
	// Loopback (the host's 127.0.0.1).
	pkt := make([]byte, 28+8)
	m := pkt[20:]
	m[0] = wire.ICMPEchoRequest
	m[4], m[5] = 0x12, 0x34
	m[7] = 1
	copy(m[8:], "pingpong")
	putIPv4(pkt, len(pkt), wire.ProtoICMP, r.u.addr, r.u.loopback, 1, 0)
	// The peer stack does not speak ICMP: watch the uplink's output.
	got := r.watch()
	allowed := pingAllowed()
	r.u.Send(pkt, 0)
	if !allowed {
		s := r.u.Stats()
		if s.ICMPDenied != 1 || s.ICMPSockets != 0 {
			t.Fatalf("ping not permitted: icmp denied %d, sockets %d: want 1 and 0", s.ICMPDenied, s.ICMPSockets)
		}
		return
	}
	select {
	case p := <-got:
		if p[9] != wire.ProtoICMP || [4]byte(p[12:16]) != r.u.loopback || [4]byte(p[16:20]) != r.u.addr {
			t.Fatalf("reply header %x", p[:20])
		}
		if p[20] != wire.ICMPEchoReply || p[24] != 0x12 || p[25] != 0x34 || string(p[28:]) != "pingpong" {
			t.Fatalf("reply %x: want an echo reply with identifier 0x1234", p[20:])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo reply")
	}
}

func ptr[T any](v T) *T { return &v }

func TestPublishedTCPKeepsClientAddress(t *testing.T) {
	r := newRig(t, Config{})
	// The "container" listens on the host port itself (no NAT here).
	port := testutil.FreePort(t, "tcp4", "127.0.0.1")
	inner, err := gonet.ListenTCP(r.peer, r.full(netip.AddrPortFrom(r.u.Addr(), port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	p := nat.Publish{Proto: nat.TCP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port, HostPortEnd: port, TargetPort: 80}
	if err := r.u.Publish(p); err != nil {
		t.Fatal(err)
	}
	if err := r.u.Publish(p); !errors.Is(err, ErrHostPortInUse) {
		t.Fatalf("publish twice: got %v, want ErrHostPortInUse", err)
	}
	client, sc := dialAccept(t, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), inner)
	want := netip.AddrPortFrom(DefaultLoopback, client.LocalAddr().(*net.TCPAddr).AddrPort().Port())
	publishedExchange(t, r, p, client, sc, want)
	if _, err := net.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after unpublish: got %v, want connection refused", err)
	}
}

// publishedExchange wants the container's side sc of a published
// connection to see the client at want, a ping and a pong to cross it,
// and the listener to close when p is unpublished.
// dialAccept dials addr and returns the client's end and the end inner
// accepted, both closed when the test ends.
func dialAccept(t *testing.T, network, addr string, inner net.Listener) (client, accepted net.Conn) {
	t.Helper()
	client, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	accepted, err = inner.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return client, accepted
}

func publishedExchange(t *testing.T, r *rig, p nat.Publish, client, sc net.Conn, want netip.AddrPort) {
	t.Helper()
	if got := sc.RemoteAddr().(*net.TCPAddr).AddrPort(); got != want {
		t.Errorf("the container sees the client as %s, want %s", got, want)
	}
	client.Write([]byte("ping"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(sc, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q, %v", b, err)
	}
	sc.Write([]byte("pong"))
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "pong" {
		t.Fatalf("read %q, %v", b, err)
	}
	r.u.Unpublish(p)
	waitFor(t, "listener closed", func() bool { return r.u.Stats().Listeners == 0 })
}

func TestPublishPortInUse(t *testing.T) {
	r := newRig(t, Config{})
	ln := testutil.Listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	// A range whose last port is taken: nothing stays open.
	p := nat.Publish{Proto: nat.TCP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port - 2, HostPortEnd: port, TargetPort: 80}
	err := r.u.Publish(p)
	if !errors.Is(err, ErrHostPortInUse) || !strings.Contains(err.Error(), "127.0.0.1:") {
		t.Fatalf("got %v, want ErrHostPortInUse naming the address", err)
	}
	if s := r.u.Stats(); s.Listeners != 0 {
		t.Errorf("listeners: got %d, want 0", s.Listeners)
	}
}

func TestNoLeaksAfterShortConnections(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	srv := echoServer(t)
	run := func(n int) {
		for range n {
			c, err := gonet.DialTCP(r.peer, r.full(srv), ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("x"))
			c.CloseWrite()
			io.ReadAll(c)
			c.Close()
		}
	}
	run(20)
	waitFor(t, "connections ended", func() bool { return r.u.Stats().TCPActive == 0 })
	base := runtime.NumGoroutine()
	run(200)
	waitFor(t, "connections ended", func() bool { return r.u.Stats().TCPActive == 0 })
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base+2 })
	if s := r.u.Stats(); s.TCPTotal != 220 {
		t.Errorf("tcp total: got %d, want 220", s.TCPTotal)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	r := newRig(t, Config{HostLoopback: true})
	srv := echoServer(t)
	c, err := gonet.DialTCP(r.peer, r.full(srv), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	b := make([]byte, 1)
	io.ReadFull(c, b)
	r.close()
	if s := r.u.Stats(); s.TCPActive != 0 {
		t.Errorf("tcp active after Close: %d", s.TCPActive)
	}
	waitFor(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= base+3 })
}
