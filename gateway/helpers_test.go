package gateway_test

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// Addresses used throughout the tests.
var (
	gwMAC  = net.HardwareAddr{0x02, 0x74, 0x73, 0x00, 0x00, 0x01}
	gwIP   = netip.MustParseAddr("10.90.0.1")
	gwNet  = netip.MustParsePrefix("10.90.0.1/16")
	aMAC   = net.HardwareAddr{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02} // container A
	aIP    = netip.MustParseAddr("10.90.0.2")
	bcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroHW = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// fakeClock is an injectable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newGateway returns a gateway at gwNet with a fake clock; mod may change
// the config first.
func newGateway(t testing.TB, mod func(*gateway.Config)) (*gateway.Gateway, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg := gateway.Config{MAC: gwMAC, Addr: gwNet, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g, clk
}

// frame joins hex fields (spaces allowed) into bytes.
func frame(t testing.TB, fields ...string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(fields, ""), " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test frame: %v", err)
	}
	return b
}

// write hands the Ethernet frame eth to g behind a zero virtio_net_hdr, at
// the datapath's usual offset, and fails the test on error.
func write(t testing.TB, g *gateway.Gateway, eth []byte) {
	t.Helper()
	if _, err := g.Write(withVnetHdr(eth), vswitch.Headroom); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// withVnetHdr returns a buffer of Headroom garbage bytes, a zero
// virtio_net_hdr and eth.
func withVnetHdr(eth []byte) []byte {
	buf := make([]byte, vswitch.Headroom+vswitch.VnetHdrLen+len(eth))
	for i := range vswitch.Headroom {
		buf[i] = 0xee
	}
	copy(buf[vswitch.Headroom+vswitch.VnetHdrLen:], eth)
	return buf
}

// read returns the next queued reply (Ethernet frame only), failing if none
// is queued or the virtio_net_hdr is not zero.
func read(t testing.TB, g *gateway.Gateway) []byte {
	t.Helper()
	if g.Queued() == 0 {
		t.Fatalf("no reply queued")
	}
	buf := make([]byte, vswitch.Headroom+vswitch.MaxFrame)
	for i := range buf {
		buf[i] = 0xaa // Read must overwrite the header
	}
	n, err := g.Read(buf, vswitch.Headroom)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	out := buf[vswitch.Headroom : vswitch.Headroom+n]
	if n < vswitch.VnetHdrLen {
		t.Fatalf("Read returned %d bytes, less than a virtio_net_hdr", n)
	}
	if hdr := out[:vswitch.VnetHdrLen]; string(hdr) != string(make([]byte, vswitch.VnetHdrLen)) {
		t.Fatalf("virtio_net_hdr = %x, want zeros", hdr)
	}
	return append([]byte(nil), out[vswitch.VnetHdrLen:]...)
}

// expectNoReply fails if a reply is queued.
func expectNoReply(t testing.TB, g *gateway.Gateway) {
	t.Helper()
	if n := g.Queued(); n != 0 {
		t.Fatalf("%d replies queued, want none", n)
	}
}

// decode decodes an Ethernet frame with gopacket, failing on any decode
// error or bad IPv4, ICMP, UDP or TCP checksum.
func decode(t testing.TB, b []byte) gopacket.Packet {
	t.Helper()
	if err := checkPacket(b); err != nil {
		t.Fatalf("%v\n%x", err, b)
	}
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
}

type checkError string

func (e checkError) Error() string { return string(e) }

// checkPacket is decode's check without testing.TB, for the fuzz test.
func checkPacket(b []byte) error {
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return checkError("gopacket decode error: " + el.Error().Error())
	}
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
			if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
				return err
			}
		}
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
			if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
				return err
			}
		}
	}
	err, bad := p.VerifyChecksums()
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return checkError("bad checksum in layer " + bad[0].Layer.LayerType().String())
	}
	return nil
}

// fixChecksums recomputes, in place, the IPv4 header checksum and the ICMP,
// UDP or TCP checksum of an Ethernet frame whose IPv4 total length is
// right (or only the header checksum if the total length is past the
// frame). It uses gopacket's RFC 1071 code, independent of the package's.
// A zero UDP checksum stays zero.
func fixChecksums(b []byte) []byte {
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], gopacket.FoldChecksum(gopacket.ComputeChecksum(ip[:ihl], 0)))
	if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 || total > len(ip) || total < ihl {
		return b // not the first fragment or a bad length: no transport header
	}
	pl := ip[ihl:total]
	pseudo := func(proto byte) uint32 {
		ph := append(append([]byte(nil), ip[12:20]...), 0, proto, byte(len(pl)>>8), byte(len(pl)))
		return gopacket.ComputeChecksum(ph, 0)
	}
	switch ip[9] {
	case 1:
		binary.BigEndian.PutUint16(pl[2:4], 0)
		binary.BigEndian.PutUint16(pl[2:4], gopacket.FoldChecksum(gopacket.ComputeChecksum(pl, 0)))
	case 17:
		if binary.BigEndian.Uint16(pl[6:8]) != 0 {
			binary.BigEndian.PutUint16(pl[6:8], 0)
			binary.BigEndian.PutUint16(pl[6:8], gopacket.FoldChecksum(gopacket.ComputeChecksum(pl, pseudo(17))))
		}
	case 6:
		binary.BigEndian.PutUint16(pl[16:18], 0)
		binary.BigEndian.PutUint16(pl[16:18], gopacket.FoldChecksum(gopacket.ComputeChecksum(pl, pseudo(6))))
	}
	return b
}

// Hand-written frames. Checksums were computed separately and are checked
// by TestFramesValid.

func arpRequest(t testing.TB) []byte {
	return frame(t,
		"ffffffffffff", // eth dst: broadcast
		"02420a5a0002", // eth src: container A
		"0806",         // EtherType ARP
		"0001",         // hardware type Ethernet
		"0800",         // protocol type IPv4
		"06",           // hardware address length
		"04",           // protocol address length
		"0001",         // operation request
		"02420a5a0002", // sender hardware address: container A
		"0a5a0002",     // sender protocol address 10.90.0.2
		"000000000000", // target hardware address: unknown
		"0a5a0001",     // target protocol address 10.90.0.1 (gateway)
	)
}

// fromAToGateway returns the Ethernet and IPv4 header fields of a datagram
// from container A (10.90.0.2) to the gateway (10.90.0.1), DF set, TTL 64,
// with the fields that differ given.
func fromAToGateway(totalLen, id, proto, hdrChecksum string) []string {
	return []string{
		"027473000001", // eth dst: gateway
		"02420a5a0002", // eth src: container A
		"0800",         // EtherType IPv4
		"45",           // version 4, IHL 5
		"00",           // TOS
		totalLen,       // total length
		id,             // identification
		"4000",         // DF, fragment offset 0
		"40",           // TTL 64
		proto,          // protocol
		hdrChecksum,    // header checksum
		"0a5a0002",     // source 10.90.0.2
		"0a5a0001",     // destination 10.90.0.1
	}
}

func echoRequest(t testing.TB) []byte {
	// Total length 44, identification, protocol ICMP, header checksum.
	return frame(t, append(fromAToGateway("002c", "1234", "01", "13e7"),
		"08",   // ICMP type echo request
		"00",   // code 0
		"bf20", // ICMP checksum
		"002a", // identifier 42
		"0001", // sequence number 1
		hex.EncodeToString([]byte("tapswitch ping!!")), // data, 16 bytes
	)...)
}

func udpToGateway(t testing.TB) []byte {
	// Total length 33, identification, protocol UDP, header checksum.
	return frame(t, append(fromAToGateway("0021", "1235", "11", "13e1"),
		"9c40",       // source port 40000
		"270f",       // destination port 9999
		"000d",       // UDP length 13
		"e3fb",       // UDP checksum
		"68656c6c6f", // "hello"
	)...)
}

func tcpSYN(t testing.TB) []byte {
	// Total length 40, identification, protocol TCP, header checksum.
	return frame(t, append(fromAToGateway("0028", "1236", "06", "13e4"),
		"9c41",     // source port 40001
		"0050",     // destination port 80
		"01020304", // sequence number
		"00000000", // acknowledgment number
		"50",       // data offset 5
		"02",       // flags SYN
		"faf0",     // window
		"ffa3",     // checksum
		"0000",     // urgent pointer
	)...)
}

// toElsewhere returns an ICMP echo request from container A to dst through
// the gateway, with a data of n bytes.
func toElsewhere(t testing.TB, dst netip.Addr, n int) []byte {
	b := frame(t,
		"027473000001", // eth dst: gateway
		"02420a5a0002", // eth src: container A
		"0800",         // EtherType IPv4
		"45",           // version 4, IHL 5
		"00",           // TOS
		"0000",         // total length, below
		"4321",         // identification
		"0000",         // no flags
		"40",           // TTL 64
		"01",           // protocol ICMP
		"0000",         // header checksum, below
		"0a5a0002",     // source 10.90.0.2
		"00000000",     // destination, below
		"08",           // echo request
		"00",           // code 0
		"0000",         // ICMP checksum, below
		"0007",         // identifier
		"0009",         // sequence number
	)
	for i := range n {
		b = append(b, byte(i))
	}
	binary.BigEndian.PutUint16(b[16:18], uint16(len(b)-14))
	a := dst.As4()
	copy(b[30:34], a[:])
	return fixChecksums(b)
}

// field is one field of a decoded packet: its name, its value and the value
// it should have.
type field struct {
	name      string
	got, want any
}

// checkFields reports every field whose value is not the one wanted.
func checkFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

// icmpReply decodes reply as an ICMPv4 packet in an Ethernet frame.
func icmpReply(t *testing.T, reply []byte) (*layers.Ethernet, *layers.IPv4, *layers.ICMPv4) {
	t.Helper()
	p := decode(t, reply)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil {
		t.Fatalf("reply is not ICMPv4: %v", p)
	}
	return eth, ip, icmp
}

// toA are the fields every IPv4 answer of the gateway to container A has.
func toA(eth *layers.Ethernet, ip *layers.IPv4) []field {
	return []field{
		{"eth dst", eth.DstMAC.String(), aMAC.String()},
		{"eth src", eth.SrcMAC.String(), gwMAC.String()},
		{"ip src", ip.SrcIP.String(), gwIP.String()},
		{"ip dst", ip.DstIP.String(), aIP.String()},
		{"ttl", ip.TTL, uint8(64)},
	}
}
