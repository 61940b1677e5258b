package gateway_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

var _ vswitch.Port = (*gateway.Gateway)(nil)

// TestFramesValid checks the hand-written checksums of the test frames.
func TestFramesValid(t *testing.T) {
	for name, f := range map[string]func(testing.TB) []byte{
		"echo": echoRequest, "udp": udpToGateway, "tcp": tcpSYN, "arp": arpRequest,
	} {
		t.Run(name, func(t *testing.T) {
			b := f(t)
			decode(t, b)
			if name == "arp" {
				return
			}
			if fixed := fixChecksums(append([]byte(nil), b...)); !bytes.Equal(fixed, b) {
				t.Errorf("checksums differ from gopacket's:\ngot  %x\nwant %x", b, fixed)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     gateway.Config
		wantErr bool
	}{
		{"ok", gateway.Config{MAC: gwMAC, Addr: gwNet}, false},
		{"slash 30", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("10.0.0.1/30")}, false},
		{"short mac", gateway.Config{MAC: gwMAC[:5], Addr: gwNet}, true},
		{"multicast mac", gateway.Config{MAC: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, Addr: gwNet}, true},
		{"zero mac", gateway.Config{MAC: zeroHW, Addr: gwNet}, true},
		{"no addr", gateway.Config{MAC: gwMAC}, true},
		{"ipv6", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("fd00::1/64")}, true},
		{"slash 31", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("10.0.0.1/31")}, true},
		{"slash 0", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("10.0.0.1/0")}, true},
		{"network address", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("10.90.0.0/16")}, true},
		{"broadcast address", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("10.90.255.255/16")}, true},
		{"loopback", gateway.Config{MAC: gwMAC, Addr: netip.MustParsePrefix("127.0.0.1/8")}, true},
		{"small mtu", gateway.Config{MAC: gwMAC, Addr: gwNet, MTU: 575}, true},
		{"huge mtu", gateway.Config{MAC: gwMAC, Addr: gwNet, MTU: 65536}, true},
		{"negative rate", gateway.Config{MAC: gwMAC, Addr: gwNet, ErrorRate: -1}, true},
		{"negative queue", gateway.Config{MAC: gwMAC, Addr: gwNet, QueueLen: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := gateway.New(tt.cfg)
			if tt.wantErr {
				if !errors.Is(err, gateway.ErrInvalidConfig) {
					t.Fatalf("New error = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer g.Close()
			if got := g.Name(); got != "gateway" {
				t.Errorf("Name = %q, want gateway", got)
			}
			if got := g.MAC(); !bytes.Equal(got, tt.cfg.MAC) {
				t.Errorf("MAC = %v, want %v", got, tt.cfg.MAC)
			}
			if got := g.Addr(); got != tt.cfg.Addr {
				t.Errorf("Addr = %v, want %v", got, tt.cfg.Addr)
			}
			if got := g.MTU(); got != gateway.DefaultMTU {
				t.Errorf("MTU = %d, want %d", got, gateway.DefaultMTU)
			}
		})
	}
}

func TestARPRequestForGateway(t *testing.T) {
	g, _ := newGateway(t, nil)
	write(t, g, arpRequest(t))
	got := read(t, g)
	want := frame(t,
		"02420a5a0002", // eth dst: the asker, unicast
		"027473000001", // eth src: gateway
		"0806",         // EtherType ARP
		"0001",         // hardware type Ethernet
		"0800",         // protocol type IPv4
		"06",           // hardware address length
		"04",           // protocol address length
		"0002",         // operation reply
		"027473000001", // sender hardware address: gateway
		"0a5a0001",     // sender protocol address 10.90.0.1
		"02420a5a0002", // target hardware address: container A
		"0a5a0002",     // target protocol address 10.90.0.2
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("reply:\ngot  %x\nwant %x", got, want)
	}
	// The same, field by field, as gopacket sees it.
	p := decode(t, got)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok {
		t.Fatalf("reply is not ARP: %v", p)
	}
	checkFields(t, []field{
		{"eth dst", eth.DstMAC.String(), aMAC.String()},
		{"eth src", eth.SrcMAC.String(), gwMAC.String()},
		{"eth type", eth.EthernetType, layers.EthernetTypeARP},
		{"htype", a.AddrType, layers.LinkTypeEthernet},
		{"ptype", a.Protocol, layers.EthernetTypeIPv4},
		{"hlen", a.HwAddressSize, uint8(6)},
		{"plen", a.ProtAddressSize, uint8(4)},
		{"op", a.Operation, uint16(layers.ARPReply)},
		{"sha", net.HardwareAddr(a.SourceHwAddress).String(), gwMAC.String()},
		{"spa", net.IP(a.SourceProtAddress).String(), gwIP.String()},
		{"tha", net.HardwareAddr(a.DstHwAddress).String(), aMAC.String()},
		{"tpa", net.IP(a.DstProtAddress).String(), aIP.String()},
	})
	st := g.Stats()
	if st.ARPRequests != 1 || st.ARPReplies != 1 {
		t.Errorf("ARPRequests, ARPReplies = %d, %d, want 1, 1", st.ARPRequests, st.ARPReplies)
	}
	expectNoReply(t, g)
}

// arpFrame returns an ARP packet from aMAC with the given fields.
func arpFrame(t testing.TB, op uint16, sha net.HardwareAddr, spa netip.Addr, tpa netip.Addr) []byte {
	b := arpRequest(t)
	binary.BigEndian.PutUint16(b[20:22], op)
	copy(b[22:28], sha)
	s, d := spa.As4(), tpa.As4()
	copy(b[28:32], s[:])
	copy(b[38:42], d[:])
	return b
}

func TestARP(t *testing.T) {
	other := netip.MustParseAddr("10.90.0.3")
	outside := netip.MustParseAddr("192.168.1.2")
	zero := netip.MustParseAddr("0.0.0.0")
	tests := []struct {
		name      string
		frame     func(testing.TB) []byte
		wantReply bool
		wantTPA   netip.Addr // target protocol address of the reply
		wantNeigh []netip.Addr
		stat      func(gateway.Stats) uint64
	}{
		{
			name:      "request for another address learns, no reply",
			frame:     func(t testing.TB) []byte { return arpFrame(t, 1, aMAC, aIP, other) },
			wantNeigh: []netip.Addr{aIP},
			stat:      func(s gateway.Stats) uint64 { return s.ARPOther },
		},
		{
			name:      "reply learns",
			frame:     func(t testing.TB) []byte { return arpFrame(t, 2, aMAC, aIP, gwIP) },
			wantNeigh: []netip.Addr{aIP},
			stat:      func(s gateway.Stats) uint64 { return s.ARPOther },
		},
		{
			name:      "gratuitous ARP learns",
			frame:     func(t testing.TB) []byte { return arpFrame(t, 1, aMAC, aIP, aIP) },
			wantNeigh: []netip.Addr{aIP},
			stat:      func(s gateway.Stats) uint64 { return s.ARPOther },
		},
		{
			name:      "probe for gateway answered, not learned",
			frame:     func(t testing.TB) []byte { return arpFrame(t, 1, aMAC, zero, gwIP) },
			wantReply: true,
			wantTPA:   zero,
			stat:      func(s gateway.Stats) uint64 { return s.ARPReplies },
		},
		{
			name:      "sender outside subnet answered, not learned",
			frame:     func(t testing.TB) []byte { return arpFrame(t, 1, aMAC, outside, gwIP) },
			wantReply: true,
			wantTPA:   outside,
			stat:      func(s gateway.Stats) uint64 { return s.ARPReplies },
		},
		{
			name:  "conflict with gateway address",
			frame: func(t testing.TB) []byte { return arpFrame(t, 2, aMAC, gwIP, gwIP) },
			stat:  func(s gateway.Stats) uint64 { return s.ARPConflicts },
		},
		{
			name:  "multicast sender hardware address",
			frame: func(t testing.TB) []byte { return arpFrame(t, 1, bcast, aIP, gwIP) },
			stat:  func(s gateway.Stats) uint64 { return s.Martian },
		},
		{
			name:  "unknown operation",
			frame: func(t testing.TB) []byte { return arpFrame(t, 3, aMAC, aIP, gwIP) },
			stat:  func(s gateway.Stats) uint64 { return s.Malformed },
		},
		{
			name:  "truncated",
			frame: func(t testing.TB) []byte { return arpRequest(t)[:40] },
			stat:  func(s gateway.Stats) uint64 { return s.Malformed },
		},
		{
			name: "IPv6 protocol type",
			frame: func(t testing.TB) []byte {
				b := arpRequest(t)
				b[16], b[17] = 0x86, 0xdd
				return b
			},
			stat: func(s gateway.Stats) uint64 { return s.Malformed },
		},
		{
			name: "unicast to another MAC still handled",
			frame: func(t testing.TB) []byte {
				b := arpFrame(t, 1, aMAC, aIP, gwIP)
				copy(b[0:6], []byte{2, 0, 0, 0, 0, 9})
				return b
			},
			wantReply: true,
			wantTPA:   aIP,
			wantNeigh: []netip.Addr{aIP},
			stat:      func(s gateway.Stats) uint64 { return s.ARPReplies },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			write(t, g, tt.frame(t))
			if got := tt.stat(g.Stats()); got != 1 {
				t.Errorf("counter = %d, want 1 (stats %+v)", got, g.Stats())
			}
			if tt.wantReply {
				p := decode(t, read(t, g))
				a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
				if !ok {
					t.Fatalf("reply is not ARP: %v", p)
				}
				if got := net.IP(a.DstProtAddress).String(); got != tt.wantTPA.String() {
					t.Errorf("reply tpa = %s, want %s", got, tt.wantTPA)
				}
				if got := net.HardwareAddr(a.DstHwAddress).String(); got != aMAC.String() {
					t.Errorf("reply tha = %s, want %s", got, aMAC)
				}
			}
			expectNoReply(t, g)
			var got []netip.Addr
			for _, n := range g.Neighbors() {
				got = append(got, n.IP)
			}
			if !slices.Equal(got, tt.wantNeigh) {
				t.Errorf("neighbours = %v, want %v", got, tt.wantNeigh)
			}
		})
	}
}

func TestEchoReply(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := echoRequest(t)
	write(t, g, req)
	eth, ip, icmp := icmpReply(t, read(t, g))
	checkFields(t, append(toA(eth, ip),
		field{"ihl", ip.IHL, uint8(5)},
		field{"length", ip.Length, uint16(44)},
		field{"protocol", ip.Protocol, layers.IPProtocolICMPv4},
		field{"type/code", icmp.TypeCode, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0)},
		field{"id", icmp.Id, uint16(42)},
		field{"seq", icmp.Seq, uint16(1)},
		field{"payload", string(icmp.Payload), "tapswitch ping!!"},
	))
	if got := g.Stats().EchoReplies; got != 1 {
		t.Errorf("EchoReplies = %d, want 1", got)
	}
	// The request taught the gateway where container A is.
	if mac, ok := g.Lookup(aIP); !ok || mac.String() != aMAC.String() {
		t.Errorf("Lookup(%s) = %v, %v, want %v, true", aIP, mac, ok, aMAC)
	}
}

// TestEchoReplyPadded checks that Ethernet padding after the datagram is
// not echoed.
func TestEchoReplyPadded(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := append(echoRequest(t), 0, 0, 0, 0, 0, 0) // padded to 64 bytes
	write(t, g, req)
	p := decode(t, read(t, g))
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if got := string(icmp.Payload); got != "tapswitch ping!!" {
		t.Errorf("payload = %q, want %q", got, "tapswitch ping!!")
	}
}

// TestDropped covers IPv4 frames the gateway drops without a reply, and the
// counter each one increments.
func TestDropped(t *testing.T) {
	mutate := func(base func(testing.TB) []byte, fix bool, f func(b []byte) []byte) func(testing.TB) []byte {
		return func(t testing.TB) []byte {
			b := f(base(t))
			if fix {
				fixChecksums(b)
			}
			return b
		}
	}
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		stat  func(gateway.Stats) uint64
	}{
		{"bad ipv4 checksum", mutate(echoRequest, false, func(b []byte) []byte { b[24] ^= 0xff; return b }),
			func(s gateway.Stats) uint64 { return s.BadChecksum }},
		{"bad icmp checksum", mutate(echoRequest, false, func(b []byte) []byte { b[36] ^= 0xff; return b }),
			func(s gateway.Stats) uint64 { return s.BadChecksum }},
		{"bad udp checksum", mutate(udpToGateway, false, func(b []byte) []byte { b[40] ^= 0xff; return b }),
			func(s gateway.Stats) uint64 { return s.BadChecksum }},
		{"bad tcp checksum", mutate(tcpSYN, false, func(b []byte) []byte { b[50] ^= 0xff; return b }),
			func(s gateway.Stats) uint64 { return s.BadChecksum }},
		{"version 6 in ipv4 frame", mutate(echoRequest, true, func(b []byte) []byte { b[14] = 0x65; return b }),
			func(s gateway.Stats) uint64 { return s.BadIPv4 }},
		{"ihl 4", mutate(echoRequest, true, func(b []byte) []byte { b[14] = 0x44; return b }),
			func(s gateway.Stats) uint64 { return s.BadIPv4 }},
		{"total length past frame", mutate(echoRequest, true, func(b []byte) []byte { b[17]++; return b }),
			func(s gateway.Stats) uint64 { return s.BadIPv4 }},
		{"total length below ihl", mutate(echoRequest, true, func(b []byte) []byte { b[16], b[17] = 0, 19; return b }),
			func(s gateway.Stats) uint64 { return s.BadIPv4 }},
		{"truncated ipv4 header", func(t testing.TB) []byte { return echoRequest(t)[:30] },
			func(s gateway.Stats) uint64 { return s.Malformed }},
		{"truncated icmp", mutate(echoRequest, true, func(b []byte) []byte { b[17] = 24; return b[:38] }),
			func(s gateway.Stats) uint64 { return s.Malformed }},
		{"udp length past datagram", mutate(udpToGateway, true, func(b []byte) []byte { b[39] = 14; return b }),
			func(s gateway.Stats) uint64 { return s.Malformed }},
		{"tcp data offset past segment", mutate(tcpSYN, true, func(b []byte) []byte { b[46] = 0x60; return b }),
			func(s gateway.Stats) uint64 { return s.Malformed }},
		{"first fragment to gateway", mutate(echoRequest, true, func(b []byte) []byte { b[20] = 0x20; return b }),
			func(s gateway.Stats) uint64 { return s.Fragments }},
		{"later fragment to gateway", mutate(echoRequest, true, func(b []byte) []byte { b[20], b[21] = 0, 1; return b }),
			func(s gateway.Stats) uint64 { return s.Fragments }},
		{"source is gateway", mutate(echoRequest, true, func(b []byte) []byte { b[29] = 1; return b }),
			func(s gateway.Stats) uint64 { return s.Martian }},
		{"source 0.0.0.0", mutate(echoRequest, true, func(b []byte) []byte { copy(b[26:30], []byte{0, 0, 0, 0}); return b }),
			func(s gateway.Stats) uint64 { return s.Martian }},
		{"source multicast MAC", mutate(echoRequest, false, func(b []byte) []byte { b[6] |= 1; return b }),
			func(s gateway.Stats) uint64 { return s.Martian }},
		{"destination loopback", mutate(echoRequest, true, func(b []byte) []byte { copy(b[30:34], []byte{127, 0, 0, 1}); return b }),
			func(s gateway.Stats) uint64 { return s.Martian }},
		{"echo reply to gateway", mutate(echoRequest, true, func(b []byte) []byte { b[34] = 0; return b }),
			func(s gateway.Stats) uint64 { return s.Ignored }},
		{"tcp rst to gateway", mutate(tcpSYN, true, func(b []byte) []byte { b[47] = 0x04; return b }),
			func(s gateway.Stats) uint64 { return s.Ignored }},
		{"ipv4 for another MAC", mutate(echoRequest, false, func(b []byte) []byte { b[5] = 9; return b }),
			func(s gateway.Stats) uint64 { return s.NotForUs }},
		{"ipv4 broadcast frame", mutate(echoRequest, false, func(b []byte) []byte { copy(b[0:6], bcast); return b }),
			func(s gateway.Stats) uint64 { return s.NotForUs }},
		{"ipv6", mutate(echoRequest, false, func(b []byte) []byte { b[12], b[13] = 0x86, 0xdd; return b }),
			func(s gateway.Stats) uint64 { return s.IPv6 }},
		{"802.1Q tagged", mutate(echoRequest, false, func(b []byte) []byte { b[12], b[13] = 0x81, 0x00; return b }),
			func(s gateway.Stats) uint64 { return s.OtherEtherType }},
		{"runt", func(t testing.TB) []byte { return echoRequest(t)[:13] },
			func(s gateway.Stats) uint64 { return s.Malformed }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			write(t, g, tt.frame(t))
			if got := tt.stat(g.Stats()); got != 1 {
				t.Errorf("counter = %d, want 1 (stats %+v)", got, g.Stats())
			}
			expectNoReply(t, g)
		})
	}
}

// checkUnreachable checks that reply is an ICMP destination unreachable
// with the given code from the gateway to container A, quoting the first
// quoteLen bytes of the datagram in the Ethernet frame orig.
func checkUnreachable(t *testing.T, reply, orig []byte, code uint8, quoteLen int) {
	t.Helper()
	eth, ip, icmp := icmpReply(t, reply)
	checkFields(t, append(toA(eth, ip),
		field{"tos", ip.TOS, uint8(0xc0)},
		field{"length", int(ip.Length), 20 + 8 + quoteLen},
		field{"type/code", icmp.TypeCode, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, code)},
		field{"unused", uint32(icmp.Id)<<16 | uint32(icmp.Seq), uint32(0)},
	))
	if want := orig[14 : 14+quoteLen]; !bytes.Equal(icmp.Payload, want) {
		t.Errorf("quote:\ngot  %x\nwant %x", icmp.Payload, want)
	}
}

func TestPortUnreachable(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := udpToGateway(t)
	write(t, g, req)
	checkUnreachable(t, read(t, g), req, layers.ICMPv4CodePort, 33) // the whole datagram
	if got := g.Stats().ICMPErrors; got != 1 {
		t.Errorf("ICMPErrors = %d, want 1", got)
	}
}

func TestProtocolUnreachable(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := udpToGateway(t)
	req[23] = 47 // GRE
	fixChecksums(req)
	write(t, g, req)
	checkUnreachable(t, read(t, g), req, layers.ICMPv4CodeProtocol, 33)
}

func TestUDPWithoutChecksum(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := udpToGateway(t)
	req[40], req[41] = 0, 0 // no checksum (RFC 768)
	write(t, g, req)
	checkUnreachable(t, read(t, g), req, layers.ICMPv4CodePort, 33)
}

func TestNetUnreachable(t *testing.T) {
	tests := []struct {
		name     string
		dataLen  int
		quoteLen int
	}{
		{"small", 8, 20 + 8 + 8},
		{"fits exactly", 520, 548},
		{"truncated to 576", 1400, 548},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			req := toElsewhere(t, netip.MustParseAddr("192.0.2.7"), tt.dataLen)
			write(t, g, req)
			checkUnreachable(t, read(t, g), req, layers.ICMPv4CodeNet, tt.quoteLen)
		})
	}
}

// TestNoICMPError covers the datagrams RFC 1812 4.3.2.7 forbids errors about.
func TestNoICMPError(t *testing.T) {
	elsewhere := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name      string
		frame     func(t testing.TB) []byte
		wantError bool
	}{
		{"icmp error", func(t testing.TB) []byte {
			b := toElsewhere(t, elsewhere, 28)
			b[34] = 3 // destination unreachable
			return fixChecksums(b)
		}, false},
		{"unknown icmp type", func(t testing.TB) []byte {
			b := toElsewhere(t, elsewhere, 28)
			b[34] = 42
			return fixChecksums(b)
		}, false},
		{"limited broadcast", func(t testing.TB) []byte { return toElsewhere(t, netip.MustParseAddr("255.255.255.255"), 8) }, false},
		{"subnet broadcast", func(t testing.TB) []byte { return toElsewhere(t, netip.MustParseAddr("10.90.255.255"), 8) }, false},
		{"multicast", func(t testing.TB) []byte { return toElsewhere(t, netip.MustParseAddr("224.0.0.251"), 8) }, false},
		{"non-first fragment", func(t testing.TB) []byte {
			b := toElsewhere(t, elsewhere, 8)
			b[20], b[21] = 0x00, 0x10 // offset 16 * 8 bytes
			return fixChecksums(b)
		}, false},
		{"first fragment", func(t testing.TB) []byte {
			b := toElsewhere(t, elsewhere, 8)
			b[20] = 0x20 // more fragments, offset 0
			return fixChecksums(b)
		}, true},
		{"udp elsewhere", func(t testing.TB) []byte {
			b := udpToGateway(t)
			copy(b[30:34], []byte{192, 0, 2, 7})
			return fixChecksums(b)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			write(t, g, tt.frame(t))
			st := g.Stats()
			if tt.wantError {
				if st.ICMPErrors != 1 {
					t.Errorf("ICMPErrors = %d, want 1 (stats %+v)", st.ICMPErrors, st)
				}
				decode(t, read(t, g))
				return
			}
			if st.NoErrorAllowed != 1 {
				t.Errorf("NoErrorAllowed = %d, want 1 (stats %+v)", st.NoErrorAllowed, st)
			}
			expectNoReply(t, g)
		})
	}
}

func TestTCPReset(t *testing.T) {
	// tcpSegment turns the SYN into a segment with the given flags,
	// acknowledgment number and data.
	tcpSegment := func(t testing.TB, flags byte, ack uint32, data string) []byte {
		b := tcpSYN(t)
		b[47] = flags
		binary.BigEndian.PutUint32(b[42:46], ack)
		b = append(b, data...)
		binary.BigEndian.PutUint16(b[16:18], uint16(len(b)-14))
		return fixChecksums(b)
	}
	tests := []struct {
		name      string
		frame     []byte
		wantSeq   uint32
		wantAck   uint32
		wantFlags string
	}{
		// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, SYN counts 1.
		{"syn", tcpSYN(t), 0, 0x01020305, "RST,ACK"},
		{"syn with data", tcpSegment(t, 0x02, 0, "abc"), 0, 0x01020308, "RST,ACK"},
		{"fin with data", tcpSegment(t, 0x01, 0, "abcd"), 0, 0x01020309, "RST,ACK"},
		{"bare segment", tcpSegment(t, 0x00, 0, ""), 0, 0x01020304, "RST,ACK"},
		// <SEQ=SEG.ACK><CTL=RST>
		{"ack", tcpSegment(t, 0x10, 0xa0b0c0d0, ""), 0xa0b0c0d0, 0, "RST"},
		{"psh ack with data", tcpSegment(t, 0x18, 0x11223344, "data"), 0x11223344, 0, "RST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			write(t, g, tt.frame)
			p := decode(t, read(t, g))
			ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if ip == nil || tcp == nil {
				t.Fatalf("reply is not TCP: %v", p)
			}
			flags := "RST"
			if tcp.ACK {
				flags += ",ACK"
			}
			if tcp.SYN || tcp.FIN || tcp.PSH || tcp.URG || !tcp.RST {
				flags += ",other"
			}
			checkFields(t, []field{
				{"ip src", ip.SrcIP.String(), gwIP.String()},
				{"ip dst", ip.DstIP.String(), aIP.String()},
				{"ttl", ip.TTL, uint8(64)},
				{"src port", tcp.SrcPort, layers.TCPPort(80)},
				{"dst port", tcp.DstPort, layers.TCPPort(40001)},
				{"seq", tcp.Seq, tt.wantSeq},
				{"ack", tcp.Ack, tt.wantAck},
				{"flags", flags, tt.wantFlags},
				{"window", tcp.Window, uint16(0)},
				{"data offset", tcp.DataOffset, uint8(5)},
				{"payload", len(tcp.Payload), 0},
			})
			if got := g.Stats().TCPResets; got != 1 {
				t.Errorf("TCPResets = %d, want 1", got)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	const rate = 5
	g, clk := newGateway(t, func(c *gateway.Config) { c.ErrorRate = rate })
	req := toElsewhere(t, netip.MustParseAddr("192.0.2.7"), 8)
	send := func(n int) {
		for range n {
			write(t, g, req)
		}
	}
	check := func(step string, wantErrors, wantLimited uint64) {
		t.Helper()
		st := g.Stats()
		if st.ICMPErrors != wantErrors || st.RateLimited != wantLimited {
			t.Errorf("%s: ICMPErrors, RateLimited = %d, %d, want %d, %d",
				step, st.ICMPErrors, st.RateLimited, wantErrors, wantLimited)
		}
	}
	send(rate + 3)
	check("burst", rate, 3)

	clk.Advance(time.Second / rate) // one token
	send(2)
	check("one token", rate+1, 4)

	clk.Advance(time.Second/rate - time.Nanosecond) // not quite a token
	send(1)
	check("almost a token", rate+1, 5)

	clk.Advance(time.Hour) // the bucket holds at most one second's worth
	send(rate + 1)
	check("refill", 2*rate+1, 6)

	clk.Advance(-time.Minute) // a clock going backwards adds nothing
	send(1)
	check("backwards", 2*rate+1, 7)

	// Echo replies are not limited.
	for range 3 * rate {
		write(t, g, echoRequest(t))
	}
	if got := g.Stats().EchoReplies; got != 3*rate {
		t.Errorf("EchoReplies = %d, want %d", got, 3*rate)
	}
}

func TestQueueFull(t *testing.T) {
	g, _ := newGateway(t, func(c *gateway.Config) { c.QueueLen = 2 })
	for range 5 {
		write(t, g, echoRequest(t))
	}
	st := g.Stats()
	if st.EchoReplies != 2 || st.QueueDrops != 3 {
		t.Errorf("EchoReplies, QueueDrops = %d, %d, want 2, 3", st.EchoReplies, st.QueueDrops)
	}
	if got := g.Queued(); got != 2 {
		t.Errorf("Queued = %d, want 2", got)
	}
	read(t, g)
	read(t, g)
	expectNoReply(t, g)
	write(t, g, echoRequest(t)) // room again
	decode(t, read(t, g))
}

func TestClose(t *testing.T) {
	g, _ := newGateway(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, vswitch.MaxFrame), 0)
		done <- err
	}()
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked 10s after Close")
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := g.Read(make([]byte, vswitch.MaxFrame), 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read = %v, want net.ErrClosed", err)
	}
	if _, err := g.Write(withVnetHdr(echoRequest(t)), vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write = %v, want net.ErrClosed", err)
	}
}

// TestCloseWithQueued checks that queued replies do not keep Read from
// reporting the close.
func TestCloseWithQueued(t *testing.T) {
	g, _ := newGateway(t, nil)
	write(t, g, echoRequest(t))
	g.Close()
	if _, err := g.Read(make([]byte, vswitch.MaxFrame), 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read = %v, want net.ErrClosed", err)
	}
}

func TestRead(t *testing.T) {
	g, _ := newGateway(t, nil)
	write(t, g, arpRequest(t))
	buf := bytes.Repeat([]byte{0xaa}, 100+vswitch.MaxFrame)
	n, err := g.Read(buf, 100)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if want := vswitch.VnetHdrLen + 42; n != want {
		t.Fatalf("Read n = %d, want %d", n, want)
	}
	if got := buf[100 : 100+vswitch.VnetHdrLen]; !bytes.Equal(got, make([]byte, vswitch.VnetHdrLen)) {
		t.Errorf("virtio_net_hdr = %x, want zeros", got)
	}
	if got := buf[:100]; !bytes.Equal(got, bytes.Repeat([]byte{0xaa}, 100)) {
		t.Errorf("Read wrote before offset")
	}
	if got := buf[100+n]; got != 0xaa {
		t.Errorf("Read wrote past n")
	}
	decode(t, buf[100+vswitch.VnetHdrLen:100+n])

	// A buffer too small for the frame.
	write(t, g, arpRequest(t))
	if _, err := g.Read(make([]byte, 20), 0); !errors.Is(err, io.ErrShortBuffer) {
		t.Errorf("Read into 20 bytes = %v, want io.ErrShortBuffer", err)
	}
}

func TestWriteVnetHdr(t *testing.T) {
	tests := []struct {
		name    string
		hdr     []byte
		wantOff uint64
	}{
		{"zero", make([]byte, 10), 0},
		{"data valid", []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0},
		{"needs csum", []byte{1, 0, 0, 0, 0, 0, 34, 0, 2, 0}, 1},
		{"gso tcpv4", []byte{0, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0}, 1},
		{"gso udp_l4", []byte{0, 5, 42, 0, 0xa8, 5, 0, 0, 0, 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newGateway(t, nil)
			buf := append(append([]byte(nil), tt.hdr...), echoRequest(t)...)
			n, err := g.Write(buf, 0)
			if err != nil || n != len(buf) {
				t.Fatalf("Write = %d, %v, want %d, nil", n, err, len(buf))
			}
			if got := g.Stats().Offload; got != tt.wantOff {
				t.Errorf("Offload = %d, want %d", got, tt.wantOff)
			}
			if got, want := g.Queued(), 1-int(tt.wantOff); got != want {
				t.Errorf("Queued = %d, want %d", got, want)
			}
		})
	}
}

func TestWriteShortAndTooBig(t *testing.T) {
	g, _ := newGateway(t, nil)
	if _, err := g.Write(make([]byte, 5), 0); err != nil {
		t.Errorf("Write of 5 bytes = %v, want nil (counted)", err)
	}
	if _, err := g.Write(make([]byte, 5), 6); err == nil {
		t.Errorf("Write with offset past buffer succeeded")
	}
	big := make([]byte, vswitch.VnetHdrLen+14+4+1501)
	if _, err := g.Write(big, 0); !errors.Is(err, vswitch.ErrFrameTooBig) {
		t.Errorf("Write of a 1501-byte payload = %v, want ErrFrameTooBig", err)
	}
	// A datagram over the MTU that fits in the VLAN slack is dropped too.
	req := toElsewhere(t, gwIP, 1501-20-8)
	write(t, g, req)
	st := g.Stats()
	if st.Malformed != 1 || st.TooBig != 2 {
		t.Errorf("Malformed, TooBig = %d, %d, want 1, 2", st.Malformed, st.TooBig)
	}
	expectNoReply(t, g)
}

func TestLargeEcho(t *testing.T) {
	g, _ := newGateway(t, nil)
	req := toElsewhere(t, gwIP, 1500-20-8) // a full-MTU ping to the gateway
	write(t, g, req)
	p := decode(t, read(t, g))
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !bytes.Equal(icmp.Payload, req[14+28:]) {
		t.Errorf("payload of %d bytes differs from the request's", len(icmp.Payload))
	}
}

func TestNeighbors(t *testing.T) {
	g, clk := newGateway(t, func(c *gateway.Config) { c.NeighTimeout = time.Minute })
	ips := []netip.Addr{
		netip.MustParseAddr("10.90.1.0"),
		netip.MustParseAddr("10.90.0.20"),
		netip.MustParseAddr("10.90.0.3"),
	}
	for i, ip := range ips {
		mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)}
		write(t, g, arpFrame(t, 1, mac, ip, gwIP))
		read(t, g)
		clk.Advance(10 * time.Second)
	}
	got := g.Neighbors()
	want := []gateway.Neighbor{
		{IP: ips[2], MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}, Age: 10 * time.Second},
		{IP: ips[1], MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Age: 20 * time.Second},
		{IP: ips[0], MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Age: 30 * time.Second},
	}
	if len(got) != len(want) {
		t.Fatalf("Neighbors = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].IP != want[i].IP || got[i].MAC.String() != want[i].MAC.String() || got[i].Age != want[i].Age {
			t.Errorf("Neighbors[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	// A moved neighbour is updated and its age reset.
	write(t, g, arpFrame(t, 2, aMAC, ips[0], gwIP))
	if mac, ok := g.Lookup(ips[0]); !ok || mac.String() != aMAC.String() {
		t.Errorf("Lookup after move = %v, %v, want %v, true", mac, ok, aMAC)
	}

	g.Forget(ips[1])
	if _, ok := g.Lookup(ips[1]); ok {
		t.Errorf("Lookup after Forget found %s", ips[1])
	}

	// 10.90.1.0 was refreshed just now, 10.90.0.3 10 s ago: 55 s on,
	// only the first is left.
	clk.Advance(55 * time.Second)
	got = g.Neighbors()
	if len(got) != 1 || got[0].IP != ips[0] || got[0].Age != 55*time.Second {
		t.Errorf("Neighbors after expiry = %+v, want only %s aged 55s", got, ips[0])
	}
	if _, ok := g.Lookup(ips[2]); ok {
		t.Errorf("Lookup found expired %s", ips[2])
	}
	if got := g.Stats().NeighLearned; got != 3 {
		t.Errorf("NeighLearned = %d, want 3", got)
	}
}

func TestNeighborLimit(t *testing.T) {
	g, clk := newGateway(t, func(c *gateway.Config) { c.MaxNeighbors = 2 })
	for i := range 3 {
		ip := netip.AddrFrom4([4]byte{10, 90, 0, byte(10 + i)})
		write(t, g, arpFrame(t, 2, net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)}, ip, gwIP))
		clk.Advance(time.Second)
	}
	var got []netip.Addr
	for _, n := range g.Neighbors() {
		got = append(got, n.IP)
	}
	want := []netip.Addr{netip.MustParseAddr("10.90.0.11"), netip.MustParseAddr("10.90.0.12")}
	if !slices.Equal(got, want) {
		t.Errorf("Neighbors = %v, want %v (oldest evicted)", got, want)
	}
	if got := g.Stats().NeighEvicted; got != 1 {
		t.Errorf("NeighEvicted = %d, want 1", got)
	}
}

// TestConcurrentWrites runs Writes from several goroutines against one
// reader; run with -race.
func TestConcurrentWrites(t *testing.T) {
	const writers, perWriter = 4, 200
	g, _ := newGateway(t, func(c *gateway.Config) { c.QueueLen = 16; c.ErrorRate = 1000000 })
	frames := [][]byte{arpRequest(t), echoRequest(t), udpToGateway(t), tcpSYN(t), toElsewhere(t, netip.MustParseAddr("192.0.2.1"), 8)}

	var readN int
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, vswitch.MaxFrame)
		for {
			n, err := g.Read(buf, 0)
			if err != nil {
				return
			}
			if err := checkPacket(buf[vswitch.VnetHdrLen:n]); err != nil {
				t.Errorf("reply: %v", err)
			}
			readN++
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			buf := make([]byte, vswitch.MaxFrame)
			for i := range perWriter {
				f := frames[(w+i)%len(frames)]
				copy(buf[vswitch.VnetHdrLen:], f)
				if _, err := g.Write(buf[:vswitch.VnetHdrLen+len(f)], 0); err != nil {
					t.Errorf("Write: %v", err)
				}
				if i%50 == 0 {
					g.Neighbors()
					g.Stats()
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for g.Queued() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	g.Close()
	<-readDone

	st := g.Stats()
	replies := st.ARPReplies + st.EchoReplies + st.ICMPErrors + st.TCPResets
	if got, want := replies+st.QueueDrops, uint64(writers*perWriter); got != want {
		t.Errorf("replies + drops = %d, want %d (stats %+v)", got, want, st)
	}
	if uint64(readN) != replies {
		t.Errorf("read %d replies, queued %d", readN, replies)
	}
}

func BenchmarkEcho(b *testing.B) {
	g, _ := newGateway(b, nil)
	in := withVnetHdr(echoRequest(b))
	out := make([]byte, vswitch.MaxFrame)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Write(in, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
		if _, err := g.Read(out, 0); err != nil {
			b.Fatal(err)
		}
	}
}
