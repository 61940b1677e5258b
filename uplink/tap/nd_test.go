package tap

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/tapswitch/tapswitch/internal/checksum"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/wire"
)

func TestParseSpec6(t *testing.T) {
	base := "tap,netns=/x,ip=198.51.100.2/24"
	tests := []struct {
		opts string
		want string // in String(), or in the error
		ok   bool
	}{
		{",ip6=2001:db8:66::2/64,gw6=2001:db8:66::1", ",ip6=2001:db8:66::2/64,gw6=2001:db8:66::1,", true},
		{",ip6=2001:db8:66::2/64,gw6=fe80::1", ",gw6=fe80::1,", true},
		{",ip6=fd00:1::2/64", ",ip6=fd00:1::2/64,mac=", true},
		{",gw6=2001:db8:66::1", "gw6=2001:db8:66::1 needs ip6", false},
		{",ip6=2001:db8:66::2", "not an address with a prefix", false},
		{",ip6=198.51.100.9/24", "not an IPv6 address", false},
		{",ip6=fe80::2/64", "not a global or unique local", false},
		{",ip6=ff02::2/64", "not a global or unique local", false},
		{",ip6=2001:db8:66::/64", "subnet-router anycast", false},
		{",ip6=2001:db8:66::2/128", "prefix length", false},
		{",ip6=2001:db8:66::2/64,mtu=1000", "IPv6 needs at least 1280", false},
		{",ip6=2001:db8:66::2/64,gw6=2001:db8:77::1", "neither on the link", false},
		{",ip6=2001:db8:66::2/64,gw6=2001:db8:66::2", "own address", false},
		{",ip6=2001:db8:66::2/64,gw6=198.51.100.1", "not an IPv6 address", false},
	}
	for _, tt := range tests {
		t.Run(tt.opts, func(t *testing.T) {
			c := parseSpecCase(t, base+tt.opts, tt.want, tt.ok)
			if c == nil {
				return
			}
			if again, err := ParseSpec(c.String()); err != nil || again.String() != c.String() {
				t.Errorf("round trip of %q: %v, %v", c.String(), again, err)
			}
		})
	}
}

var (
	lanIP6   = netip.MustParseAddr("2001:db8:66::1")
	upIP6    = netip.MustParseAddr("2001:db8:66::2")
	farIP6   = netip.MustParseAddr("2001:db8:77::1")
	otherIP6 = netip.MustParseAddr("2001:db8:66::9")
)

func newTestTAP6(t testing.TB) (*TAP, *fakeDev) {
	t.Helper()
	c, err := ParseSpec("tap,netns=/x,ip=198.51.100.2/24,ip6=2001:db8:66::2/64,gw6=2001:db8:66::1")
	if err != nil {
		t.Fatal(err)
	}
	dev := newFakeDev()
	var now int64
	return newTAP(*c, dev, func() int64 { return now }), dev
}

// icmp6Frame builds a frame (virtio_net_hdr, Ethernet, IPv6, ICMPv6 msg,
// checksum computed) from src to dst.
func icmp6TestFrame(ethDst, ethSrc [6]byte, src, dst netip.Addr, hopLimit uint8, msg []byte) []byte {
	f := make([]byte, Headroom+wire.IPv6Len+len(msg))
	wire.PutEthernet(f[vswitch.VnetHdrLen:], ethDst, ethSrc, wire.EtherTypeIPv6)
	h := wire.IPv6Header{PayloadLen: uint16(len(msg)), NextHeader: wire.ProtoICMPv6, HopLimit: hopLimit, Src: src.As16(), Dst: dst.As16()}
	h.Put(f[Headroom:])
	m := wire.ICMP(f[Headroom+wire.IPv6Len:])
	copy(m, msg)
	m.UpdateChecksum6(checksum.PseudoHeaderIPv6(src.As16(), dst.As16(), wire.ProtoICMPv6, uint32(len(msg))))
	return f
}

// udp6Packet returns a buffer with Headroom and an IPv6 UDP packet.
func udp6Packet(src, dst netip.Addr) []byte {
	b := make([]byte, Headroom+wire.IPv6Len+wire.UDPLen)
	h := wire.IPv6Header{PayloadLen: wire.UDPLen, NextHeader: wire.ProtoUDP, HopLimit: 64, Src: src.As16(), Dst: dst.As16()}
	h.Put(b[Headroom:])
	wire.PutUDP(b[Headroom+wire.IPv6Len:], wire.UDPLen, 1000, 2000, checksum.PseudoHeaderIPv6(src.As16(), dst.As16(), wire.ProtoUDP, wire.UDPLen))
	return b
}

// parseICMP6 returns the IPv6 header and ICMPv6 message of a frame the
// uplink wrote, checking its checksum.
func parseICMP6(t *testing.T, f []byte) (wire.IPv6, wire.ICMP) {
	t.Helper()
	if wire.Ethernet(f[vswitch.VnetHdrLen:]).Type() != wire.EtherTypeIPv6 {
		t.Fatalf("frame %x is not IPv6", f)
	}
	ip, err := wire.ParseIPv6(f[Headroom:])
	if err != nil || ip.NextHeader() != wire.ProtoICMPv6 {
		t.Fatalf("frame %x: not ICMPv6 (%v)", f, err)
	}
	m := wire.ICMP(ip.Payload())
	if checksum.Checksum(m, ip.PseudoSum(wire.ProtoICMPv6, len(m))) != 0 {
		t.Fatalf("ICMPv6 checksum of %x is wrong", f)
	}
	return ip, m
}

// TestResolve6QueueAndSend: a packet for an off-link destination waits for
// gw6, solicited at its solicited-node group; the advertisement releases
// it; then sending allocates nothing.
func TestResolve6QueueAndSend(t *testing.T) {
	u, dev := newTestTAP6(t)
	pkt := udp6Packet(upIP6, farIP6)
	if err := u.Send(pkt, Headroom); err != nil {
		t.Fatalf("Send: %v", err)
	}
	fs := dev.Take()
	if len(fs) != 1 {
		t.Fatalf("%d frames after Send to an unresolved hop, want one NS", len(fs))
	}
	ip, m := parseICMP6(t, fs[0])
	nd, err := wire.ParseND(m)
	sn := wire.SolicitedNode(lanIP6.As16())
	if err != nil || nd.Type != wire.ICMPv6NeighborSolicitation || nd.Target != lanIP6.As16() || ip.Dst() != sn ||
		[6]byte(fs[0][vswitch.VnetHdrLen:]) != wire.MulticastMAC(sn) || ip.HopLimit() != 255 || !nd.HasSourceLL || nd.SourceLL != u.mac {
		t.Fatalf("NS %+v to %x (%v), want one for %s to its solicited-node group", nd, ip.Dst(), err, lanIP6)
	}
	na := make([]byte, wire.NALen+wire.NDLLOptLen)
	wire.PutNA(na, lanIP6.As16(), wire.NAFlagSolicited|wire.NAFlagRouter, lanMAC)
	u.input(icmp6TestFrame(u.mac, lanMAC, lanIP6, upIP6, 255, na), nil)
	fs = dev.Take()
	if len(fs) != 1 || [6]byte(fs[0][vswitch.VnetHdrLen:]) != lanMAC || !bytes.Equal(fs[0][Headroom:], pkt[Headroom:]) ||
		wire.Ethernet(fs[0][vswitch.VnetHdrLen:]).Type() != wire.EtherTypeIPv6 {
		t.Fatalf("after the NA: frames %x, want the queued packet to %x", fs, lanMAC)
	}
	dev.mu.Lock()
	dev.discard = true
	dev.mu.Unlock()
	if n := testing.AllocsPerRun(100, func() {
		if err := u.Send(pkt, Headroom); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Send of IPv6 to a resolved hop: %v allocations, want 0", n)
	}
	if n := len(u.Neighbors()); n != 1 {
		t.Errorf("%d neighbours, want gw6", n)
	}
}

// TestAnswersNSAndEcho6: a solicitation for the uplink's address is
// answered (solicited, override, its MAC), one for another address is not;
// an unsolicited NA for an unknown address creates nothing; echo requests
// to the uplink are answered; packets to its address at its MAC go to the
// handler, others not.
func TestAnswersNSAndEcho6(t *testing.T) {
	u, dev := newTestTAP6(t)
	ns := make([]byte, wire.NSLen+wire.NDLLOptLen)
	wire.PutNS(ns, upIP6.As16(), lanMAC)
	sn := wire.SolicitedNode(upIP6.As16())
	u.input(icmp6TestFrame(wire.MulticastMAC(sn), lanMAC, lanIP6, netip.AddrFrom16(sn), 255, ns), nil)
	fs := dev.Take()
	if len(fs) != 1 {
		t.Fatalf("%d frames after an NS for the uplink's address, want an NA", len(fs))
	}
	ip, m := parseICMP6(t, fs[0])
	nd, err := wire.ParseND(m)
	if err != nil || nd.Type != wire.ICMPv6NeighborAdvertisement || nd.Target != upIP6.As16() || ip.Dst() != lanIP6.As16() ||
		nd.Flags != wire.NAFlagSolicited|wire.NAFlagOverride || !nd.HasTargetLL || nd.TargetLL != u.mac || [6]byte(fs[0][vswitch.VnetHdrLen:]) != lanMAC {
		t.Fatalf("NA %+v (%v)", nd, err)
	}
	// The solicitor was learned: a packet to it goes out at once.
	if err := u.Send(udp6Packet(upIP6, lanIP6), Headroom); err != nil || len(dev.Take()) != 1 {
		t.Errorf("Send to the learned solicitor: %v", err)
	}
	// Another target, a wrong hop limit: nothing.
	wire.PutNS(ns, otherIP6.As16(), lanMAC)
	u.input(icmp6TestFrame(wire.MulticastMAC(wire.SolicitedNode(otherIP6.As16())), lanMAC, lanIP6, netip.AddrFrom16(wire.SolicitedNode(otherIP6.As16())), 255, ns), nil)
	wire.PutNS(ns, upIP6.As16(), lanMAC)
	u.input(icmp6TestFrame(u.mac, lanMAC, lanIP6, upIP6, 64, ns), nil)
	if n := len(dev.Take()); n != 0 {
		t.Errorf("%d frames after NSs for another host or from off-link, want 0", n)
	}
	// An unsolicited NA does not create an entry.
	na := make([]byte, wire.NALen+wire.NDLLOptLen)
	wire.PutNA(na, otherIP6.As16(), wire.NAFlagOverride, lanMAC)
	u.input(icmp6TestFrame(wire.MulticastMAC(wire.AllNodes), lanMAC, otherIP6, netip.AddrFrom16(wire.AllNodes), 255, na), nil)
	for _, n := range u.Neighbors() {
		if n.IP == otherIP6 {
			t.Errorf("an unsolicited NA created an entry for %s", otherIP6)
		}
	}

	echo := []byte{wire.ICMPv6EchoRequest, 0, 0, 0, 0, 7, 0, 1, 'h', 'i'}
	u.input(icmp6TestFrame(u.mac, lanMAC, lanIP6, upIP6, 64, echo), nil)
	fs = dev.Take()
	if len(fs) != 1 {
		t.Fatalf("%d frames after an echo request, want a reply", len(fs))
	}
	ip, m = parseICMP6(t, fs[0])
	if m.Type() != wire.ICMPv6EchoReply || m.ID() != 7 || ip.Src() != upIP6.As16() || ip.Dst() != lanIP6.As16() || u.Stats().Echo6 != 1 {
		t.Errorf("echo reply %x from %x to %x", m, ip.Src(), ip.Dst())
	}

	var got []byte
	frame := udp6Packet(lanIP6, upIP6)
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv6)
	u.input(frame, func(p []byte) { got = append([]byte(nil), p...) })
	if len(got) != wire.IPv6Len+wire.UDPLen {
		t.Errorf("handler got %d bytes, want the IPv6 packet", len(got))
	}
	got = nil
	frame = udp6Packet(lanIP6, otherIP6)
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv6)
	u.input(frame, func(p []byte) { got = p })
	if got != nil {
		t.Errorf("a packet to another IPv6 address reached the handler")
	}
}

// TestNoIPv6: without ip6, IPv6 is neither sent nor received.
func TestNoIPv6(t *testing.T) {
	u, dev, _ := newTestTAP(t)
	if err := u.Send(udp6Packet(upIP6, lanIP6), Headroom); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Send of IPv6 without ip6: %v, want ErrNoRoute", err)
	}
	frame := udp6Packet(lanIP6, upIP6)
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv6)
	u.input(frame, func([]byte) { t.Error("IPv6 reached the handler without ip6") })
	if u.Addr6().IsValid() || len(dev.Take()) != 0 {
		t.Errorf("Addr6 %v, or frames written", u.Addr6())
	}
}
