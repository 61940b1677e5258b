package vswitch

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

var (
	ip6A   = netip.MustParseAddr("fd42:1::a").As16()
	ip6B   = netip.MustParseAddr("fd42:1::b").As16()
	ip6G   = netip.MustParseAddr("fd42:1::1").As16()
	llA    = wire.LinkLocal([6]byte(mA))
	zero16 = [16]byte{}
)

// ipv6Pkt builds an IPv6 header with hop limit hl in front of payload,
// fixing the ICMPv6 or UDP checksum at csumOff in payload (-1: none).
func ipv6Pkt(src, dst [16]byte, next, hl uint8, payload []byte, proto uint8, csumOff int) []byte {
	b := make([]byte, wire.IPv6Len+len(payload))
	h := wire.IPv6Header{PayloadLen: uint16(len(payload)), NextHeader: next, HopLimit: hl, Src: src, Dst: dst}
	h.Put(b)
	copy(b[wire.IPv6Len:], payload)
	if csumOff >= 0 {
		up := b[wire.IPv6Len:]
		binary.BigEndian.PutUint16(up[csumOff:], 0)
		binary.BigEndian.PutUint16(up[csumOff:], checksum.Checksum(up, checksum.PseudoHeaderIPv6(src, dst, proto, uint32(len(up)))))
	}
	return b
}

// icmp6 builds an Ethernet frame from ethSrc with an ICMPv6 message m.
func icmp6(ethSrc, ethDst fdb.MAC, src, dst [16]byte, m []byte) []byte {
	return ethFrame(ethDst, ethSrc, nil, wire.EtherTypeIPv6, ipv6Pkt(src, dst, wire.ProtoICMPv6, 255, m, wire.ProtoICMPv6, 2))
}

func na(target [16]byte, flags uint8, mac fdb.MAC) []byte {
	b := make([]byte, wire.NALen+wire.NDLLOptLen)
	wire.PutNA(b, target, flags, [6]byte(mac))
	return b
}

func ns(target [16]byte, sll *fdb.MAC) []byte {
	b := make([]byte, wire.NSLen, wire.NSLen+8)
	b[0] = wire.ICMPv6NeighborSolicitation
	copy(b[8:], target[:])
	if sll != nil {
		b = append(b, wire.NDOptSourceLL, 1)
		b = append(b, sll[:]...)
	}
	return b
}

func ra(mac fdb.MAC) []byte {
	r := wire.RA{RouterLifetime: 1800, SourceLL: [6]byte(mac)}
	b := make([]byte, r.Len())
	wire.PutRA(b, &r)
	return b
}

func TestSecurityIPv6(t *testing.T) {
	ips := []netip.Addr{netip.AddrFrom4(ipA), netip.AddrFrom16(ip6A)}
	r := newStageRig(t, Config{},
		sp{"sec", PortConfig{MAC: mA, IPs: ips}},
		sp{"ra", PortConfig{MAC: mA, IPs: ips, AllowRA: true}},
		sp{"v4only", PortConfig{MAC: mA, IPs: ips[:1]}},
		sp{"gw", PortConfig{MAC: mG, Gateway: true}},
	)
	mcast := fdb.MAC{0x33, 0x33, 0, 0, 0, 1}
	echo := []byte{wire.ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}
	udp := func(src [16]byte, sport uint16) []byte {
		u := make([]byte, 12)
		binary.BigEndian.PutUint16(u[0:], sport)
		binary.BigEndian.PutUint16(u[2:], 546)
		binary.BigEndian.PutUint16(u[4:], 12)
		return ethFrame(mB, mA, nil, wire.EtherTypeIPv6, ipv6Pkt(src, ip6B, wire.ProtoUDP, 64, u, wire.ProtoUDP, 6))
	}
	frag := func(m []byte) []byte {
		// A Fragment header (first fragment, more to come) before m.
		p := append([]byte{wire.ProtoICMPv6, 0, 0, 1, 0, 0, 0, 7}, m...)
		return ethFrame(mcast, mA, nil, wire.EtherTypeIPv6, ipv6Pkt(llA, wire.AllNodes, wire.ProtoFragment, 255, p, 0, -1))
	}
	mldReport := []byte{143, 0, 0, 0, 0, 0, 0, 0}
	tests := []struct {
		name, port string
		raw        []byte
		want       Verdict
	}{
		{"own address", "sec", icmp6(mA, mB, ip6A, ip6B, echo), Continue},
		{"own link-local", "sec", icmp6(mA, mB, llA, ip6B, echo), Continue},
		{"link-local on an IPv4-only port", "v4only", icmp6(mA, mB, llA, ip6B, echo), Continue},
		{"spoofed source", "sec", icmp6(mA, mB, ip6B, ip6A, echo), DropSpoofed},
		{"own address on an IPv4-only port", "v4only", icmp6(mA, mB, ip6A, ip6B, echo), DropSpoofed},
		{"echo from ::", "sec", icmp6(mA, mB, zero16, ip6B, echo), DropSpoofed},
		{"NS for the gateway", "sec", icmp6(mA, mcast, ip6A, wire.SolicitedNode(ip6G), ns(ip6G, &mA)), Continue},
		{"NS with another link-layer address", "sec", icmp6(mA, mcast, ip6A, wire.SolicitedNode(ip6G), ns(ip6G, &mB)), DropSpoofed},
		{"DAD", "sec", icmp6(mA, mcast, zero16, wire.SolicitedNode(ip6A), ns(ip6A, nil)), Continue},
		{"DAD with a link-layer option", "sec", icmp6(mA, mcast, zero16, wire.SolicitedNode(ip6A), ns(ip6A, &mA)), DropSpoofed},
		{"NA for itself", "sec", icmp6(mA, mB, ip6A, ip6B, na(ip6A, wire.NAFlagSolicited, mA)), Continue},
		{"NA for the gateway's address", "sec", icmp6(mA, mcast, ip6A, wire.AllNodes, na(ip6G, wire.NAFlagOverride, mA)), DropSpoofed},
		{"NA with another link-layer address", "sec", icmp6(mA, mB, ip6A, ip6B, na(ip6A, wire.NAFlagOverride, mB)), DropSpoofed},
		{"NA with the router flag", "sec", icmp6(mA, mB, ip6A, ip6B, na(ip6A, wire.NAFlagRouter, mA)), DropSpoofed},
		{"NA with the router flag, allow-ra", "ra", icmp6(mA, mB, ip6A, ip6B, na(ip6A, wire.NAFlagRouter, mA)), Continue},
		{"RA", "sec", icmp6(mA, mcast, llA, wire.AllNodes, ra(mA)), DropSpoofed},
		{"RA, allow-ra", "ra", icmp6(mA, mcast, llA, wire.AllNodes, ra(mA)), Continue},
		{"RA in a fragment, allow-ra", "ra", frag(ra(mA)), DropSpoofed},
		{"DHCPv6 server reply", "sec", udp(ip6A, 547), DropSpoofed},
		{"DHCPv6 server reply, allow-ra", "ra", udp(ip6A, 547), Continue},
		{"UDP", "sec", udp(ip6A, 5000), Continue},
		{"MLD report from ::", "sec", icmp6(mA, mcast, zero16, wire.AllRouters, mldReport), Continue},
		{"unreadable IPv6", "sec", ethFrame(mB, mA, nil, wire.EtherTypeIPv6, []byte{0x60, 0}), DropSpoofed},
		{"gateway sends RAs", "gw", icmp6(mG, mcast, wire.LinkLocal([6]byte(mG)), wire.AllNodes, ra(mG)), Continue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame(tt.port, tt.raw)
			if got := run(f, parseStage{}, securityStage{}); got != tt.want {
				t.Fatalf("got verdict %d, want %d", got, tt.want)
			}
		})
	}

	// The check allocates nothing.
	f := r.frame("sec", icmp6(mA, mB, ip6A, ip6B, na(ip6A, wire.NAFlagSolicited, mA)))
	pt := r.port["sec"]
	b := f.Data[f.L3:]
	if n := testing.AllocsPerRun(100, func() { pt.allow6(b) }); n != 0 {
		t.Errorf("allow6: %v allocations, want 0", n)
	}
}

// FuzzAllow6 checks that port security never panics on an IPv6 packet and
// never lets a packet from another source through.
func FuzzAllow6(f *testing.F) {
	f.Add(ipv6Pkt(ip6A, ip6B, wire.ProtoICMPv6, 255, na(ip6A, 0, mA), wire.ProtoICMPv6, 2))
	f.Add(ipv6Pkt(zero16, wire.SolicitedNode(ip6A), wire.ProtoICMPv6, 255, ns(ip6A, nil), wire.ProtoICMPv6, 2))
	f.Add(ipv6Pkt(llA, wire.AllNodes, wire.ProtoICMPv6, 255, ra(mA), wire.ProtoICMPv6, 2))
	r := newStageRig(f, Config{}, sp{"sec", PortConfig{MAC: mA, IPs: []netip.Addr{netip.AddrFrom16(ip6A)}}})
	pt := r.port["sec"]
	f.Fuzz(func(t *testing.T, b []byte) {
		ok := pt.allow6(b)
		if !ok {
			return
		}
		ip, err := wire.ParseIPv6(b)
		if err != nil {
			t.Fatalf("accepted an unreadable packet")
		}
		if s := ip.Src(); s != ip6A && s != llA && s != zero16 {
			t.Fatalf("accepted source %x", s)
		}
	})
}

// TestPrefixes6 checks IPv6 prefix matching, without allocating.
func TestPrefixes6(t *testing.T) {
	r := newStageRig(t, Config{}, sp{"a", PortConfig{}})
	f := r.frame("a", icmp6(mA, mB, ip6A, ip6B, []byte{128, 0, 0, 0, 0, 1, 0, 1}))
	run(f, parseStage{})
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		r    Rule
		want bool
	}{
		{Rule{Src: pfx("fd42:1::/64")}, true},
		{Rule{Src: pfx("fd42:1::a/128"), Dst: pfx("fd42:1::b/128")}, true},
		{Rule{Dst: pfx("fd42:1::a/128")}, false},
		{Rule{Src: pfx("fd42:2::/64")}, false},
	} {
		p := compile6(tc.r)
		if got := p.match(f); got != tc.want {
			t.Errorf("%s -> %s: %v, want %v", tc.r.Src, tc.r.Dst, got, tc.want)
		}
	}
	if compile6(Rule{Src: pfx("10.0.0.0/8")}) != nil {
		t.Errorf("compile6 of an IPv4 rule is not nil")
	}
	p := compile6(Rule{Src: pfx("fd42:1::/64")})
	if n := testing.AllocsPerRun(100, func() { p.match(f) }); n != 0 {
		t.Errorf("match: %v allocations, want 0", n)
	}
}
