package gateway

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/wire"
)

func TestPutEthernetIPv4(t *testing.T) {
	b := make([]byte, wire.EthernetLen+wire.IPv4MinLen)
	for i := range b {
		b[i] = 0xee // every byte must be written
	}
	wire.PutEthernet(b, [6]byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02}, [6]byte{0x02, 0x74, 0x73, 0x00, 0x00, 0x01}, wire.EtherTypeIPv4)
	h := wire.IPv4Header{
		TOS:      0xc0,
		TotalLen: 56,
		ID:       0xbeef,
		TTL:      64,
		Protocol: wire.ProtoICMP,
		Src:      [4]byte{10, 90, 0, 1},
		Dst:      [4]byte{10, 90, 0, 2},
	}
	h.Put(b[wire.EthernetLen:])
	want := "02420a5a0002" + // dst
		"027473000001" + // src
		"0800" + // IPv4
		"45" + // version 4, IHL 5
		"c0" + // TOS
		"0038" + // total length 56
		"beef" + // identification
		"0000" + // no flags, offset 0
		"40" + // TTL
		"01" + // ICMP
		"a65f" + // header checksum
		"0a5a0001" + // source
		"0a5a0002" // destination
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("header:\ngot  %s\nwant %s", got, want)
	}
	// gopacket agrees on the header checksum.
	ip := gopacket.NewPacket(b[wire.EthernetLen:], layers.LayerTypeIPv4, gopacket.NoCopy).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if _, res := ip.VerifyChecksum(); !res.Valid {
		t.Errorf("gopacket: header checksum %#x, want %#x", res.Actual, res.Correct)
	}
	if !wire.IPv4(b[wire.EthernetLen:]).HeaderValid() {
		t.Errorf("HeaderValid over a valid header = false, want true")
	}
}

func TestTransportChecksum(t *testing.T) {
	// A TCP RST from 10.90.0.1:80 to 10.90.0.2:40001, checksum zero.
	seg, _ := hex.DecodeString("00509c41" + "00000000" + "01020305" + "5014" + "0000" + "0000" + "0000")
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	sum := transportChecksum(seg, wire.ProtoTCP, src, dst)
	ph := []byte{10, 90, 0, 1, 10, 90, 0, 2, 0, wire.ProtoTCP, 0, byte(len(seg))}
	want := gopacket.FoldChecksum(gopacket.ComputeChecksum(seg, gopacket.ComputeChecksum(ph, 0)))
	if sum != want {
		t.Fatalf("transportChecksum = %#x, want %#x", sum, want)
	}
	seg[16], seg[17] = byte(sum>>8), byte(sum)
	if got := transportChecksum(seg, wire.ProtoTCP, src, dst); got != 0 {
		t.Errorf("transportChecksum over a valid segment = %#x, want 0", got)
	}
}

func TestParseIPv4(t *testing.T) {
	valid := "4500001c" + "12344000" + "4001" + "13f7" + "0a5a0002" + "0a5a0001" + "0800f7ff00000000" // echo request, 28 bytes
	tests := []struct {
		name    string
		hex     string
		want    counter
		payload int
		frag    bool
	}{
		{"valid", valid, cntNone, 8, false},
		{"padding trimmed", valid + "00000000", cntNone, 8, false},
		{"short", valid[:38], cntMalformed, 0, false},
		{"version", "55" + valid[2:], cntBadIPv4, 0, false},
		{"ihl 4", "44" + valid[2:], cntBadIPv4, 0, false},
		{"ihl past total", "4f" + valid[2:], cntBadIPv4, 0, false},
		{"total past data", valid[:6] + "1d" + valid[8:], cntBadIPv4, 0, false},
		{"checksum", valid[:20] + "13f6" + valid[24:], cntBadChecksum, 0, false},
		// More fragments set (0x6000), checksum recomputed.
		{"first fragment", valid[:12] + "6000" + "4001" + "f3f6" + valid[24:], cntNone, 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			v, reason := parseIPv4(b)
			if reason != tt.want {
				t.Fatalf("reason = %d, want %d", reason, tt.want)
			}
			if reason != cntNone {
				return
			}
			if len(v.payload) != tt.payload || v.isFragment() != tt.frag || v.proto != wire.ProtoICMP {
				t.Errorf("payload %d, fragment %v, proto %d; want %d, %v, %d",
					len(v.payload), v.isFragment(), v.proto, tt.payload, tt.frag, wire.ProtoICMP)
			}
			if v.src != [4]byte{10, 90, 0, 2} || v.dst != [4]byte{10, 90, 0, 1} {
				t.Errorf("src, dst = %v, %v", v.src, v.dst)
			}
		})
	}
}

func TestBroadcastOf(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{"10.90.0.1/16", "10.90.255.255"},
		{"192.168.1.1/24", "192.168.1.255"},
		{"10.0.0.1/30", "10.0.0.3"},
		{"10.1.2.3/8", "10.255.255.255"},
		{"128.0.0.1/1", "255.255.255.255"},
	}
	for _, tt := range tests {
		if got := netip.AddrFrom4(broadcastOf(netip.MustParsePrefix(tt.prefix))); got.String() != tt.want {
			t.Errorf("broadcastOf(%s) = %s, want %s", tt.prefix, got, tt.want)
		}
	}
}

func TestIsHostAddr(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.90.0.2", true},
		{"192.0.2.1", true},
		{"223.255.255.254", true},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"127.0.0.1", false},
		{"224.0.0.1", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
	}
	for _, tt := range tests {
		if got := isHostAddr(netip.MustParseAddr(tt.ip).As4()); got != tt.want {
			t.Errorf("isHostAddr(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}
