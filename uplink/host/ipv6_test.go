package host

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/wire"
)

// TestTCP6ThroughHostLoopback: the container's TCP over IPv6 to Loopback6
// reaches the host's ::1 through an AF_INET6 socket, 1 MiB intact both
// ways with a half-close (the integration test sends more).
func TestTCP6ThroughHostLoopback(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	srv := echoServerAt(t, "tcp6", "[::1]:0")
	c, err := gonet.DialTCP(r.peer, r.full6(srv), ipv6.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo: got %d bytes, want %d, with sha256 equal", len(got), len(data))
	}
	if s := r.u.Stats(); s.TCPTotal != 1 {
		t.Errorf("tcp total: got %d, want 1", s.TCPTotal)
	}
	waitFor(t, "tcp active back to 0", func() bool { return r.u.Stats().TCPActive == 0 })
}

// TestLoopback6Refused: without HostLoopback, Loopback6 leads nowhere; ::1
// and IPv4-mapped addresses (which would reach IPv4's loopback) never do.
func TestLoopback6Refused(t *testing.T) {
	r := newRig(t, Config{})
	srv := echoServerAt(t, "tcp6", "[::1]:0")
	_, err := gonet.DialTCP(r.peer, r.full6(srv), ipv6.ProtocolNumber)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial Loopback6: got %v, want connection refused", err)
	}
	if s := r.u.Stats(); s.LoopbackRefused != 1 || s.TCPTotal != 0 {
		t.Errorf("loopback refused %d, tcp total %d: want 1 and 0", s.LoopbackRefused, s.TCPTotal)
	}
	// The peer's own stack keeps these to itself: asked directly.
	for _, a := range []string{"::1", "::ffff:127.0.0.1", "::ffff:198.51.100.1", "fe80::1", "ff02::1", "::"} {
		if got, ok := r.u.target6(netip.MustParseAddr(a).As16()); ok {
			t.Errorf("target6(%s) = %s, want refused", a, got)
		}
	}
	if got, ok := r.u.target6(netip.MustParseAddr("2001:db8::1").As16()); !ok || got.String() != "2001:db8::1" {
		t.Errorf("target6(2001:db8::1) = %s, %v", got, ok)
	}
}

// TestUDP6Echo: UDP over IPv6 through a socket per container address and
// port; a reply over the MTU comes back fragmented and reassembled.
func TestUDP6Echo(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	dst := r.full6(udpEchoServer(t, "udp6", "[::1]:0"))
	udpEchoThrough(t, r, dst, ipv6.ProtocolNumber)
}

// publishLoopback6 publishes a free port of proto on [::1] to port target
// of the container's IPv6 address (peer6), and returns the publish.
func publishLoopback6(t *testing.T, r *rig, proto nat.Proto, target uint16) nat.Publish {
	t.Helper()
	network := "tcp6"
	if proto == nat.UDP {
		network = "udp6"
	}
	port := testutil.FreePort(t, network, "::1")
	p := nat.Publish{Proto: proto, HostIP: netip.IPv6Loopback(), HostPort: port, HostPortEnd: port, TargetPort: target, Target6: peer6}
	if err := r.u.Publish(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPublishedTCP6KeepsClientAddress: a port published on [::1] reaches
// the container's IPv6 address from the client's (::1 shown as
// Loopback6), and listens on ::1 only.
func TestPublishedTCP6KeepsClientAddress(t *testing.T) {
	r := newRig(t, Config{})
	inner, err := gonet.ListenTCP(r.peer, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom16(peer6.As16()), Port: 80}, ipv6.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	p := publishLoopback6(t, r, nat.TCP, 80)
	port := p.HostPort
	if ip, ok := r.u.HostIP(nat.TCP, port); !ok || ip != netip.IPv6Loopback() {
		t.Errorf("HostIP: %s %v, want ::1", ip, ok)
	}
	if _, err := net.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial 127.0.0.1: got %v, want connection refused (published on ::1 only)", err)
	}
	client, sc := dialAccept(t, "tcp6", netip.AddrPortFrom(netip.IPv6Loopback(), port).String(), inner)
	want := netip.AddrPortFrom(r.u.Config().Loopback6, client.LocalAddr().(*net.TCPAddr).AddrPort().Port())
	publishedExchange(t, r, p, client, sc, want)
}

// TestPublishedUDP6: a UDP port published on [::1] delivers to the
// container's IPv6 address and carries its replies back to the client; a
// second IPv6 publish to the same container port is refused (its replies
// could not be told apart), and UDP on IPv6 needs a container with IPv6.
func TestPublishedUDP6(t *testing.T) {
	r := newRig(t, Config{})
	inner, err := gonet.DialUDP(r.peer, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom16(peer6.As16()), Port: 53}, nil, ipv6.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	p := publishLoopback6(t, r, nat.UDP, 53)
	client, err := net.Dial("udp6", netip.AddrPortFrom(netip.IPv6Loopback(), p.HostPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("q"))
	b := make([]byte, 100)
	inner.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := inner.ReadFrom(b)
	if err != nil || string(b[:n]) != "q" {
		t.Fatalf("container read %q, %v", b[:n], err)
	}
	want := netip.AddrPortFrom(r.u.Config().Loopback6, client.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	if got := from.(*net.UDPAddr).AddrPort(); got != want {
		t.Errorf("the container sees the client as %s, want %s", got, want)
	}
	if _, err := inner.WriteTo([]byte("a"), from); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(b); err != nil || string(b[:n]) != "a" {
		t.Fatalf("client read %q, %v", b[:n], err)
	}
	port2 := testutil.FreePort(t, "udp6", "::1")
	q := p
	q.HostPort, q.HostPortEnd = port2, port2
	if err := r.u.Publish(q); !errors.Is(err, nat.ErrPublishOverlap) {
		t.Errorf("a second IPv6 publish to udp [%s]:53: %v, want ErrPublishOverlap", peer6, err)
	}
	q.Target6 = netip.Addr{}
	if err := r.u.Publish(q); !errors.Is(err, nat.ErrBadPublish) {
		t.Errorf("UDP on IPv6 to a container without IPv6: %v, want ErrBadPublish", err)
	}
	r.u.Unpublish(p)
	waitFor(t, "listener closed", func() bool { return r.u.Stats().Listeners == 0 })
}

// TestUDP6PortUnreachable: the host's ICMPv6 port unreachable about a
// container's datagram (IPV6_RECVERR) is handed back quoting the datagram
// as the container sent it, so that its kernel finds the socket.
func TestUDP6PortUnreachable(t *testing.T) {
	r := newRig(t, Config{HostLoopback: true})
	port := testutil.FreePort(t, "udp6", "::1")
	got := r.watch()
	lo6, src := r.u.Config().Loopback6.As16(), peer6.As16()
	pkt := make([]byte, 48+7)
	copy(pkt[48:], "anyone?")
	h := wire.IPv6Header{PayloadLen: 15, NextHeader: wire.ProtoUDP, HopLimit: 64, Src: src, Dst: lo6}
	h.Put(pkt)
	wire.PutUDP(pkt[40:], 15, 40000, port, checksum.PseudoHeaderIPv6(src, lo6, wire.ProtoUDP, 15))
	r.u.Send6(pkt, 0)
	select {
	case p := <-got:
		ip := wire.IPv6(p)
		if ip.NextHeader() != wire.ProtoICMPv6 || ip.Src() != lo6 || ip.Dst() != src {
			t.Fatalf("error header %x: want ICMPv6 from %v to %v", p[:40], lo6, peer6)
		}
		m := p[40:]
		if m[0] != wire.ICMPv6Unreachable || m[1] != 4 || checksum.Checksum(m, ip.PseudoSum(wire.ProtoICMPv6, len(m))) != 0 {
			t.Fatalf("ICMPv6 %d/%d, want a valid port unreachable", m[0], m[1])
		}
		q := wire.IPv6(m[8:])
		if q.Src() != src || q.Dst() != lo6 || binary.BigEndian.Uint16(q[40:]) != 40000 || binary.BigEndian.Uint16(q[42:]) != port {
			t.Fatalf("quoted %x: want the datagram [%v]:40000 -> [%v]:%d", q, peer6, r.u.Config().Loopback6, port)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ICMPv6 error")
	}
	if s := r.u.Stats(); s.UDPErrors != 1 || s.UDPSockets != 1 {
		t.Errorf("udp errors %d, sockets %d: want 1 and 1 (the socket lives on)", s.UDPErrors, s.UDPSockets)
	}
}
