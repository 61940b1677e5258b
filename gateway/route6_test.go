package gateway_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

var (
	farIP6  = netip.MustParseAddr("2001:db8::1")
	lo6     = netip.MustParseAddr("64:ff9b::c000:1")
	bIP6    = netip.MustParseAddr("fd42:1::3")
	bMAC    = net.HardwareAddr{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x03}
	hostLo4 = netip.MustParseAddr("192.0.0.1")
)

// fakeUplink6 is a fakeUplink that carries IPv6 too (uplink.Sender6).
type fakeUplink6 struct {
	fakeUplink
}

func (u *fakeUplink6) Send6(buf []byte, off int) error { return u.Send(buf, off) }
func (u *fakeUplink6) Loopback6() netip.Addr           { return lo6 }

// newRouter6 returns a dual-stack gateway routing to a fake uplink that
// carries IPv6, its start-up NAs and RA read; hostLo sets HostLoopback.
func newRouter6(t *testing.T, mtu int, hostLo bool) (*gateway.Gateway, *fakeUplink6) {
	t.Helper()
	tbl := newNAT(t)
	up := &fakeUplink6{fakeUplink{mtu: mtu, keep: true}}
	g := newGateway6(t, func(c *gateway.Config) {
		c.NAT, c.Uplink = tbl, up
		if hostLo {
			c.HostLoopback = hostLo4
		}
	})
	drainStart(t, g)
	return g, up
}

// tcp6 builds an IPv6 TCP segment from src to dst with payload n bytes,
// valid checksums, behind an Ethernet header from srcMAC to the gateway.
func tcp6(t testing.TB, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, n int) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, ACK: true, Ack: 1, Window: 100}
	if err := tc.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: srcMAC, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv6}, ip, tc, gopacket.Payload(make([]byte, n)))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// check6 decodes an Ethernet/IPv6 frame, failing unless its TCP or ICMPv6
// checksum verifies.
func check6(t testing.TB, b []byte) (*layers.Ethernet, *layers.IPv6) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if eth == nil || !ok {
		t.Fatalf("not IPv6: %v", p)
	}
	if tc, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		tc.SetNetworkLayerForChecksum(ip)
	}
	if ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		ic.SetNetworkLayerForChecksum(ip)
	}
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
		t.Fatalf("checksums: %v %v\n%v", err, bad, p)
	}
	return eth, ip
}

// sent6 takes the one packet the uplink got and checks it.
func sent6(t *testing.T, up *fakeUplink6) *layers.IPv6 {
	t.Helper()
	sent := up.Take()
	if len(sent) != 1 {
		t.Fatalf("uplink got %d packets, want 1", len(sent))
	}
	_, ip := check6(t, append(append(make([]byte, 12), 0x86, 0xdd), sent[0]...))
	return ip
}

// swap returns the IPv6 packet p (no Ethernet header) with its addresses
// and TCP ports swapped: the far end's answer, checksums unchanged (the
// sums are symmetric).
func swap(p []byte) []byte {
	r := append([]byte(nil), p...)
	copy(r[8:24], p[24:40])
	copy(r[24:40], p[8:24])
	copy(r[40:42], p[42:44])
	copy(r[42:44], p[40:42])
	return r
}

// TestRoute6OutAndBack: a container's IPv6 packet for outside reaches the
// uplink untranslated with its hop limit decremented; the answer reaches
// the container, whose MAC was learned on the way out.
func TestRoute6OutAndBack(t *testing.T) {
	g, up := newRouter6(t, 1500, false)
	write(t, g, tcp6(t, aMAC, aIP6, farIP6, 40000, 80, 100))
	ip := sent6(t, up)
	if ip.SrcIP.String() != aIP6.String() || ip.DstIP.String() != farIP6.String() || ip.HopLimit != 63 {
		t.Fatalf("sent %s -> %s hop limit %d, want %s -> %s 63", ip.SrcIP, ip.DstIP, ip.HopLimit, aIP6, farIP6)
	}
	expectNoReply(t, g)
	up.keep = true
	write(t, g, tcp6(t, aMAC, aIP6, farIP6, 40000, 80, 0))
	back := swap(up.Take()[0])
	g.FromUplink(back)
	eth, ip := check6(t, read(t, g))
	if eth.DstMAC.String() != aMAC.String() || ip.DstIP.String() != aIP6.String() || ip.HopLimit != 62 {
		t.Errorf("delivered to %s %s hop limit %d, want %s %s 62", eth.DstMAC, ip.DstIP, ip.HopLimit, aMAC, aIP6)
	}
	if s := g.Stats(); s.Forwarded6 != 2 || s.ToContainer6 != 1 || s.Forwarded != 0 {
		t.Errorf("stats: forwarded6 %d, to_container6 %d, forwarded %d; want 2, 1, 0", s.Forwarded6, s.ToContainer6, s.Forwarded)
	}
}

// TestRoute6SolicitsUnknownContainer: a packet from the uplink for a
// container the gateway has not heard from waits while the gateway sends a
// neighbor solicitation, and goes out when the container advertises.
func TestRoute6SolicitsUnknownContainer(t *testing.T) {
	g, _ := newRouter6(t, 1500, false)
	in := tcp6(t, aMAC, farIP6, bIP6, 80, 40000, 10)[14:]
	g.FromUplink(in)
	_, eth, ip, ic := reply6(t, g)
	if ic.TypeCode.Type() != layers.ICMPv6TypeNeighborSolicitation || ip.DstIP.String() != solicited(bIP6).String() ||
		eth.DstMAC.String() != solicitedMAC(bIP6).String() || ip.HopLimit != 255 {
		t.Fatalf("sent %v to %s (%s) hop limit %d, want a neighbor solicitation to %s", ic.TypeCode, ip.DstIP, eth.DstMAC, ip.HopLimit, solicited(bIP6))
	}
	expectNoReply(t, g)
	na := icmp6Frame(t, gwMAC, bIP6, gwNet6.Addr(), 255, layers.ICMPv6TypeNeighborAdvertisement, 0,
		&layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: bIP6.AsSlice(), Options: layers.ICMPv6Options{
			{Type: layers.ICMPv6OptTargetAddress, Data: bMAC}}})
	copy(na[6:12], bMAC)
	write(t, g, na)
	eth2, ip2 := check6(t, read(t, g))
	if eth2.DstMAC.String() != bMAC.String() || ip2.DstIP.String() != bIP6.String() {
		t.Errorf("the waiting packet went to %s %s, want %s %s", eth2.DstMAC, ip2.DstIP, bMAC, bIP6)
	}
	if s := g.Stats(); s.NeighSolicits != 1 || s.PendingQueued != 1 {
		t.Errorf("neigh_solicits %d, pending_queued %d: want 1, 1", s.NeighSolicits, s.PendingQueued)
	}
}

// TestRoute6PacketTooBig: a packet over the uplink's MTU is answered with
// packet too big carrying that MTU (RFC 4443 3.2), not forwarded.
func TestRoute6PacketTooBig(t *testing.T) {
	g, up := newRouter6(t, 1280, false)
	write(t, g, tcp6(t, aMAC, aIP6, farIP6, 40000, 80, 1300))
	if n := len(up.Take()); n != 0 {
		t.Fatalf("uplink got %d packets, want none", n)
	}
	_, _, ip, ic := reply6(t, g)
	if ic.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || ip.DstIP.String() != aIP6.String() {
		t.Fatalf("got %v to %s, want packet too big to %s", ic.TypeCode, ip.DstIP, aIP6)
	}
	if mtu := binary.BigEndian.Uint32(ic.Contents[4:8]); mtu != 1280 {
		t.Errorf("packet too big says mtu %d, want 1280", mtu)
	}
}

// TestRoute6HostLoopback: with HostLoopback, TCP to the gateway's IPv6
// address goes to the uplink's Loopback6 and the answer comes back from the
// gateway's address, checksums updated both ways; without it, the gateway
// answers with a reset.
func TestRoute6HostLoopback(t *testing.T) {
	g, up := newRouter6(t, 1500, true)
	write(t, g, tcp6(t, aMAC, aIP6, gwNet6.Addr(), 40000, 9000, 10))
	ip := sent6(t, up)
	if ip.DstIP.String() != lo6.String() || ip.SrcIP.String() != aIP6.String() {
		t.Fatalf("sent %s -> %s, want %s -> %s", ip.SrcIP, ip.DstIP, aIP6, lo6)
	}
	up.keep = true
	write(t, g, tcp6(t, aMAC, aIP6, gwNet6.Addr(), 40000, 9000, 10))
	g.FromUplink(swap(up.Take()[0]))
	_, back := check6(t, read(t, g))
	if back.SrcIP.String() != gwNet6.Addr().String() || back.DstIP.String() != aIP6.String() {
		t.Errorf("delivered %s -> %s, want %s -> %s", back.SrcIP, back.DstIP, gwNet6.Addr(), aIP6)
	}

	g2, up2 := newRouter6(t, 1500, false)
	write(t, g2, tcp6(t, aMAC, aIP6, gwNet6.Addr(), 40000, 9000, 0))
	if n := len(up2.Take()); n != 0 {
		t.Errorf("without HostLoopback the uplink got %d packets", n)
	}
	if s := g2.Stats(); s.TCPResets != 1 {
		t.Errorf("tcp_resets %d, want 1", s.TCPResets)
	}
}

// TestRoute6Config: an uplink's Loopback6 inside the containers' /64 is
// refused.
func TestRoute6Config(t *testing.T) {
	tbl := newNAT(t)
	up := &badLoopback6{fakeUplink6{fakeUplink{mtu: 1500}}}
	_, err := gateway.New(gateway.Config{MAC: gwMAC, Addr: gwNet, Addr6: gwNet6, NAT: tbl, Uplink: up})
	if err == nil {
		t.Fatal("New accepted an uplink whose Loopback6 is in the /64")
	}
}

type badLoopback6 struct{ fakeUplink6 }

func (*badLoopback6) Loopback6() netip.Addr { return bIP6 }

// TestRoute6NoAllocs pins zero allocations on IPv6 routed both ways.
func TestRoute6NoAllocs(t *testing.T) {
	g, up := newRouter6(t, 1500, false)
	buf := withVnetHdr(tcp6(t, aMAC, aIP6, farIP6, 40000, 80, 56))
	write(t, g, buf[vswitch.Headroom+vswitch.VnetHdrLen:])
	back := swap(up.Take()[0])
	up.keep = false
	if n := testing.AllocsPerRun(1000, func() { g.Write(buf, vswitch.Headroom) }); n != 0 {
		t.Errorf("routing an IPv6 packet out: %v allocations, want 0", n)
	}
	if n := deliverAllocs(t, g, back); n != 0 {
		t.Errorf("delivering an IPv6 packet from the uplink: %v allocations, want 0", n)
	}
}

// FuzzRoute6 feeds arbitrary frames from a container and arbitrary packets
// from an uplink that carries IPv6 to a routing dual-stack gateway (with
// the host loopback, whose rewrite touches checksums): nothing panics,
// what goes out is an IPv6 packet within the uplink's MTU from the /64
// with its hop limit decremented, and the ICMPv6 errors the gateway sends
// have valid checksums.
func FuzzRoute6(f *testing.F) {
	f.Add(tcp6(f, aMAC, aIP6, farIP6, 40000, 80, 16)[14:], false, false)
	f.Add(tcp6(f, aMAC, aIP6, gwNet6.Addr(), 40000, 9000, 1300)[14:], false, false)
	f.Add(tcp6(f, aMAC, lo6, aIP6, 9000, 40000, 16)[14:], true, false)
	f.Add(tcp6(f, aMAC, farIP6, bIP6, 80, 40000, 16)[14:], true, true)
	f.Fuzz(func(t *testing.T, ip []byte, inbound, na bool) {
		g, up := newRouter6(t, 1280, true)
		eth := append(append([]byte{}, gwMAC...), aMAC...)
		eth = append(append(eth, 0x86, 0xdd), ip...)
		if na {
			// aIP6's MAC known first, so that delivery goes out.
			write(t, g, tcp6(t, aMAC, aIP6, farIP6, 1, 2, 0))
			up.Take()
		}
		if inbound {
			g.FromUplink(ip)
		} else {
			g.Write(withVnetHdr(eth), vswitch.Headroom)
		}
		for _, d := range up.Take() {
			if len(d) > 1280 || len(d) < 40 || d[0]>>4 != 6 {
				t.Fatalf("sent %d bytes, not an IPv6 packet within a 1280-byte uplink: %x", len(d), d)
			}
			if !gwNet6.Contains(netip.AddrFrom16([16]byte(d[8:24]))) || d[7] != ip[7]-1 {
				t.Fatalf("sent from %x with hop limit %d (in: %d)", d[8:24], d[7], ip[7])
			}
		}
		for g.Queued() > 0 {
			b := read(t, g)
			if len(b) >= 14 && b[12] == 0x86 && b[13] == 0xdd {
				p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
				if p.ErrorLayer() != nil {
					continue // the uplink's packet, passed on as it came
				}
				if ip6, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
					if ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && ic.TypeCode.Type() < 128 {
						ic.SetNetworkLayerForChecksum(ip6)
						if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
							t.Fatalf("the gateway's ICMPv6 error has bad checksums: %v %v", err, bad)
						}
					}
				}
			}
		}
	})
}
