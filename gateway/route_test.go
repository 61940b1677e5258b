package gateway_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

var (
	extIP = netip.MustParseAddr("198.51.100.2")
	lanIP = netip.MustParseAddr("198.51.100.1")
)

// fakeUplink records what the gateway sends.
type fakeUplink struct {
	mtu             int
	keep            bool // keep copies of the IPv4 datagrams sent
	testutil.Frames      // the datagrams kept
}

func (u *fakeUplink) Send(buf []byte, off int) error {
	if off < gateway.UplinkHeadroom {
		panic("no headroom")
	}
	if u.keep {
		u.Add(buf[off:])
	}
	return nil
}
func (u *fakeUplink) Addr() netip.Addr { return extIP }
func (u *fakeUplink) MTU() int         { return u.mtu }

// newNAT returns an IPv4 NAT table from the containers' subnet (gwNet) to
// extIP.
func newNAT(t testing.TB) *nat.Table {
	t.Helper()
	tbl, err := nat.New(nat.Config{External: extIP, Internal: gwNet.Masked()})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// deliverAllocs returns the allocations of handing pkt to g from the
// uplink and reading what g then sends the container; pkt is copied
// before each run, as FromUplink rewrites in place.
func deliverAllocs(t *testing.T, g *gateway.Gateway, pkt []byte) float64 {
	t.Helper()
	in := append([]byte(nil), pkt...)
	out := make([]byte, vswitch.BufSize)
	return testing.AllocsPerRun(1000, func() {
		copy(in, pkt)
		g.FromUplink(in)
		if _, err := g.Read(out, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
	})
}

// newRouter returns a gateway routing through a NAT table to a fake uplink
// of the given MTU.
func newRouter(t *testing.T, mtu int) (*gateway.Gateway, *fakeUplink, *nat.Table) {
	t.Helper()
	tbl := newNAT(t)
	up := &fakeUplink{mtu: mtu, keep: true}
	g, _ := newGateway(t, func(c *gateway.Config) { c.NAT, c.Uplink = tbl, up })
	return g, up, tbl
}

// withEth returns the datagram p behind an Ethernet header, for decode.
func withEth(p []byte) []byte {
	return append(append(make([]byte, 12), 0x08, 0x00), p...)
}

func TestRouteEchoOutAndBack(t *testing.T) {
	g, up, _ := newRouter(t, 1500)
	write(t, g, toElsewhere(t, lanIP, 16))
	sent := up.Take()
	if len(sent) != 1 {
		t.Fatalf("uplink got %d datagrams, want 1", len(sent))
	}
	p := decode(t, withEth(sent[0]))
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.SrcIP.String() != extIP.String() || ip.DstIP.String() != lanIP.String() || ip.TTL != 63 {
		t.Fatalf("sent %s -> %s ttl %d, want %s -> %s ttl 63", ip.SrcIP, ip.DstIP, ip.TTL, extIP, lanIP)
	}
	expectNoReply(t, g)

	// The reply, from the lan to the uplink address.
	echo := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	reply := withEth(append([]byte(nil), sent[0]...))
	r := reply[14:]
	copy(r[12:16], lanIP.AsSlice())
	copy(r[16:20], extIP.AsSlice())
	r[20] = 0 // echo reply
	binary.BigEndian.PutUint16(r[24:26], echo.Id)
	fixChecksums(reply)
	g.FromUplink(reply[14:])
	got := decode(t, read(t, g))
	eth := got.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip = got.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth.DstMAC.String() != aMAC.String() || eth.SrcMAC.String() != gwMAC.String() || ip.DstIP.String() != aIP.String() || ip.TTL != 62 {
		t.Errorf("delivered %s -> %s, %s ttl %d; want %s -> %s, %s ttl 62", eth.SrcMAC, eth.DstMAC, ip.DstIP, ip.TTL, gwMAC, aMAC, aIP)
	}
	if s := g.Stats(); s.Forwarded != 1 || s.UplinkIn != 1 || s.ToContainer != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestRouteTTLExceeded(t *testing.T) {
	g, up, _ := newRouter(t, 1500)
	f := toElsewhere(t, lanIP, 8)
	f[14+8] = 1
	write(t, g, fixChecksums(f))
	if n := len(up.Take()); n != 0 {
		t.Fatalf("a datagram with TTL 1 went out (%d)", n)
	}
	p := decode(t, read(t, g))
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if icmp.TypeCode.Type() != layers.ICMPv4TypeTimeExceeded || ip.SrcIP.String() != gwIP.String() {
		t.Errorf("got %v from %s, want time exceeded from the gateway", icmp.TypeCode, ip.SrcIP)
	}
}

func TestRouteFragNeeded(t *testing.T) {
	g, up, _ := newRouter(t, 576)
	f := toElsewhere(t, lanIP, 600)
	f[14+6] = 0x40 // DF
	write(t, g, fixChecksums(f))
	if n := len(up.Take()); n != 0 {
		t.Fatalf("a DF datagram over the MTU went out")
	}
	p := decode(t, read(t, g))
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || icmp.Seq != 576 {
		t.Errorf("got %v, next-hop MTU %d; want fragmentation needed, MTU 576 (RFC 1191)", icmp.TypeCode, icmp.Seq)
	}
}

func TestRouteFragments(t *testing.T) {
	g, up, _ := newRouter(t, 576)
	write(t, g, toElsewhere(t, lanIP, 1000))
	frags := up.Take()
	if len(frags) < 2 {
		t.Fatalf("%d datagrams, want fragments", len(frags))
	}
	var payload []byte
	for i, f := range frags {
		if len(f) > 576 {
			t.Errorf("fragment %d: %d bytes over the MTU", i, len(f))
		}
		p := gopacket.NewPacket(withEth(f), layers.LayerTypeEthernet, gopacket.Default)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if int(ip.FragOffset)*8 != len(payload) || (ip.Flags&layers.IPv4MoreFragments != 0) != (i < len(frags)-1) {
			t.Errorf("fragment %d: offset %d flags %v", i, ip.FragOffset, ip.Flags)
		}
		if ip.SrcIP.String() != extIP.String() {
			t.Errorf("fragment %d from %s", i, ip.SrcIP)
		}
		payload = append(payload, f[20:]...)
	}
	if len(payload) != 8+1000 {
		t.Errorf("reassembled %d bytes, want 1008", len(payload))
	}
}

func TestRouteARPsForUnknownContainer(t *testing.T) {
	g, _, tbl := newRouter(t, 1500)
	bIP := netip.MustParseAddr("10.90.0.3")
	if err := tbl.AddPublish(nat.Publish{Proto: nat.UDP, HostPort: 5353, HostPortEnd: 5353, Target: bIP, TargetPort: 53}); err != nil {
		t.Fatal(err)
	}
	// A UDP datagram from the lan to the published port.
	u := frame(t,
		"45", "00", "001c", "0001", "0000", "40", "11", "0000", "c6336401", "c6336402", // IPv4 lan -> uplink
		"d431", "14e9", "0008", "0000") // UDP 54321 -> 5353, no checksum
	pkt := fixChecksums(withEth(u))[14:]
	g.FromUplink(pkt)
	req := decode(t, read(t, g))
	a, ok := req.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || a.Operation != layers.ARPRequest || netip.AddrFrom4([4]byte(a.DstProtAddress)) != bIP {
		t.Fatalf("want an ARP request for %s, got %v", bIP, req)
	}
	expectNoReply(t, g)
	// B answers; the datagram that waited is delivered.
	bMAC := []byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x03}
	rep := frame(t, "027473000001", "02420a5a0003", "0806", "0001080006040002", "02420a5a0003", "0a5a0003", "027473000001", "0a5a0001")
	write(t, g, rep)
	got := decode(t, read(t, g))
	eth := got.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	udp := got.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if string(eth.DstMAC) != string(bMAC) || udp.DstPort != 53 {
		t.Errorf("delivered to %s port %d, want %x port 53", eth.DstMAC, udp.DstPort, bMAC)
	}
	if s := g.Stats(); s.PendingQueued != 1 || s.ARPRequestsSent != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestRouteNoAllocs(t *testing.T) {
	g, up, _ := newRouter(t, 1500)
	up.keep = false
	buf := withVnetHdr(toElsewhere(t, lanIP, 56))
	if _, err := g.Write(buf, vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	// A known flow: parse, NAT, send. (Under -race, sync.Pool drops some
	// buffers on purpose; AllocsPerRun's integer average hides that.)
	if n := testing.AllocsPerRun(1000, func() { g.Write(buf, vswitch.Headroom) }); n != 0 {
		t.Errorf("forwarding a datagram of a known flow: %v allocations, want 0", n)
	}

	// The way back: from the uplink, NAT, to the container's queue, out
	// through Read.
	up.keep = true
	g.Write(buf, vswitch.Headroom)
	sent := up.Take()[0]
	reply := withEth(append([]byte(nil), sent...))
	r := reply[14:]
	copy(r[12:16], lanIP.AsSlice())
	copy(r[16:20], extIP.AsSlice())
	r[20] = 0 // echo reply; the identifier is already the mapped one
	fixChecksums(reply)
	if n := deliverAllocs(t, g, r); n != 0 {
		t.Errorf("delivering a datagram of a known flow from the uplink: %v allocations, want 0", n)
	}
}

// TestRoutePendingBounded: datagrams for containers that never answer ARP
// are bounded, counted, and given up on after the timeout.
func TestRoutePendingBounded(t *testing.T) {
	tbl := newNAT(t)
	g, clk := newGateway(t, func(c *gateway.Config) { c.NAT, c.Uplink, c.QueueLen = tbl, &fakeUplink{mtu: 1500}, 4096 })
	for i := range 300 {
		dst := netip.AddrFrom4([4]byte{10, 90, 1, byte(i / 32)})
		port := uint16(1000 + i)
		// Distinct target ports: one client endpoint to one target
		// endpoint is one connection.
		if err := tbl.AddPublish(nat.Publish{Proto: nat.UDP, HostPort: port, HostPortEnd: port, Target: dst, TargetPort: port}); err != nil {
			t.Fatal(err)
		}
		u := frame(t, "450000200001000040110000c6336401c6336402", "d431", "0000", "000c0000", "68697468")
		binary.BigEndian.PutUint16(u[22:24], port)
		g.FromUplink(fixChecksums(withEth(u))[14:])
	}
	s := g.Stats()
	if s.PendingQueued != 256 || s.PendingDropped != 300-256 {
		t.Errorf("queued %d dropped %d, want 256 and %d", s.PendingQueued, s.PendingDropped, 300-256)
	}
	// Later, a datagram for another host finds the stale ones given up.
	clk.Advance(4 * time.Second)
	if err := tbl.AddPublish(nat.Publish{Proto: nat.UDP, HostPort: 2000, HostPortEnd: 2000, Target: netip.MustParseAddr("10.90.2.1"), TargetPort: 53}); err != nil {
		t.Fatal(err)
	}
	u := frame(t, "450000200001000040110000c6336401c6336402", "d431", "07d0", "000c0000", "68697468")
	g.FromUplink(fixChecksums(withEth(u))[14:])
	if s := g.Stats(); s.PendingExpired != 256 || s.PendingQueued != 257 {
		t.Errorf("after the timeout: expired %d queued %d, want 256 and 257", s.PendingExpired, s.PendingQueued)
	}
}

// FuzzRoute feeds arbitrary frames from a container and arbitrary
// datagrams from the uplink to a routing gateway: nothing panics, what
// goes out fits the uplink's MTU and has a valid IPv4 header checksum.
func FuzzRoute(f *testing.F) {
	f.Add(toElsewhere(f, lanIP, 16), false)
	f.Add(toElsewhere(f, lanIP, 700), false)
	f.Add(toElsewhere(f, extIP, 8), false)
	f.Add(fixChecksums(withEth(frame(f, "450000200001000040110000c6336401c6336402", "d431", "1f90", "000c0000", "68697468")))[14:], true)
	f.Fuzz(func(t *testing.T, b []byte, inbound bool) {
		g, up, tbl := newRouter(t, 576)
		tbl.AddPublish(nat.Publish{Proto: nat.UDP, HostPort: 8080, HostPortEnd: 8080, Target: aIP, TargetPort: 80})
		if inbound {
			g.FromUplink(b)
		} else {
			g.Write(withVnetHdr(b), vswitch.Headroom)
		}
		for _, d := range up.Take() {
			if len(d) > 576 || len(d) < 20 {
				t.Fatalf("sent %d bytes over a 576-byte uplink", len(d))
			}
			ihl := int(d[0]&0x0f) * 4
			if ihl < 20 || ihl > len(d) || ipChecksumOK(d[:ihl]) != nil {
				t.Fatalf("sent a datagram with a bad IPv4 header: %x", d)
			}
		}
		for g.Queued() > 0 {
			read(t, g)
		}
	})
}

func ipChecksumOK(h []byte) error {
	if gopacket.FoldChecksum(gopacket.ComputeChecksum(h, 0)) != 0 {
		return checkError("bad IPv4 header checksum")
	}
	return nil
}

// TestRouteHostLoopback: with HostLoopback, TCP and UDP to the gateway's
// address go out to the host loopback address (checksums right), replies
// come back from the gateway's address; ICMP is still the gateway's.
func TestRouteHostLoopback(t *testing.T) {
	hostLo := netip.MustParseAddr("192.0.0.1")
	tbl := newNAT(t)
	up := &fakeUplink{mtu: 1500, keep: true}
	g, _ := newGateway(t, func(c *gateway.Config) { c.NAT, c.Uplink, c.HostLoopback = tbl, up, hostLo })
	for _, tt := range []struct {
		name  string
		frame []byte
	}{{"tcp", tcpSYN(t)}, {"udp", udpToGateway(t)}} {
		t.Run(tt.name, func(t *testing.T) {
			write(t, g, tt.frame)
			expectNoReply(t, g)
			sent := up.Take()
			if len(sent) != 1 {
				t.Fatalf("uplink got %d datagrams, want 1", len(sent))
			}
			if err := checkPacket(withEth(sent[0])); err != nil {
				t.Fatalf("sent: %v", err)
			}
			p := decode(t, withEth(sent[0]))
			ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip.SrcIP.String() != extIP.String() || ip.DstIP.String() != hostLo.String() {
				t.Fatalf("sent %s -> %s, want %s -> %s", ip.SrcIP, ip.DstIP, extIP, hostLo)
			}
			// The reply: from the host loopback address to the uplink.
			reply := withEth(append([]byte(nil), sent[0]...))
			r := reply[14:]
			copy(r[12:16], hostLo.AsSlice())
			copy(r[16:20], extIP.AsSlice())
			hl := 20
			sp, dp := binary.BigEndian.Uint16(r[hl:]), binary.BigEndian.Uint16(r[hl+2:])
			binary.BigEndian.PutUint16(r[hl:], dp)
			binary.BigEndian.PutUint16(r[hl+2:], sp)
			if r[9] == 6 {
				r[hl+13] = 0x12 // SYN ACK
			}
			fixChecksums(reply)
			g.FromUplink(reply[14:])
			got := read(t, g)
			if err := checkPacket(got); err != nil {
				t.Fatalf("delivered: %v", err)
			}
			ip = decode(t, got).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip.SrcIP.String() != gwIP.String() || ip.DstIP.String() != aIP.String() {
				t.Errorf("delivered %s -> %s, want %s -> %s", ip.SrcIP, ip.DstIP, gwIP, aIP)
			}
		})
	}
	t.Run("icmp stays the gateway's", func(t *testing.T) {
		write(t, g, echoRequest(t))
		read(t, g)
		if n := len(up.Take()); n != 0 {
			t.Errorf("a ping to the gateway went to the uplink")
		}
	})
}

func TestHostLoopbackNeedsRoute(t *testing.T) {
	_, err := gateway.New(gateway.Config{MAC: gwMAC, Addr: gwNet, HostLoopback: netip.MustParseAddr("192.0.0.1")})
	if !errors.Is(err, gateway.ErrInvalidConfig) {
		t.Errorf("HostLoopback without NAT: got %v, want ErrInvalidConfig", err)
	}
}
