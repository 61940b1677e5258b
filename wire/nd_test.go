package wire

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseND(t *testing.T) {
	mac := [6]byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02}
	target := netip.MustParseAddr("fd42:1::1").As16()
	for _, tc := range []struct {
		name    string
		msg     string
		want    ND
		wantErr error
	}{
		{"NS with source LL",
			"87 00 0000 00000000 fd420001000000000000000000000001 01 01 02420a5a0002",
			ND{Type: ICMPv6NeighborSolicitation, Target: target, SourceLL: mac, HasSourceLL: true}, nil},
		{"NS without options (DAD)",
			"87 00 0000 00000000 fd420001000000000000000000000001",
			ND{Type: ICMPv6NeighborSolicitation, Target: target}, nil},
		{"NA R S O with target LL",
			"88 00 0000 e0000000 fd420001000000000000000000000001 02 01 02420a5a0002",
			ND{Type: ICMPv6NeighborAdvertisement, Target: target, Flags: 0xe0, TargetLL: mac, HasTargetLL: true}, nil},
		{"RS with source LL",
			"85 00 0000 00000000 01 01 02420a5a0002",
			ND{Type: ICMPv6RouterSolicitation, SourceLL: mac, HasSourceLL: true}, nil},
		{"RA lifetime 1800, unknown option skipped",
			"86 00 0000 40 00 0708 00000000 00000000 1f 01 000000000000 01 01 02420a5a0002",
			ND{Type: ICMPv6RouterAdvertisement, Flags: 64, RouterLifetime: 1800, SourceLL: mac, HasSourceLL: true}, nil},
		{"LL option of another length skipped",
			"87 00 0000 00000000 fd420001000000000000000000000001 01 02 02420a5a0002 0000000000000000",
			ND{Type: ICMPv6NeighborSolicitation, Target: target}, nil},
		{"zero-length option", "87 00 0000 00000000 fd420001000000000000000000000001 01 00 02420a5a0002", ND{}, ErrBadHeader},
		{"option past the end", "87 00 0000 00000000 fd420001000000000000000000000001 01 02 02420a5a0002", ND{}, ErrBadHeader},
		{"one stray byte", "87 00 0000 00000000 fd420001000000000000000000000001 01", ND{}, ErrBadHeader},
		{"code not 0", "87 01 0000 00000000 fd420001000000000000000000000001", ND{}, ErrBadHeader},
		{"NS too short", "87 00 0000 00000000 fd4200010000", ND{}, ErrTooShort},
		{"not ND", "80 00 0000 00000000", ND{}, ErrBadHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseND(ICMP(hexBytes(t, tc.msg)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestPutNAAndRA checks what PutNA and PutRA write against gopacket's
// decoding, and that ParseND reads it back.
func TestPutNAAndRA(t *testing.T) {
	mac := [6]byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x01}
	src := LinkLocal(mac)
	target := netip.MustParseAddr("fd42:1::1").As16()

	b := make([]byte, 128)
	n := PutNA(b, target, NAFlagRouter|NAFlagSolicited|NAFlagOverride, mac)
	na := ICMP(b[:n])
	na.UpdateChecksum6(checksum.PseudoHeaderIPv6(src, AllNodes, ProtoICMPv6, uint32(n)))
	pkt := ipv6Packet(src, AllNodes, b[:n])
	l, ok := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok {
		t.Fatalf("gopacket sees no NA in %x", pkt)
	}
	if !l.Router() || !l.Solicited() || !l.Override() || netip.AddrFrom16(target) != netip.MustParseAddr(l.TargetAddress.String()) ||
		len(l.Options) != 1 || l.Options[0].Type != layers.ICMPv6OptTargetAddress || [6]byte(l.Options[0].Data) != mac {
		t.Errorf("NA as gopacket reads it: %+v", l)
	}
	if nd, err := ParseND(na); err != nil || nd.Target != target || !nd.HasTargetLL || nd.TargetLL != mac || nd.Flags != 0xe0 {
		t.Errorf("ParseND(NA) = %+v, %v", nd, err)
	}

	prefix := netip.MustParseAddr("fd42:1::").As16()
	r := RA{HopLimit: 64, RouterLifetime: 1800, SourceLL: mac, MTU: 1500, Prefix: prefix, PrefixLen: 64,
		ValidLifetime: 2592000, PreferredLifetime: 604800}
	n = PutRA(b, &r)
	if n != r.Len() || n != RALen+NDLLOptLen+NDMTUOptLen+NDPrefixOptLen {
		t.Fatalf("PutRA wrote %d bytes, Len %d", n, r.Len())
	}
	ICMP(b[:n]).UpdateChecksum6(checksum.PseudoHeaderIPv6(src, AllNodes, ProtoICMPv6, uint32(n)))
	pkt = ipv6Packet(src, AllNodes, b[:n])
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
	ra, ok := p.Layer(layers.LayerTypeICMPv6RouterAdvertisement).(*layers.ICMPv6RouterAdvertisement)
	if !ok {
		t.Fatalf("gopacket sees no RA in %x", pkt)
	}
	if c := checksum.Checksum(b[:n], checksum.PseudoHeaderIPv6(src, AllNodes, ProtoICMPv6, uint32(n))); c != 0 {
		t.Errorf("RA checksum does not verify: %#x", c)
	}
	if ra.HopLimit != 64 || ra.RouterLifetime != 1800 || ra.ManagedAddressConfig() || ra.OtherConfig() || len(ra.Options) != 3 {
		t.Fatalf("RA as gopacket reads it: %+v", ra)
	}
	pi := ra.Options[2]
	if pi.Type != layers.ICMPv6OptPrefixInfo || pi.Data[0] != 64 || pi.Data[1] != 0x80 || [16]byte(pi.Data[14:30]) != prefix {
		t.Errorf("prefix option %x: want /64, L only, %x", pi.Data, prefix)
	}
	if mtu := ra.Options[1]; mtu.Type != layers.ICMPv6OptMTU || string(mtu.Data) != "\x00\x00\x00\x00\x05\xdc" {
		t.Errorf("MTU option %+v", mtu)
	}
}

// ipv6Packet returns an IPv6 packet from src to dst carrying the ICMPv6
// message m with hop limit 255.
func ipv6Packet(src, dst [16]byte, m []byte) []byte {
	b := make([]byte, IPv6Len+len(m))
	h := IPv6Header{PayloadLen: uint16(len(m)), NextHeader: ProtoICMPv6, HopLimit: NDHopLimit, Src: src, Dst: dst}
	h.Put(b)
	copy(b[IPv6Len:], m)
	return b
}

func TestNDAddresses(t *testing.T) {
	mac := [6]byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x01}
	for _, tc := range []struct{ got, want string }{
		{netip.AddrFrom16(LinkLocal(mac)).String(), "fe80::42:aff:fe5a:1"},
		{netip.AddrFrom16(SolicitedNode(netip.MustParseAddr("fd42:1::1234:5678").As16())).String(), "ff02::1:ff34:5678"},
		{netip.AddrFrom16(AllNodes).String(), "ff02::1"},
		{netip.AddrFrom16(AllRouters).String(), "ff02::2"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	if got := MulticastMAC(AllNodes); got != [6]byte{0x33, 0x33, 0, 0, 0, 1} {
		t.Errorf("MulticastMAC(ff02::1) = %x", got)
	}
}

// FuzzParseND checks that ParseND never reads out of bounds, that what it
// accepts is one of the ND types with its fixed part, and that an NA it
// writes with PutNA is read back.
func FuzzParseND(f *testing.F) {
	f.Add([]byte{0x87, 0, 0, 0, 0, 0, 0, 0, 0xfd, 0x42, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 0x42, 0x0a, 0x5a, 0, 2})
	f.Add([]byte{0x86, 0, 0, 0, 64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add([]byte{0x85, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0x42, 0x0a, 0x5a, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < ICMPLen {
			return
		}
		nd, err := ParseND(ICMP(b))
		if err != nil {
			return
		}
		if nd.Type < ICMPv6RouterSolicitation || nd.Type > ICMPv6Redirect || b[1] != 0 {
			t.Fatalf("accepted type %d code %d", nd.Type, b[1])
		}
		if (nd.Type == ICMPv6NeighborSolicitation || nd.Type == ICMPv6NeighborAdvertisement) && nd.Target != [16]byte(b[8:24]) {
			t.Fatalf("target %x not the message's", nd.Target)
		}
		out := make([]byte, NALen+NDLLOptLen)
		PutNA(out, nd.Target, nd.Flags, nd.SourceLL)
		back, err := ParseND(ICMP(out))
		if err != nil || back.Target != nd.Target || back.TargetLL != nd.SourceLL || back.Flags != nd.Flags {
			t.Fatalf("PutNA round trip: %+v, %v", back, err)
		}
	})
}

// nsPacket is an IPv6 NS from src to dst for target, hop limit hl, with
// a source link-layer option for mac unless mac is zero, checksum zero.
func nsPacket(src, dst, target string, hl uint8, mac [6]byte) []byte {
	b := make([]byte, IPv6Len+NSLen+NDLLOptLen)
	n := PutNS(b[IPv6Len:], netip.MustParseAddr(target).As16(), mac)
	if mac == [6]byte{} {
		n = NSLen
	}
	h := IPv6Header{PayloadLen: uint16(n), NextHeader: ProtoICMPv6, HopLimit: hl,
		Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16()}
	h.Put(b)
	return b[:IPv6Len+n]
}

func TestNeighborSolicitation(t *testing.T) {
	mac := [6]byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02}
	for _, tc := range []struct {
		name string
		pkt  []byte
		err  error
		dad  bool
	}{
		{"multicast", nsPacket("fd42:1::2", "ff02::1:ff00:9", "fd42:1::9", 255, mac), nil, false},
		{"unicast", nsPacket("fd42:1::2", "fd42:1::9", "fd42:1::9", 255, mac), nil, false},
		{"dad", nsPacket("::", "ff02::1:ff00:9", "fd42:1::9", 255, [6]byte{}), nil, true},
		{"dad with source option", nsPacket("::", "ff02::1:ff00:9", "fd42:1::9", 255, mac), ErrBadHeader, true},
		{"dad not to the solicited-node group", nsPacket("::", "ff02::1", "fd42:1::9", 255, [6]byte{}), ErrBadHeader, true},
		{"hop limit 64", nsPacket("fd42:1::2", "ff02::1:ff00:9", "fd42:1::9", 64, mac), ErrBadHeader, false},
		{"multicast target", nsPacket("fd42:1::2", "ff02::1:ff00:9", "ff02::1", 255, mac), ErrBadHeader, false},
		{"cut", func() []byte {
			b := nsPacket("fd42:1::2", "ff02::1:ff00:9", "fd42:1::9", 255, mac)[:IPv6Len+NSLen-1]
			IPv6(b).SetPayloadLen(NSLen - 1)
			return b
		}(), ErrTooShort, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, err := ParseIPv6(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NeighborSolicitation(ip)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if s.DAD() != tc.dad || s.Target != netip.MustParseAddr("fd42:1::9").As16() || s.Src != ip.Src() || s.Dst != ip.Dst() {
				t.Errorf("got %+v (dad %v), want target fd42:1::9, dad %v", s, s.DAD(), tc.dad)
			}
			if !tc.dad && (!s.HasSourceLL || s.SourceLL != mac) {
				t.Errorf("source link-layer %x (%v), want %x", s.SourceLL, s.HasSourceLL, mac)
			}
		})
	}
}

// TestPutNAFrame checks the frame against gopacket: an NA from the
// target with S and O, a complete checksum and the target's MAC.
func TestPutNAFrame(t *testing.T) {
	src, dst := [6]byte{2, 0, 0, 0, 0, 9}, [6]byte{2, 0, 0, 0, 0, 2}
	target, asker := netip.MustParseAddr("fd42:1::9").As16(), netip.MustParseAddr("fd42:1::2").As16()
	b := make([]byte, NAFrameLen)
	if n := PutNAFrame(b, dst, src, target, asker, target, NAFlagSolicited|NAFlagOverride); n != NAFrameLen {
		t.Fatalf("length %d, want %d", n, NAFrameLen)
	}
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if na == nil || ip == nil || p.ErrorLayer() != nil {
		t.Fatalf("not an NA: %v", p)
	}
	if !na.Solicited() || !na.Override() || na.Router() || ip.HopLimit != NDHopLimit || [16]byte(ip.SrcIP) != target || [16]byte(ip.DstIP) != asker {
		t.Errorf("NA %v in %v", na, ip)
	}
	if len(na.Options) != 1 || [6]byte(na.Options[0].Data) != src {
		t.Errorf("options %v, want the target link-layer address %x", na.Options, src)
	}
	m := ICMP(b[EthernetLen+IPv6Len:])
	if got := checksum.Checksum(m, checksum.PseudoHeaderIPv6(target, asker, ProtoICMPv6, uint32(len(m)))); got != 0 {
		t.Errorf("checksum does not verify: %#04x", got)
	}
	// PutARPReply over the request it answers.
	req := make([]byte, EthernetLen+ARPLen)
	PutEthernet(req, BroadcastMAC, dst, EtherTypeARP)
	PutARP(req[EthernetLen:], ARPRequest, dst, [4]byte{10, 0, 0, 2}, [6]byte{}, [4]byte{10, 0, 0, 9})
	a, _ := ParseARP(req[EthernetLen:])
	PutARPReply(req, src, a.TargetIP(), a.SenderMAC(), a.SenderIP())
	r, err := ParseARP(req[EthernetLen:])
	if err != nil || r.Op() != ARPReply || r.SenderMAC() != src || r.SenderIP() != [4]byte{10, 0, 0, 9} ||
		r.TargetMAC() != dst || r.TargetIP() != [4]byte{10, 0, 0, 2} || Ethernet(req).Dst() != dst || Ethernet(req).Src() != src {
		t.Errorf("ARP reply %x", req)
	}
}

// FuzzNeighborSolicitation checks that NeighborSolicitation never reads
// out of bounds, that what it accepts is an NS with hop limit 255 whose
// DAD form has no source option, and that the NA answering it is read
// back by ParseNDPacket.
func FuzzNeighborSolicitation(f *testing.F) {
	f.Add(nsPacket("fd42:1::2", "ff02::1:ff00:9", "fd42:1::9", 255, [6]byte{2, 0, 0, 0, 0, 2}))
	f.Add(nsPacket("::", "ff02::1:ff00:9", "fd42:1::9", 255, [6]byte{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, err := ParseIPv6(b)
		if err != nil {
			return
		}
		s, err := NeighborSolicitation(ip)
		if err != nil {
			return
		}
		if ip.HopLimit() != NDHopLimit || s.Type != ICMPv6NeighborSolicitation || s.DAD() && s.HasSourceLL || s.Target[0] == 0xff {
			t.Fatalf("accepted %+v from %x", s, b)
		}
		out := make([]byte, NAFrameLen)
		PutNAFrame(out, s.SourceLL, [6]byte{2}, s.Target, s.Src, s.Target, NAFlagSolicited)
		back, err := ParseIPv6(out[EthernetLen:])
		if err != nil {
			t.Fatal(err)
		}
		nd, err := ParseNDPacket(back)
		if err != nil || nd.Type != ICMPv6NeighborAdvertisement || nd.Target != s.Target || nd.TargetLL != [6]byte{2} {
			t.Fatalf("answer %+v, %v", nd, err)
		}
	})
}
