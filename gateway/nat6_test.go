package gateway_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// extIP6 is the uplink's IPv6 address; farIP6, bIP6 and bMAC are
// route6_test.go's.
var extIP6 = netip.MustParseAddr("2001:db8:66::2")

// natUplink6 is fakeUplink with an IPv6 address (uplink.NAT66).
type natUplink6 struct{ fakeUplink }

func (u *natUplink6) Addr6() netip.Addr { return extIP6 }

// newNATRouter6 returns a dual-stack gateway routing IPv6 through NAT66 to a
// fake uplink of the given MTU, its start-up advertisements read.
func newNATRouter6(t *testing.T, mtu int) (*gateway.Gateway, *natUplink6) {
	t.Helper()
	tbl, err := nat.New(nat.Config{External: extIP, Internal: gwNet.Masked(), External6: extIP6, Internal6: gwNet6.Masked()})
	if err != nil {
		t.Fatal(err)
	}
	up := &natUplink6{fakeUplink{mtu: mtu, keep: true}}
	g := newGateway6(t, func(c *gateway.Config) { c.NAT, c.Uplink = tbl, up })
	drainStart(t, g)
	return g, up
}

// udp6 returns an Ethernet/IPv6/UDP frame from MAC src with n bytes of
// payload and valid checksums.
func udp6(t testing.TB, ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hops uint8, sport, dport uint16, n int) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: hops, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: ethSrc, DstMAC: ethDst, EthernetType: layers.EthernetTypeIPv6}, ip, u, gopacket.Payload(make([]byte, n))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decode6 decodes an Ethernet/IPv6 frame and verifies its checksums.
func decode6(t testing.TB, b []byte) (*layers.Ethernet, *layers.IPv6, gopacket.Packet) {
	t.Helper()
	eth, ip, p, err := parse6(b)
	if err != nil {
		t.Fatalf("%v\n%v", err, p)
	}
	return eth, ip, p
}

// parse6 decodes an Ethernet/IPv6 frame and returns an error unless it is
// one with valid checksums.
func parse6(b []byte) (*layers.Ethernet, *layers.IPv6, gopacket.Packet, error) {
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if eth == nil || !ok {
		return nil, nil, p, fmt.Errorf("not IPv6")
	}
	for _, l := range p.Layers() {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			c.SetNetworkLayerForChecksum(ip)
		}
	}
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
		return eth, ip, p, fmt.Errorf("checksums: %v %v", err, bad)
	}
	return eth, ip, p, nil
}

// TestNAT6OutAndBack: a container's UDP to the outside leaves masqueraded
// to the uplink's IPv6 address with its hop limit decremented; the reply
// comes back to the container's MAC, learned from what it sent.
func TestNAT6OutAndBack(t *testing.T) {
	g, up := newNATRouter6(t, 1500)
	write(t, g, udp6(t, aMAC, gwMAC, aIP6, farIP6, 64, 40000, 53, 32))
	sent := up.Take()
	if len(sent) != 1 {
		t.Fatalf("uplink got %d packets, want 1", len(sent))
	}
	expectNoReply(t, g)
	_, ip, p := decode6(t, append(make([]byte, 12), append([]byte{0x86, 0xdd}, sent[0]...)...))
	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip.SrcIP.String() != extIP6.String() || ip.DstIP.String() != farIP6.String() || ip.HopLimit != 63 || u.SrcPort != 40000 {
		t.Fatalf("sent [%s]:%d -> %s hop limit %d, want [%s]:40000 -> %s hop limit 63", ip.SrcIP, u.SrcPort, ip.DstIP, ip.HopLimit, extIP6, farIP6)
	}
	reply := udp6(t, bMAC, bMAC, farIP6, extIP6, 60, 53, 40000, 32)[14:]
	g.FromUplink(reply)
	eth, ip, _ := decode6(t, read(t, g))
	if eth.DstMAC.String() != aMAC.String() || eth.SrcMAC.String() != gwMAC.String() || ip.DstIP.String() != aIP6.String() || ip.HopLimit != 59 {
		t.Errorf("delivered %s -> %s, %s hop limit %d; want %s -> %s, %s hop limit 59", eth.SrcMAC, eth.DstMAC, ip.DstIP, ip.HopLimit, gwMAC, aMAC, aIP6)
	}
	if s := g.Stats(); s.Forwarded6 != 1 || s.ToContainer6 != 1 || s.Forwarded != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestNAT6PacketTooBig: over the uplink's MTU, the container gets packet
// too big with that MTU (RFC 8201) and nothing leaves; at hop limit 1,
// time exceeded.
func TestNAT6PacketTooBig(t *testing.T) {
	g, up := newNATRouter6(t, 1400)
	write(t, g, udp6(t, aMAC, gwMAC, aIP6, farIP6, 64, 40000, 53, 1400))
	_, eth, ip, ic := reply6(t, g)
	if ic.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || eth.DstMAC.String() != aMAC.String() ||
		ip.SrcIP.String() != gwNet6.Addr().String() || ip.DstIP.String() != aIP6.String() {
		t.Fatalf("reply %v %s -> %s, want packet too big from the gateway", ic.TypeCode, ip.SrcIP, ip.DstIP)
	}
	if mtu := uint32(ic.Payload[0])<<24 | uint32(ic.Payload[1])<<16 | uint32(ic.Payload[2])<<8 | uint32(ic.Payload[3]); mtu != 1400 {
		t.Errorf("packet too big says MTU %d, want 1400", mtu)
	}
	write(t, g, udp6(t, aMAC, gwMAC, aIP6, farIP6, 1, 40000, 53, 10))
	if _, _, _, ic := reply6(t, g); ic.TypeCode.Type() != layers.ICMPv6TypeTimeExceeded {
		t.Errorf("hop limit 1: %v, want time exceeded", ic.TypeCode)
	}
	if n := len(up.Take()); n != 0 {
		t.Errorf("uplink got %d packets, want 0", n)
	}
	if s := g.Stats(); s.FragNeeded != 1 {
		t.Errorf("FragNeeded = %d, want 1", s.FragNeeded)
	}
}

// TestNAT6SolicitsUnknownContainer: a reply for a container the gateway
// has not heard from waits for a neighbor solicitation's answer.
func TestNAT6SolicitsUnknownContainer(t *testing.T) {
	g, up := newNATRouter6(t, 1500)
	write(t, g, udp6(t, bMAC, gwMAC, bIP6, farIP6, 64, 40001, 53, 8))
	up.Take()
	g.Forget(bIP6) // as if its entry had expired
	g.FromUplink(udp6(t, bMAC, bMAC, farIP6, extIP6, 60, 53, 40001, 8)[14:])
	p, eth, ip, ic := reply6(t, g)
	ns, ok := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	if !ok || ic.TypeCode.Type() != layers.ICMPv6TypeNeighborSolicitation || ns.TargetAddress.String() != bIP6.String() ||
		eth.DstMAC.String() != solicitedMAC(bIP6).String() || ip.DstIP.String() != solicited(bIP6).String() {
		t.Fatalf("after a packet for an unknown container: %v, want an NS for %s", p, bIP6)
	}
	expectNoReply(t, g)
	na := &layers.ICMPv6NeighborAdvertisement{TargetAddress: bIP6.AsSlice(), Flags: 0x60,
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: bMAC}}}
	f := icmp6Frame(t, gwMAC, bIP6, gwNet6.Addr(), 255, layers.ICMPv6TypeNeighborAdvertisement, 0, na)
	copy(f[6:12], bMAC)
	write(t, g, f)
	eth, ip, _ = decode6(t, read(t, g))
	if eth.DstMAC.String() != bMAC.String() || ip.DstIP.String() != bIP6.String() {
		t.Errorf("after the NA: %s -> %s, want the waiting packet to %s", eth.DstMAC, ip.DstIP, bMAC)
	}
}

// TestNAT6Hairpin: with endpoint-independent filtering, a container reaches
// another's mapping at the uplink's IPv6 address and gets there from it.
func TestNAT6Hairpin(t *testing.T) {
	tbl, err := nat.New(nat.Config{External: extIP, Internal: gwNet.Masked(), External6: extIP6, Internal6: gwNet6.Masked(),
		EndpointIndependentFiltering: true})
	if err != nil {
		t.Fatal(err)
	}
	up := &natUplink6{fakeUplink{mtu: 1500, keep: true}}
	g := newGateway6(t, func(c *gateway.Config) { c.NAT, c.Uplink = tbl, up })
	drainStart(t, g)
	write(t, g, udp6(t, bMAC, gwMAC, bIP6, farIP6, 64, 3478, 3478, 8))
	up.Take()
	write(t, g, udp6(t, aMAC, gwMAC, aIP6, extIP6, 64, 5000, 3478, 8))
	eth, ip, p := decode6(t, read(t, g))
	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth.DstMAC.String() != bMAC.String() || ip.SrcIP.String() != extIP6.String() || ip.DstIP.String() != bIP6.String() || u.DstPort != 3478 {
		t.Errorf("hairpin delivered %s [%s] -> [%s]:%d, want to %s from %s", eth.DstMAC, ip.SrcIP, ip.DstIP, u.DstPort, bMAC, extIP6)
	}
	if n := len(up.Take()); n != 0 {
		t.Errorf("a hairpinned packet went to the uplink")
	}
}

// FuzzRouteNAT6 routes any frame from a container, or any packet from the
// uplink, through NAT66: nothing panics, what leaves is at most the
// uplink's MTU, from the uplink's IPv6 address, with valid checksums when
// it came with valid ones. Seed c91f222c20e5f9a5 (testdata/fuzz/FuzzRouteNAT6): a packet
// with a wrong UDP checksum, which NAT66 keeps wrong (the test first wanted
// every packet to leave valid).
func FuzzRouteNAT6(f *testing.F) {
	f.Add(udp6(f, aMAC, gwMAC, aIP6, farIP6, 64, 40000, 53, 16), false)
	f.Add(udp6(f, aMAC, gwMAC, aIP6, farIP6, 64, 40000, 53, 1300), false)
	f.Add(udp6(f, aMAC, gwMAC, aIP6, extIP6, 64, 40000, 40000, 8), false)
	f.Add(udp6(f, bMAC, bMAC, farIP6, extIP6, 64, 53, 40000, 16)[14:], true)
	f.Fuzz(func(t *testing.T, b []byte, inbound bool) {
		g, up := newNATRouter6(t, 1280)
		in := b
		if inbound {
			in = append(make([]byte, 12), append([]byte{0x86, 0xdd}, b...)...)
		}
		_, _, _, bad := parse6(in)                                                // only a valid packet must leave valid
		g.FromUplink(udp6(t, bMAC, bMAC, farIP6, extIP6, 64, 53, 40000, 16)[14:]) // unknown flow: dropped
		write(t, g, udp6(t, aMAC, gwMAC, aIP6, farIP6, 64, 40000, 53, 16))        // a flow to reply to
		if inbound {
			g.FromUplink(b)
		} else {
			g.Write(withVnetHdr(b), vswitch.Headroom)
		}
		for _, d := range up.Take() {
			if len(d) > 1280 {
				t.Fatalf("sent %d bytes over a 1280-byte uplink", len(d))
			}
			_, ip, p, err := parse6(append(make([]byte, 12), append([]byte{0x86, 0xdd}, d...)...))
			if ip == nil || ip.SrcIP.String() != extIP6.String() {
				t.Fatalf("sent %v, want a packet from %s", p, extIP6)
			}
			if err != nil && bad == nil {
				t.Fatalf("a valid packet left with %v\n%v", err, p)
			}
		}
		for g.Queued() > 0 {
			read(t, g)
		}
	})
}
