package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// unhex decodes a test frame written as commented hex: everything after a
// '#' on a line is ignored, spaces too.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// udp4 is an IPv4/UDP datagram, 10.0.0.2:1234 -> 10.0.0.1:53, payload
// "hi!!", both checksums correct, followed by 2 bytes of padding.
const udp4 = `
45 00 00 20   # version 4, IHL 5, total length 32
12 34 40 00   # id 0x1234, DF
40 11 00 00   # TTL 64, UDP, header checksum (filled by the test)
0a 00 00 02   # source
0a 00 00 01   # destination
04 d2 00 35   # ports 1234 -> 53
00 0c 00 00   # UDP length 12, checksum (filled)
68 69 21 21   # "hi!!"
00 00         # padding`

func udp4Packet(t testing.TB) []byte {
	b := unhex(t, udp4)
	h := IPv4(b[:32])
	h.UpdateChecksum()
	u := UDP(h.Payload())
	u.SetChecksum(UDPChecksum(u, h.PseudoSum(len(u))))
	return b
}

func TestParseIPv4(t *testing.T) {
	good := udp4Packet(t)
	for _, tc := range []struct {
		name  string
		mod   func(b []byte) []byte
		err   error
		total int
	}{
		{"valid, padding cut", func(b []byte) []byte { return b }, nil, 32},
		{"short", func(b []byte) []byte { return b[:19] }, ErrTooShort, 0},
		{"version 6", func(b []byte) []byte { b[0] = 0x65; return b }, ErrBadHeader, 0},
		{"IHL 4", func(b []byte) []byte { b[0] = 0x44; return b }, ErrBadHeader, 0},
		{"total under IHL", func(b []byte) []byte { b[3] = 19; return b }, ErrBadHeader, 0},
		{"total past the bytes", func(b []byte) []byte { return b[:31] }, ErrBadHeader, 0},
		{"IHL past total", func(b []byte) []byte { b[0] = 0x4f; return b }, ErrBadHeader, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(append([]byte(nil), good...))
			h, err := ParseIPv4(b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(h) != tc.total {
				t.Errorf("len = %d, want %d", len(h), tc.total)
			}
		})
	}
}

func TestIPv4Fields(t *testing.T) {
	h, err := ParseIPv4(udp4Packet(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Src(), [4]byte{10, 0, 0, 2}; got != want {
		t.Errorf("Src = %v, want %v", got, want)
	}
	if got, want := h.Dst(), [4]byte{10, 0, 0, 1}; got != want {
		t.Errorf("Dst = %v, want %v", got, want)
	}
	if h.Protocol() != ProtoUDP || h.TTL() != 64 || h.ID() != 0x1234 || !h.DontFragment() || h.IsFragment() || h.HeaderLen() != 20 {
		t.Errorf("fields: proto %d ttl %d id %#x df %v frag %v hl %d", h.Protocol(), h.TTL(), h.ID(), h.DontFragment(), h.IsFragment(), h.HeaderLen())
	}
	if !h.HeaderValid() {
		t.Error("header checksum invalid")
	}
	u, err := ParseUDP(h.Payload())
	if err != nil {
		t.Fatal(err)
	}
	if u.SrcPort() != 1234 || u.DstPort() != 53 || u.Length() != 12 || string(u.Payload()) != "hi!!" {
		t.Errorf("udp: %d -> %d len %d %q", u.SrcPort(), u.DstPort(), u.Length(), u.Payload())
	}
	if c := checksum.Checksum(u, h.PseudoSum(len(u))); c != 0 {
		t.Errorf("udp checksum check = %#x, want 0", c)
	}
	h.DecTTL()
	if h.TTL() != 63 || !h.HeaderValid() {
		t.Errorf("after DecTTL: ttl %d, header valid %v", h.TTL(), h.HeaderValid())
	}
	h.AdjustChecksum(checksum.DeltaAddr4(h.Src(), [4]byte{192, 0, 2, 9}))
	h.SetSrc([4]byte{192, 0, 2, 9})
	if !h.HeaderValid() {
		t.Error("after SetSrc + AdjustChecksum: header invalid")
	}
}

func TestIPv4HeaderPut(t *testing.T) {
	b := make([]byte, 20)
	h := IPv4Header{TOS: 0xc0, TotalLen: 20, ID: 7, FlagsFrag: IPv4FlagDF, TTL: DefaultTTL, Protocol: ProtoICMP, Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{10, 0, 0, 2}}
	h.Put(b)
	want := unhex(t, `45 c0 0014 0007 4000 40 01 0000 0a000001 0a000002`) // checksum zeroed below
	v := IPv4(b)
	c := v.Checksum()
	v.SetChecksum(0)
	if string(b) != string(want) {
		t.Errorf("header\n got %x\nwant %x", b, want)
	}
	v.SetChecksum(c)
	if !v.HeaderValid() {
		t.Error("checksum of a built header is wrong")
	}
}

func TestFragmenter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		payload   int
		mtu       int
		ff        uint16 // flags and offset of the datagram
		wantSizes []int
		wantFF    []uint16
	}{
		{"three", 2000, 1000, IPv4FlagDF, []int{996, 996, 68}, []uint16{IPv4FlagMF, IPv4FlagMF | 122, 244}},
		{"fits", 100, 1000, 0, []int{120}, []uint16{0}},
		{"a fragment, refragmented", 1000, 520, IPv4FlagMF | 10, []int{516, 516, 28}, []uint16{IPv4FlagMF | 10, IPv4FlagMF | 72, IPv4FlagMF | 134}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := make([]byte, IPv4MinLen+tc.payload)
			(&IPv4Header{TotalLen: uint16(len(d)), ID: 9, FlagsFrag: tc.ff, TTL: 64, Protocol: ProtoUDP}).Put(d)
			for i := range tc.payload {
				d[IPv4MinLen+i] = byte(i)
			}
			var f Fragmenter
			if err := f.Reset(IPv4(d), tc.mtu); err != nil {
				t.Fatal(err)
			}
			dst := make([]byte, tc.mtu)
			var got []byte
			for i := 0; ; i++ {
				n := f.Next(dst)
				if n == 0 {
					if i != len(tc.wantSizes) {
						t.Fatalf("%d fragments, want %d", i, len(tc.wantSizes))
					}
					break
				}
				if i >= len(tc.wantSizes) {
					t.Fatalf("more than %d fragments", len(tc.wantSizes))
				}
				h, err := ParseIPv4(dst[:n])
				if err != nil {
					t.Fatal(err)
				}
				if n != tc.wantSizes[i] || h.FlagsFrag() != tc.wantFF[i] || !h.HeaderValid() || h.ID() != 9 {
					t.Errorf("fragment %d: len %d ff %#x valid %v id %d, want len %d ff %#x", i, n, h.FlagsFrag(), h.HeaderValid(), h.ID(), tc.wantSizes[i], tc.wantFF[i])
				}
				got = append(got, h.Payload()...)
			}
			if string(got) != string(d[IPv4MinLen:]) {
				t.Error("fragments do not put the payload back together")
			}
		})
	}
	var f Fragmenter
	opt := make([]byte, 24)
	opt[0] = 0x46
	if err := f.Reset(IPv4(opt), 1500); !errors.Is(err, ErrOptions) {
		t.Errorf("options: err = %v, want ErrOptions", err)
	}
	if f.Next(make([]byte, 1500)) != 0 {
		t.Error("Next after a failed Reset wrote a fragment")
	}
}

// ipv6Ext is an IPv6 packet 2001:db8::1 -> 2001:db8::2 with a Hop-by-Hop
// header, a Destination Options header, a Fragment header (first
// fragment, M set) and UDP.
const ipv6Ext = `
60 00 00 00              # version 6, traffic class 0, flow 0
00 24 00 40              # payload length 36, next header Hop-by-Hop, hop limit 64
20010db8 00000000 00000000 00000001
20010db8 00000000 00000000 00000002
3c 00 01 04 00 00 00 00  # HBH: next Destination Options, length 0, PadN
2c 00 01 04 00 00 00 00  # DstOpts: next Fragment, length 0, PadN
11 00 00 01 00 00 ab cd  # Fragment: next UDP, offset 0, M, id 0xabcd
04 d2 00 35 00 0c 00 00  # UDP 1234 -> 53, length 12
68 69 21 21              # "hi!!"`

func TestIPv6Upper(t *testing.T) {
	good := unhex(t, ipv6Ext)
	for _, tc := range []struct {
		name string
		mod  func(b []byte) []byte
		want IPv6Upper
		err  error
	}{
		{"HBH, DstOpts, first fragment, UDP", func(b []byte) []byte { return b },
			IPv6Upper{Proto: ProtoUDP, Offset: 64, Fragment: true, MoreFragments: true, FragID: 0xabcd}, nil},
		{"later fragment", func(b []byte) []byte { b[58] = 0x10; return b },
			IPv6Upper{Proto: ProtoUDP, Offset: 64, Fragment: true, FragOff: 0x200, MoreFragments: true, FragID: 0xabcd}, nil},
		{"no extension headers", func(b []byte) []byte { b[6] = ProtoTCP; return b },
			IPv6Upper{Proto: ProtoTCP, Offset: 40}, nil},
		{"Hop-by-Hop not first", func(b []byte) []byte { b[48] = ProtoHopByHop; return b }, IPv6Upper{}, ErrBadHeader},
		{"two Fragment headers", func(b []byte) []byte { b[56] = ProtoFragment; return b }, IPv6Upper{}, ErrBadHeader},
		{"extension past the payload", func(b []byte) []byte { b[49] = 9; return b }, IPv6Upper{}, ErrBadHeader},
		{"no next header", func(b []byte) []byte { b[48] = ProtoNoNext; return b },
			IPv6Upper{Proto: ProtoNoNext, Offset: 56}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseIPv6(tc.mod(append([]byte(nil), good...)))
			if err != nil {
				t.Fatal(err)
			}
			u, err := h.Upper()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && u != tc.want {
				t.Errorf("Upper = %+v, want %+v", u, tc.want)
			}
		})
	}
}

func TestIPv6ParseAndBuild(t *testing.T) {
	b := unhex(t, ipv6Ext)
	if _, err := ParseIPv6(b[:39]); !errors.Is(err, ErrTooShort) {
		t.Errorf("short: %v", err)
	}
	if _, err := ParseIPv6(b[:75]); !errors.Is(err, ErrBadHeader) {
		t.Errorf("payload length past the bytes: %v", err)
	}
	h, err := ParseIPv6(append(b, 0, 0))
	if err != nil || len(h) != 76 {
		t.Fatalf("padding: len %d, err %v", len(h), err)
	}
	out := make([]byte, IPv6Len)
	hh := IPv6Header{PayloadLen: 36, NextHeader: ProtoHopByHop, HopLimit: 64, Src: h.Src(), Dst: h.Dst()}
	hh.Put(out)
	if string(out) != string(b[:IPv6Len]) {
		t.Errorf("Put\n got %x\nwant %x", out, b[:IPv6Len])
	}
	hh = IPv6Header{TrafficClass: 0xb8, FlowLabel: 0x12345}
	hh.Put(out)
	if v := IPv6(out); v.TrafficClass() != 0xb8 || v.FlowLabel() != 0x12345 {
		t.Errorf("traffic class %#x flow %#x", v.TrafficClass(), v.FlowLabel())
	}
	f := make([]byte, IPv6FragmentLen)
	PutIPv6Fragment(f, ProtoUDP, 0, true, 0xabcd)
	if string(f) != string(b[56:64]) {
		t.Errorf("fragment header %x, want %x", f, b[56:64])
	}
	// The UDP checksum over the IPv6 pseudo-header (RFC 8200 8.1).
	u := UDP(h[64:76])
	u.SetChecksum(UDPChecksum(u, h.PseudoSum(ProtoUDP, len(u))))
	if c := checksum.Checksum(u, h.PseudoSum(ProtoUDP, len(u))); c != 0 {
		t.Errorf("udp over IPv6: check = %#x", c)
	}
}

func TestEthernetAndARP(t *testing.T) {
	frame := unhex(t, `
ffffffffffff 020000000001   # broadcast from 02:00:00:00:00:01
8100 000a 88a8 0014         # two tags (too many for EtherType beyond these)
0806                        # ARP
0001 0800 06 04 0001        # Ethernet/IPv4, request
020000000001 0a000001       # sender
000000000000 0a000002       # target`)
	e := Ethernet(frame)
	typ, l3, ok := e.EtherType()
	if !ok || typ != EtherTypeARP || l3 != 22 {
		t.Fatalf("EtherType = %#x, %d, %v", typ, l3, ok)
	}
	if e.Src() != [6]byte{2, 0, 0, 0, 0, 1} || e.Dst() != BroadcastMAC || e.Type() != EtherTypeVLAN {
		t.Error("Ethernet fields")
	}
	a, err := ParseARP(frame[l3:])
	if err != nil {
		t.Fatal(err)
	}
	if a.Op() != ARPRequest || a.SenderIP() != [4]byte{10, 0, 0, 1} || a.TargetIP() != [4]byte{10, 0, 0, 2} || a.SenderMAC() != e.Src() || a.TargetMAC() != [6]byte{} {
		t.Errorf("ARP fields: %x", []byte(a))
	}
	b := make([]byte, ARPLen)
	PutARP(b, ARPRequest, a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	if string(b) != string(a) {
		t.Errorf("PutARP\n got %x\nwant %x", b, []byte(a))
	}
	binary.BigEndian.PutUint16(frame[l3+2:], EtherTypeIPv6)
	if _, err := ParseARP(frame[l3:]); !errors.Is(err, ErrBadHeader) {
		t.Errorf("ARP for IPv6: %v", err)
	}
	if _, _, ok := Ethernet(frame[:13]).EtherType(); ok {
		t.Error("13 bytes parsed as Ethernet")
	}
	three := unhex(t, `ffffffffffff 020000000001 8100000a 8100000b 8100000c 0800`)
	if typ, _, _ := Ethernet(three).EtherType(); typ != EtherTypeVLAN {
		t.Errorf("three tags: EtherType %#x, want the third TPID", typ)
	}
	PutEthernet(b, BroadcastMAC, [6]byte{2}, EtherTypeIPv4)
	if Ethernet(b).Type() != EtherTypeIPv4 {
		t.Error("PutEthernet")
	}
}

func TestTCPAndICMP(t *testing.T) {
	seg := unhex(t, `
04d2 0050 00000001 00000000   # 1234 -> 80, seq 1
60 12 ffff 0000 0000          # data offset 6 (24 bytes), SYN ACK
020405b4                      # MSS option
6869                          # "hi"`)
	tc, err := ParseTCP(seg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.SrcPort() != 1234 || tc.DstPort() != 80 || tc.Seq() != 1 || tc.Flags() != TCPFlagSYN|TCPFlagACK || tc.HeaderLen() != 24 || string(tc.Payload()) != "hi" || tc.Window() != 0xffff {
		t.Errorf("TCP fields %x", seg)
	}
	seg[12] = 0x40
	if _, err := ParseTCP(seg); !errors.Is(err, ErrBadHeader) {
		t.Errorf("data offset 4: %v", err)
	}
	seg[12] = 0xf0
	if _, err := ParseTCP(seg); !errors.Is(err, ErrBadHeader) {
		t.Errorf("data offset past the segment: %v", err)
	}
	if _, err := ParseTCP(seg[:19]); !errors.Is(err, ErrTooShort) {
		t.Errorf("short: %v", err)
	}
	m, err := ParseICMP(unhex(t, `08 00 0000 1234 0001 6869`))
	if err != nil {
		t.Fatal(err)
	}
	m.UpdateChecksum4()
	if !m.Valid4() || m.Type() != ICMPEchoRequest || m.ID() != 0x1234 || m.Seq() != 1 || string(m.Body()) != "hi" {
		t.Errorf("ICMP fields %x", []byte(m))
	}
	if _, err := ParseICMP(m[:7]); !errors.Is(err, ErrTooShort) {
		t.Errorf("short ICMP: %v", err)
	}
}

// TestViewsDoNotAllocate pins zero allocations on every parser and the
// accessors a hot path uses.
func TestViewsDoNotAllocate(t *testing.T) {
	v4 := udp4Packet(t)
	v6 := unhex(t, ipv6Ext)
	frame := append(make([]byte, 14), v4...)
	binary.BigEndian.PutUint16(frame[12:], EtherTypeIPv4)
	var sink uint32
	allocs := testing.AllocsPerRun(1000, func() {
		typ, l3, _ := Ethernet(frame).EtherType()
		h, err := ParseIPv4(frame[l3:])
		if err != nil || typ != EtherTypeIPv4 {
			t.Fatal(err)
		}
		u, _ := ParseUDP(h.Payload())
		s := h.Src()
		sink += uint32(s[3]) + uint32(u.SrcPort()) + h.PseudoSum(len(u))
		h6, _ := ParseIPv6(v6)
		up, _ := h6.Upper()
		sink += uint32(up.Offset) + h6.PseudoSum(up.Proto, len(h6)-up.Offset)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per parse, want 0", allocs)
	}
	big4 := make([]byte, 3000)
	(&IPv4Header{TotalLen: 3000, TTL: 64, Protocol: ProtoUDP}).Put(big4)
	big6 := make([]byte, 3000)
	(&IPv6Header{PayloadLen: 3000 - IPv6Len, NextHeader: ProtoUDP}).Put(big6)
	out := make([]byte, 1500)
	var f4 Fragmenter
	var f6 Fragmenter6
	allocs = testing.AllocsPerRun(100, func() {
		if f4.Reset(IPv4(big4), 1500) != nil || f6.Reset(IPv6(big6), 1500, 1) != nil {
			t.Fatal("reset")
		}
		for f4.Next(out) > 0 {
		}
		for f6.Next(out) > 0 {
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per fragmentation, want 0", allocs)
	}
	_ = sink
}

func TestFragmenter6(t *testing.T) {
	src := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	dst := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2}
	for _, tc := range []struct {
		name    string
		exts    []byte // extension headers, the first one's type in first
		first   uint8
		unfrag  int // expected unfragmentable part
		nhAt    int // where its last next header field is
		payload int
		mtu     int
		frags   int
	}{
		{"no extension headers", nil, ProtoUDP, 40, 6, 3000, 1280, 3},
		{"Hop-by-Hop stays in front, Destination Options travel", []byte{
			ProtoDstOpts, 0, 1, 4, 0, 0, 0, 0, // HBH, PadN
			ProtoUDP, 0, 1, 4, 0, 0, 0, 0, // DstOpts, PadN
		}, ProtoHopByHop, 48, 40, 3000, 1280, 3},
		{"Destination Options before Routing stay in front", []byte{
			ProtoRouting, 0, 1, 4, 0, 0, 0, 0, // DstOpts
			ProtoUDP, 0, 0, 0, 0, 0, 0, 0, // Routing, type 0, no segments left
		}, ProtoDstOpts, 56, 48, 2000, 1280, 2},
		{"fits", nil, ProtoUDP, 40, 6, 100, 1280, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, IPv6Len+len(tc.exts)+tc.payload)
			(&IPv6Header{PayloadLen: uint16(len(p) - IPv6Len), NextHeader: tc.first, HopLimit: 64, Src: src, Dst: dst}).Put(p)
			copy(p[IPv6Len:], tc.exts)
			for i := IPv6Len + len(tc.exts); i < len(p); i++ {
				p[i] = byte(i)
			}
			var f Fragmenter6
			if err := f.Reset(IPv6(p), tc.mtu, 0xabcdef); err != nil {
				t.Fatal(err)
			}
			out := make([]byte, tc.mtu)
			var rest []byte
			n := 0
			for m := f.Next(out); m > 0; m = f.Next(out) {
				n++
				h, err := ParseIPv6(out[:m])
				if err != nil || m > tc.mtu || len(h) != m {
					t.Fatalf("fragment %d: %d bytes, %v", n, m, err)
				}
				u, err := h.Upper()
				if err != nil || !u.Fragment || u.FragID != 0xabcdef || int(u.FragOff)*8 != len(rest) {
					t.Fatalf("fragment %d: %+v, %v; want the Fragment header, offset %d", n, u, err, len(rest))
				}
				// The unfragmentable part is the packet's, but for its
				// last next header, which is now Fragment.
				nh := tc.nhAt
				want := append([]byte(nil), p[IPv6Len:tc.unfrag]...)
				got := append([]byte(nil), h[IPv6Len:tc.unfrag]...)
				if nh >= IPv6Len {
					want[nh-IPv6Len], got[nh-IPv6Len] = 0, 0
				}
				if h[nh] != ProtoFragment || string(got) != string(want) {
					t.Fatalf("fragment %d: next header %d at %d; unfragmentable part %x, want %x", n, h[nh], nh, got, want)
				}
				rest = append(rest, h[tc.unfrag+IPv6FragmentLen:]...)
			}
			if n != tc.frags || string(rest) != string(p[tc.unfrag:]) {
				t.Errorf("%d fragments (want %d); fragmentable part put back together: %v", n, tc.frags, string(rest) == string(p[tc.unfrag:]))
			}
		})
	}
	var f Fragmenter6
	p := make([]byte, 48)
	(&IPv6Header{PayloadLen: 8, NextHeader: ProtoFragment}).Put(p)
	if err := f.Reset(IPv6(p), 1280, 1); !errors.Is(err, ErrBadHeader) {
		t.Errorf("a fragment refragmented: %v", err)
	}
}

func TestIPVersion(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want uint8
	}{
		{nil, 0},
		{[]byte{0x45}, 4},
		{[]byte{0x60, 0, 0, 0}, 6},
		{[]byte{0x00}, 0},
	} {
		if got := IPVersion(tt.in); got != tt.want {
			t.Errorf("IPVersion(%x) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
