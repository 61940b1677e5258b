package tap

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/internal/checksum"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// tcpPacket returns a buffer with Headroom and a TCP/IPv4 datagram from
// src to dst with n bytes of payload, whose TCP checksum field holds the
// pseudo-header sum only (partial, as Linux hands TSO frames).
func tcpPacket(src, dst netip.Addr, n int) []byte {
	b := make([]byte, Headroom+20+20+n)
	p := b[Headroom:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[6] = 0x40 // DF
	p[8], p[9] = 64, wire.ProtoTCP
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:12], checksum.Checksum(p[:20], 0))
	tcp := p[20:]
	binary.BigEndian.PutUint16(tcp[0:2], 5201)
	binary.BigEndian.PutUint16(tcp[2:4], 40000)
	binary.BigEndian.PutUint32(tcp[4:8], 1000)
	tcp[12], tcp[13] = 0x50, 0x18 // data offset 5, PSH ACK
	for i := range n {
		tcp[20+i] = byte(i * 7)
	}
	binary.BigEndian.PutUint16(tcp[16:18], checksum.Fold(checksum.PseudoHeaderIPv4(src.As4(), dst.As4(), wire.ProtoTCP, uint16(len(tcp)))))
	return b
}

// resolved returns a test uplink whose gateway (lanIP) is resolved.
func resolved(t *testing.T) (*TAP, *fakeDev) {
	t.Helper()
	u, dev, _ := newTestTAP(t)
	u.input(arpFrame(t, arp.OperationRequest, lanMAC, lanIP, u.Addr(), wire.BroadcastMAC), nil)
	dev.Take()
	return u, dev
}

func TestSendGSO(t *testing.T) {
	far := netip.MustParseAddr("203.0.113.7")
	tests := []struct {
		name    string
		n, mss  int
		want    gso.Hdr
		wantErr error
	}{
		{"super-frame", 20000, 1448, gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}, nil},
		{"one segment", 1000, 1448, gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: 34, CsumOffset: 16}, nil},
		{"not cut", 1000, 0, gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: 34, CsumOffset: 16}, nil},
		{"not cut, over the MTU", 2000, 0, gso.Hdr{}, vswitch.ErrFrameTooBig},
		{"segments over the MTU", 20000, 1461, gso.Hdr{}, vswitch.ErrFrameTooBig},
		{"over 64 KiB", 65536 - 40, 1448, gso.Hdr{}, vswitch.ErrFrameTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, dev := resolved(t)
			pkt := tcpPacket(u.Addr(), far, tt.n)
			err := u.SendGSO(pkt, Headroom, tt.mss)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SendGSO: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fs := dev.Take()
			if len(fs) != 1 {
				t.Fatalf("%d frames written, want 1", len(fs))
			}
			if got := gso.ParseHdr(fs[0]); got != tt.want {
				t.Errorf("virtio_net_hdr %+v, want %+v", got, tt.want)
			}
			if [6]byte(fs[0][vswitch.VnetHdrLen:]) != lanMAC || len(fs[0]) != Headroom+40+tt.n {
				t.Errorf("frame of %d bytes to %x, want %d bytes to %x", len(fs[0]), fs[0][vswitch.VnetHdrLen:][:6], Headroom+40+tt.n, lanMAC)
			}
		})
	}
	t.Run("not TCP", func(t *testing.T) {
		u, _ := resolved(t)
		if err := u.SendGSO(ipPacket(far), Headroom, 1448); err == nil {
			t.Error("SendGSO of a UDP datagram: no error")
		}
	})
	t.Run("allocations", func(t *testing.T) {
		u, dev := resolved(t)
		dev.discard = true
		pkt := tcpPacket(u.Addr(), far, 20000)
		if a := testing.AllocsPerRun(100, func() { u.SendGSO(pkt, Headroom, 1448) }); a != 0 {
			t.Errorf("SendGSO: %v allocations, want 0", a)
		}
		if s := u.Stats(); s.TxGSO == 0 || s.TxErrors != 0 {
			t.Errorf("stats %+v, want TxGSO counted and no errors", s)
		}
	})
}

// offloadedFrame returns pkt (behind Headroom) as the kernel hands it to
// the uplink: to the uplink's MAC behind h.
func offloadedFrame(u *TAP, pkt []byte, h gso.Hdr) []byte {
	f := append([]byte(nil), pkt...)
	h.Put(f)
	wire.PutEthernet(f[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv4)
	return f
}

func TestInputOffloaded(t *testing.T) {
	far := netip.MustParseAddr("203.0.113.7")
	tso := gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: 1000, CsumStart: 34, CsumOffset: 16}
	csum := gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: 34, CsumOffset: 16}
	tests := []struct {
		name       string
		n          int
		h          gso.Hdr
		withGSO    bool
		wantGSO    int // super-frames handed whole
		wantPlain  int // datagrams handed to handle
		wantCounts Stats
	}{
		{"super-frame whole", 5000, tso, true, 1, 0, Stats{RxGSO: 1}},
		{"super-frame segmented without a handler", 5000, tso, false, 0, 5, Stats{RxSegmented: 1}},
		{"partial checksum completed", 500, csum, true, 0, 1, Stats{RxCsum: 1}},
		{"data valid is plain", 500, gso.Hdr{Flags: gso.FlagDataValid}, true, 0, 1, Stats{}},
		{"bad checksum offsets", 500, gso.Hdr{Flags: gso.FlagNeedsCsum, CsumStart: 34, CsumOffset: 9000}, true, 0, 0, Stats{RxIgnored: 1}},
		{"super-frame with an odd csum_start segmented", 5000, gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: 1000, CsumStart: 30, CsumOffset: 16}, true, 0, 5, Stats{RxSegmented: 1}},
		{"super-frame to another MAC ignored", 5000, tso, true, 0, 0, Stats{RxIgnored: 1}},
		{"super-frame of UDP dropped", 5000, gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeUDP, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}, true, 0, 0, Stats{RxIgnored: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _, _ := newTestTAP(t)
			var whole, plain [][]byte
			var mss []int
			if tt.withGSO {
				u.SetGSOHandler(func(parts [][]byte, m int) {
					var p []byte
					for _, x := range parts {
						p = append(p, x...)
					}
					whole, mss = append(whole, p), append(mss, m)
				})
			}
			pkt := tcpPacket(far, u.Addr(), tt.n)
			if tt.h.Flags&gso.FlagNeedsCsum == 0 {
				// A complete checksum.
				tcp := pkt[Headroom+20:]
				binary.BigEndian.PutUint16(tcp[16:18], 0)
				binary.BigEndian.PutUint16(tcp[16:18], checksum.Checksum(tcp, checksum.PseudoHeaderIPv4(far.As4(), u.addr, wire.ProtoTCP, uint16(len(tcp)))))
			}
			f := offloadedFrame(u, pkt, tt.h)
			if strings.Contains(tt.name, "another MAC") {
				copy(f[vswitch.VnetHdrLen:], lanMAC[:])
			}
			u.input(f, func(p []byte) { plain = append(plain, append([]byte(nil), p...)) })
			if len(whole) != tt.wantGSO || len(plain) != tt.wantPlain {
				t.Fatalf("%d super-frames and %d datagrams handed on, want %d and %d", len(whole), len(plain), tt.wantGSO, tt.wantPlain)
			}
			for i, p := range whole {
				if mss[i] != int(tt.h.GSOSize) || string(p) != string(pkt[Headroom:]) {
					t.Errorf("super-frame %d: %d bytes, mss %d, want the datagram as read, mss %d", i, len(p), mss[i], tt.h.GSOSize)
				}
			}
			for i, p := range plain {
				tcp := p[20:]
				if checksum.Checksum(tcp, checksum.PseudoHeaderIPv4(far.As4(), u.addr, wire.ProtoTCP, uint16(len(tcp)))) != 0 {
					t.Errorf("datagram %d: TCP checksum does not verify", i)
				}
			}
			s := u.Stats()
			got := Stats{RxGSO: s.RxGSO, RxSegmented: s.RxSegmented, RxCsum: s.RxCsum, RxIgnored: s.RxIgnored}
			if got != tt.wantCounts {
				t.Errorf("counters %+v, want %+v", got, tt.wantCounts)
			}
		})
	}
	t.Run("allocations", func(t *testing.T) {
		u, _, _ := newTestTAP(t)
		u.SetGSOHandler(func([][]byte, int) {})
		f := offloadedFrame(u, tcpPacket(far, u.Addr(), 5000), tso)
		if a := testing.AllocsPerRun(100, func() { u.input(f, nil) }); a != 0 {
			t.Errorf("a super-frame to the GSO handler: %v allocations, want 0", a)
		}
	})
}

// FuzzInputOffloaded reads arbitrary virtio_net_hdr and TCP/IPv4 bytes to
// the uplink: nothing panics, the GSO handler gets only TCP datagrams to
// the uplink's address, and the plain handler only datagrams to it.
func FuzzInputOffloaded(f *testing.F) {
	far := netip.MustParseAddr("203.0.113.7")
	u0, _, _ := newTestTAP(f)
	for _, h := range []gso.Hdr{
		{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: 1000, CsumStart: 34, CsumOffset: 16},
		{Flags: gso.FlagNeedsCsum, CsumStart: 34, CsumOffset: 16},
		{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeUDPL4, GSOSize: 100, CsumStart: 34, CsumOffset: 6},
		{GSOType: gso.TypeTCPv6, GSOSize: 1},
	} {
		f.Add(offloadedFrame(u0, tcpPacket(far, u0.Addr(), 3000), h), true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, withGSO bool) {
		u, _, _ := newTestTAP(t)
		check := func(p []byte) {
			ip, err := wire.ParseIPv4(p)
			if err != nil || ip.Dst() != u.addr {
				t.Fatalf("handed on %x: not a datagram to the uplink", p)
			}
		}
		if withGSO {
			u.SetGSOHandler(func(parts [][]byte, mss int) {
				if len(parts) != 1 || mss <= 0 || wire.IPv4(parts[0]).Protocol() != wire.ProtoTCP {
					t.Fatalf("GSO handler: %d parts, mss %d", len(parts), mss)
				}
				check(parts[0])
			})
		}
		if len(frame) >= vswitch.VnetHdrLen+wire.EthernetLen {
			// To the uplink's MAC, so that the datagram is looked at.
			copy(frame[vswitch.VnetHdrLen:], u.mac[:])
		}
		u.input(frame, check)
	})
}
