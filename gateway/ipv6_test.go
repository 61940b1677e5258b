package gateway_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

var (
	gwNet6 = netip.MustParsePrefix("fd42:1::1/64")
	gwLL   = netip.MustParseAddr("fe80::74:73ff:fe00:1") // from gwMAC
	aIP6   = netip.MustParseAddr("fd42:1::2")
	aLL    = netip.MustParseAddr("fe80::42:aff:fe5a:2")
)

// newGateway6 returns a dual-stack gateway, its start-up NAs and RA read.
func newGateway6(t testing.TB, mod func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	g, _ := newGateway(t, func(c *gateway.Config) {
		c.Addr6 = gwNet6
		if mod != nil {
			mod(c)
		}
	})
	return g
}

// icmp6Frame builds an Ethernet/IPv6/ICMPv6 frame from container A's MAC
// with valid checksums; body is the message after the ICMPv6 header's
// first 4 bytes.
func icmp6Frame(t testing.TB, ethDst net.HardwareAddr, src, dst netip.Addr, hops uint8, typ, code uint8, body ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: hops, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	ls := append([]gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: aMAC, DstMAC: ethDst, EthernetType: layers.EthernetTypeIPv6}, ip, ic}, body...)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func solicitedMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

func solicited(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// reply6 reads the next reply and returns its IPv6 and ICMPv6 layers,
// failing unless checksums verify.
func reply6(t testing.TB, g *gateway.Gateway) (gopacket.Packet, *layers.Ethernet, *layers.IPv6, *layers.ICMPv6) {
	t.Helper()
	p := gopacket.NewPacket(read(t, g), layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic, ok2 := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if !ok || !ok2 || eth == nil {
		t.Fatalf("reply is not ICMPv6: %v", p)
	}
	if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
		t.Fatalf("reply checksums: %v %v\n%v", err, bad, p)
	}
	return p, eth, ip, ic
}

func TestIPv6StartAdvertises(t *testing.T) {
	g, _ := newGateway(t, func(c *gateway.Config) { c.Addr6 = gwNet6 })
	for _, target := range []netip.Addr{gwLL, gwNet6.Addr()} {
		p, eth, ip, _ := reply6(t, g)
		na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if !ok || eth.DstMAC.String() != "33:33:00:00:00:01" || ip.DstIP.String() != "ff02::1" || ip.HopLimit != 255 ||
			na.TargetAddress.String() != target.String() || !na.Router() || na.Solicited() || !na.Override() {
			t.Errorf("unsolicited NA for %s: %v", target, p)
		}
	}
	p, _, ip, _ := reply6(t, g)
	ra, ok := p.Layer(layers.LayerTypeICMPv6RouterAdvertisement).(*layers.ICMPv6RouterAdvertisement)
	if !ok || ip.SrcIP.String() != gwLL.String() || ra.RouterLifetime == 0 || ra.ManagedAddressConfig() {
		t.Fatalf("first RA: %v", p)
	}
	expectNoReply(t, g)
	if s := g.Stats(); s.NeighAdverts != 2 || s.RouterAdverts != 1 {
		t.Errorf("stats %+v: want 2 NAs and 1 RA", s)
	}

	g2, _ := newGateway(t, func(c *gateway.Config) { c.Addr6, c.NoRA = gwNet6, true })
	reply6(t, g2)
	reply6(t, g2)
	expectNoReply(t, g2)
}

func drainStart(t testing.TB, g *gateway.Gateway) {
	t.Helper()
	for g.Queued() > 0 {
		read(t, g)
	}
}

func TestIPv6NeighborSolicitation(t *testing.T) {
	slla := &layers.ICMPv6NeighborSolicitation{}
	for _, tc := range []struct {
		name       string
		src, dst   netip.Addr
		ethDst     net.HardwareAddr
		hops       uint8
		target     netip.Addr
		withSLLA   bool
		wantDst    string // "" for no reply
		solicited  bool
		wantEthDst string
	}{
		{"global, from A", aIP6, solicited(gwNet6.Addr()), solicitedMAC(gwNet6.Addr()), 255, gwNet6.Addr(), true, aIP6.String(), true, aMAC.String()},
		{"link-local, unicast", aLL, gwLL, gwMAC, 255, gwLL, false, aLL.String(), true, aMAC.String()},
		{"DAD for the gateway's address", netip.IPv6Unspecified(), solicited(gwNet6.Addr()), solicitedMAC(gwNet6.Addr()), 255, gwNet6.Addr(), false, "ff02::1", false, "33:33:00:00:00:01"},
		{"DAD for the container's own address", netip.IPv6Unspecified(), solicited(aIP6), solicitedMAC(aIP6), 255, aIP6, false, "", false, ""},
		{"another target", aIP6, solicited(aIP6), solicitedMAC(aIP6), 255, netip.MustParseAddr("fd42:1::3"), true, "", false, ""},
		{"hop limit not 255", aIP6, solicited(gwNet6.Addr()), solicitedMAC(gwNet6.Addr()), 64, gwNet6.Addr(), true, "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway6(t, nil)
			drainStart(t, g)
			ns := *slla
			ns.TargetAddress = tc.target.AsSlice()
			if tc.withSLLA {
				ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: aMAC}}
			}
			write(t, g, icmp6Frame(t, tc.ethDst, tc.src, tc.dst, tc.hops, layers.ICMPv6TypeNeighborSolicitation, 0, &ns))
			if tc.wantDst == "" {
				expectNoReply(t, g)
				return
			}
			p, eth, ip, _ := reply6(t, g)
			na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
			if !ok || ip.DstIP.String() != tc.wantDst || eth.DstMAC.String() != tc.wantEthDst || ip.HopLimit != 255 ||
				na.TargetAddress.String() != tc.target.String() || na.Solicited() != tc.solicited || !na.Router() ||
				len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || net.HardwareAddr(na.Options[0].Data).String() != gwMAC.String() {
				t.Errorf("NA: %v", p)
			}
		})
	}
}

func TestIPv6EchoRSAndErrors(t *testing.T) {
	g := newGateway6(t, nil)
	drainStart(t, g)

	echo := gopacket.Payload([]byte{0x12, 0x34, 0, 1, 'h', 'i'})
	write(t, g, icmp6Frame(t, gwMAC, aIP6, gwNet6.Addr(), 64, layers.ICMPv6TypeEchoRequest, 0, echo))
	_, _, ip, ic := reply6(t, g)
	if ic.TypeCode.Type() != layers.ICMPv6TypeEchoReply || ip.SrcIP.String() != gwNet6.Addr().String() || ip.DstIP.String() != aIP6.String() ||
		string(ic.Payload) != string(echo) {
		t.Errorf("echo reply %v from %s to %s, payload %x", ic.TypeCode, ip.SrcIP, ip.DstIP, ic.Payload)
	}

	rs := &layers.ICMPv6RouterSolicitation{Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: aMAC}}}
	write(t, g, icmp6Frame(t, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}, aLL, netip.MustParseAddr("ff02::2"), 255, layers.ICMPv6TypeRouterSolicitation, 0, rs))
	p, eth, ip, _ := reply6(t, g)
	if _, ok := p.Layer(layers.LayerTypeICMPv6RouterAdvertisement).(*layers.ICMPv6RouterAdvertisement); !ok ||
		ip.DstIP.String() != aLL.String() || eth.DstMAC.String() != aMAC.String() {
		t.Errorf("RA for the RS: %v", p)
	}

	off := netip.MustParseAddr("2001:db8::1")
	write(t, g, icmp6Frame(t, gwMAC, aIP6, off, 64, layers.ICMPv6TypeEchoRequest, 0, echo))
	_, _, ip, ic = reply6(t, g)
	if ic.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, 0) || ip.SrcIP.String() != gwNet6.Addr().String() {
		t.Errorf("off-link: %v from %s, want no route from the gateway", ic.TypeCode, ip.SrcIP)
	}
	write(t, g, icmp6Frame(t, gwMAC, aIP6, off, 1, layers.ICMPv6TypeEchoRequest, 0, echo))
	_, _, _, ic = reply6(t, g)
	if ic.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeTimeExceeded, 0) {
		t.Errorf("hop limit 1: %v, want time exceeded", ic.TypeCode)
	}
	// No error about an error.
	write(t, g, icmp6Frame(t, gwMAC, aIP6, off, 64, layers.ICMPv6TypeDestinationUnreachable, 0, gopacket.Payload(make([]byte, 48))))
	expectNoReply(t, g)

	// UDP to the gateway: port unreachable.
	ipl := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64, SrcIP: aIP6.AsSlice(), DstIP: gwNet6.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ipl)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: aMAC, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv6}, ipl, udp, gopacket.Payload("q"))
	write(t, g, buf.Bytes())
	_, _, _, ic = reply6(t, g)
	if ic.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, 4) {
		t.Errorf("UDP to the gateway: %v, want port unreachable", ic.TypeCode)
	}
}

// TestIPv6TCPReset checks that a SYN to the gateway's IPv6 address is
// answered with a reset (RFC 9293 3.10.7.1) and a reset is not.
func TestIPv6TCPReset(t *testing.T) {
	g := newGateway6(t, nil)
	drainStart(t, g)
	send := func(syn, rst bool) {
		ipl := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64, SrcIP: aIP6.AsSlice(), DstIP: gwNet6.Addr().AsSlice()}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, SYN: syn, RST: rst, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ipl)
		buf := gopacket.NewSerializeBuffer()
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: aMAC, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv6}, ipl, tcp)
		write(t, g, buf.Bytes())
	}
	send(true, false)
	p := gopacket.NewPacket(read(t, g), layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || !ok {
		t.Fatalf("reply to a SYN: %v", p)
	}
	tcp.SetNetworkLayerForChecksum(ip)
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
		t.Fatalf("reset checksums: %v %v", err, bad)
	}
	if !tcp.RST || !tcp.ACK || tcp.Ack != 1001 || tcp.SrcPort != 80 || tcp.DstPort != 40000 ||
		ip.SrcIP.String() != gwNet6.Addr().String() || ip.DstIP.String() != aIP6.String() {
		t.Errorf("reset %+v from %s to %s", tcp, ip.SrcIP, ip.DstIP)
	}
	send(false, true)
	expectNoReply(t, g)
	if s := g.Stats(); s.TCPResets != 1 {
		t.Errorf("TCPResets %d, want 1", s.TCPResets)
	}
}

func TestIPv6Config(t *testing.T) {
	for _, p := range []string{"fd42:1::1/48", "fd42:1::/64", "fe80::1/64", "10.0.0.1/24", "ff02::1/64"} {
		_, err := gateway.New(gateway.Config{MAC: gwMAC, Addr: gwNet, Addr6: netip.MustParsePrefix(p)})
		if !errors.Is(err, gateway.ErrInvalidConfig) {
			t.Errorf("Addr6 %s: %v, want ErrInvalidConfig", p, err)
		}
	}
	if _, err := gateway.New(gateway.Config{MAC: gwMAC, Addr: gwNet, Addr6: gwNet6, MTU: 1000}); !errors.Is(err, gateway.ErrInvalidConfig) {
		t.Errorf("MTU 1000 with IPv6: %v, want ErrInvalidConfig", err)
	}
	g, _ := newGateway(t, nil)
	write(t, g, icmp6Frame(t, gwMAC, aIP6, gwNet6.Addr(), 64, layers.ICMPv6TypeEchoRequest, 0, gopacket.Payload("x")))
	expectNoReply(t, g)
	if g.Stats().IPv6 != 1 {
		t.Errorf("IPv6 without Addr6: stats %+v, want IPv6 1", g.Stats())
	}
}

// FuzzWrite6 feeds arbitrary frames to a dual-stack gateway: it must never
// panic or change its input, and send at most one reply, from its MAC,
// with valid checksums, an ICMPv6 error within the IPv6 minimum MTU.
func FuzzWrite6(f *testing.F) {
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: gwNet6.Addr().AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: aMAC}}}
	for _, s := range [][]byte{
		icmp6Frame(f, solicitedMAC(gwNet6.Addr()), aIP6, solicited(gwNet6.Addr()), 255, layers.ICMPv6TypeNeighborSolicitation, 0, ns),
		icmp6Frame(f, gwMAC, aIP6, gwNet6.Addr(), 64, layers.ICMPv6TypeEchoRequest, 0, gopacket.Payload("ping")),
		icmp6Frame(f, gwMAC, aIP6, netip.MustParseAddr("2001:db8::1"), 1, layers.ICMPv6TypeEchoRequest, 0, gopacket.Payload(make([]byte, 1400))),
		icmp6Frame(f, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}, aLL, netip.MustParseAddr("ff02::2"), 255, layers.ICMPv6TypeRouterSolicitation, 0, &layers.ICMPv6RouterSolicitation{}),
	} {
		f.Add(append(make([]byte, vswitch.VnetHdrLen), s...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		g := newGateway6(t, func(c *gateway.Config) { c.QueueLen = 8 })
		drainStart(t, g)
		orig := append([]byte(nil), in...)
		if _, err := g.Write(in, 0); err != nil && !errors.Is(err, vswitch.ErrFrameTooBig) {
			t.Fatalf("Write: %v", err)
		}
		if string(in) != string(orig) {
			t.Fatalf("Write modified its input")
		}
		if g.Queued() > 1 {
			t.Fatalf("%d replies to one frame", g.Queued())
		}
		if g.Queued() == 0 {
			return
		}
		p := gopacket.NewPacket(read(t, g), layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if eth == nil || !ok || eth.SrcMAC.String() != gwMAC.String() {
			t.Fatalf("reply not IPv6 from the gateway: %v", p)
		}
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
			tcp.SetNetworkLayerForChecksum(ip)
		} else if ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
			ic.SetNetworkLayerForChecksum(ip)
			if ic.TypeCode.Type() < 128 && 40+int(ip.Length) > 1280 {
				t.Fatalf("ICMPv6 error of %d bytes", 40+int(ip.Length))
			}
		} else {
			t.Fatalf("reply neither TCP nor ICMPv6: %v", p)
		}
		if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
			t.Fatalf("reply checksums: %v %v\n%v", err, bad, p)
		}
	})
}
