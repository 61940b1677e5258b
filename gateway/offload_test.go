package gateway_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/internal/checksum"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// gsoUplink is a fakeUplink that takes super-segments.
type gsoUplink struct {
	fakeUplink
	mu  sync.Mutex // guards gso and mss
	gso [][]byte
	mss []int
}

func (u *gsoUplink) SendGSO(buf []byte, off, mss int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gso = append(u.gso, append([]byte(nil), buf[off:]...))
	u.mss = append(u.mss, mss)
	return nil
}

func newGSORouter(t *testing.T, hostLo netip.Addr) (*gateway.Gateway, *gsoUplink) {
	t.Helper()
	tbl := newNAT(t)
	up := &gsoUplink{fakeUplink: fakeUplink{mtu: 1500, keep: true}}
	g, _ := newGateway(t, func(c *gateway.Config) { c.NAT, c.Uplink, c.HostLoopback = tbl, up, hostLo })
	return g, up
}

// putTCP4 writes into p, which holds a whole packet, the IPv4 header (TTL
// 64, fragment flags ipFlags) and the TCP header (data offset 5, flags
// tcpFlags) of a segment from src:sport to dst:dport whose TCP checksum
// field holds the pseudo-header sum, as for a GSO packet. It returns the
// TCP segment.
func putTCP4(p []byte, src, dst netip.Addr, sport, dport uint16, ipFlags, tcpFlags byte) []byte {
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[6] = ipFlags
	p[8], p[9] = 64, 6
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:12], checksum.Checksum(p[:20], 0))
	tcp := p[20:]
	binary.BigEndian.PutUint16(tcp[0:2], sport)
	binary.BigEndian.PutUint16(tcp[2:4], dport)
	tcp[12], tcp[13] = 0x50, tcpFlags
	binary.BigEndian.PutUint16(tcp[16:18], checksum.Fold(checksum.PseudoHeaderIPv4(src.As4(), dst.As4(), 6, uint16(len(tcp)))))
	return tcp
}

// tsoFrame returns a TCP/IPv4 super-frame from container A to dst:80 with
// n bytes of payload, in segments of mss, behind its virtio_net_hdr
// (GSO_TCPV4, NEEDS_CSUM: the TCP checksum field holds the pseudo-header
// sum, as Linux hands it to a TAP).
func tsoFrame(dst netip.Addr, n, mss int) []byte {
	eth := make([]byte, 14+20+20+n)
	copy(eth[0:6], gwMAC)
	copy(eth[6:12], aMAC)
	eth[12], eth[13] = 0x08, 0x00
	tcp := putTCP4(eth[14:], aIP, dst, 40000, 80, 0x40, 0x18) // DF; PSH ACK
	for i := range n {
		tcp[20+i] = byte(i)
	}
	buf := make([]byte, vswitch.Headroom+gso.HdrLen+len(eth))
	gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: uint16(mss), CsumStart: 34, CsumOffset: 16}.Put(buf[vswitch.Headroom:])
	copy(buf[vswitch.Headroom+gso.HdrLen:], eth)
	return buf
}

// openTCP lets container A's connection to dst:80 exist in NAT, with a SYN.
func openTCP(t *testing.T, g *gateway.Gateway, dst netip.Addr) {
	t.Helper()
	syn := tcpSYN(t)
	copy(syn[14+16:14+20], dst.AsSlice())
	binary.BigEndian.PutUint16(syn[14+20:], 40000)
	write(t, g, fixChecksums(syn))
}

func TestGSOForwardedWhole(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dst     netip.Addr
		wantDst netip.Addr
	}{
		{"outside", lanIP, lanIP},
		{"host loopback through the gateway", gwIP, netip.MustParseAddr("192.0.0.1")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, up := newGSORouter(t, netip.MustParseAddr("192.0.0.1"))
			if got := g.Offloads(); got != vswitch.OffloadCsum|vswitch.OffloadTSO4 {
				t.Fatalf("Offloads: got %s, want csum,tso4", got)
			}
			openTCP(t, g, tt.dst)
			up.Take()
			up.gso = nil
			if _, err := g.Write(tsoFrame(tt.dst, 20000, 1460), vswitch.Headroom); err != nil {
				t.Fatal(err)
			}
			if n := len(up.Take()); n != 0 {
				t.Fatalf("%d ordinary datagrams sent, want the super-segment whole", n)
			}
			if len(up.gso) != 1 {
				t.Fatalf("%d super-segments sent, want 1", len(up.gso))
			}
			if up.mss[0] != 1460 {
				t.Errorf("sent with mss %d, want 1460", up.mss[0])
			}
			p := up.gso[0]
			if len(p) != 20+20+20000 {
				t.Fatalf("super-segment of %d bytes, want %d", len(p), 20+20+20000)
			}
			if checksum.Checksum(p[:20], 0) != 0 {
				t.Errorf("bad IPv4 header checksum")
			}
			src, dst := [4]byte(p[12:16]), [4]byte(p[16:20])
			if netip.AddrFrom4(src) != extIP || netip.AddrFrom4(dst) != tt.wantDst || p[8] != 63 {
				t.Errorf("sent %v -> %v ttl %d, want %s -> %s ttl 63", netip.AddrFrom4(src), netip.AddrFrom4(dst), p[8], extIP, tt.wantDst)
			}
			// The partial checksum is the pseudo-header sum of the
			// translated addresses: completing it gives a valid segment.
			tcp := p[20:]
			want := checksum.Fold(checksum.PseudoHeaderIPv4(src, dst, 6, uint16(len(tcp))))
			if got := binary.BigEndian.Uint16(tcp[16:18]); got != want {
				t.Errorf("partial checksum %#04x, want %#04x", got, want)
			}
		})
	}
}

func TestGSOToGatewaySegmented(t *testing.T) {
	// Without host loopback a super-frame to the gateway itself is
	// segmented in software and answered segment by segment (resets).
	g, up := newGSORouter(t, netip.Addr{})
	if _, err := g.Write(tsoFrame(gwIP, 3000, 1000), vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	if len(up.gso) != 0 || len(up.Take()) != 0 {
		t.Fatalf("a frame to the gateway went to the uplink")
	}
	for i := range 3 {
		p := decode(t, read(t, g))
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || !tcp.RST {
			t.Fatalf("reply %d: %v, want a reset", i, p)
		}
	}
	expectNoReply(t, g)
}

func TestNoOffloadsWithoutGSOUplink(t *testing.T) {
	g, _, _ := newRouter(t, 1500)
	if got := g.Offloads(); got != 0 {
		t.Fatalf("Offloads: got %s, want none", got)
	}
	if _, err := g.Write(tsoFrame(lanIP, 3000, 1000), vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	if s := g.Stats(); s.Offload != 1 {
		t.Errorf("offload drops: got %d, want 1", s.Offload)
	}
}

func TestFromUplinkGSO(t *testing.T) {
	g, up := newGSORouter(t, netip.Addr{})
	openTCP(t, g, lanIP) // also teaches the gateway A's MAC
	sent := up.Take()
	if len(sent) != 1 {
		t.Fatalf("SYN: %d datagrams sent", len(sent))
	}
	sport := binary.BigEndian.Uint16(sent[0][20:22])
	// A 20000-byte super-segment from the lan back to the mapping, with a
	// partial checksum, in segments of 1000 bytes.
	const n, mss = 20000, 1000
	p := make([]byte, 40+n)
	putTCP4(p, lanIP, extIP, 80, sport, 0, 0x10) // ACK
	orig := append([]byte(nil), p...)
	// Whole, and in parts as the host uplink hands it (header and
	// payload buffers): the same frame, and the input left alone.
	for _, parts := range [][][]byte{{p}, {p[:40], p[40:1000], p[1000:7001], p[7001:]}} {
		checkFromUplinkGSO(t, g, parts, n, mss)
		if !bytes.Equal(p, orig) {
			t.Fatalf("FromUplinkGSOSlices modified its input")
		}
	}
}

// readRaw returns the next queued frame with its virtio_net_hdr, whatever
// that says.
func readRaw(t testing.TB, g *gateway.Gateway) []byte {
	t.Helper()
	buf := make([]byte, vswitch.Headroom+vswitch.MaxFrame)
	n, err := g.Read(buf, vswitch.Headroom)
	if err != nil {
		t.Fatal(err)
	}
	return buf[vswitch.Headroom : vswitch.Headroom+n]
}

func checkFromUplinkGSO(t *testing.T, g *gateway.Gateway, parts [][]byte, n, mss int) {
	t.Helper()
	g.FromUplinkGSOSlices(parts, mss)
	if g.Queued() != 1 {
		t.Fatalf("%d frames queued, want 1", g.Queued())
	}
	frame := readRaw(t, g)
	h := gso.ParseHdr(frame)
	want := gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 54, GSOSize: uint16(mss), CsumStart: 34, CsumOffset: 16}
	if h != want {
		t.Errorf("virtio_net_hdr %+v, want %+v", h, want)
	}
	eth := frame[gso.HdrLen:]
	if len(eth) != 14+40+n || string(eth[0:6]) != string(aMAC) {
		t.Fatalf("frame of %d bytes to %x", len(eth), eth[0:6])
	}
	ip := eth[14:]
	if netip.AddrFrom4([4]byte(ip[16:20])) != aIP || binary.BigEndian.Uint16(ip[22:24]) != 40000 {
		t.Errorf("delivered to %v:%d, want %s:40000", netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[22:24]), aIP)
	}
	wantSum := checksum.Fold(checksum.PseudoHeaderIPv4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(ip)-20)))
	if got := binary.BigEndian.Uint16(ip[36:38]); got != wantSum {
		t.Errorf("partial checksum %#04x, want %#04x", got, wantSum)
	}
	// Segmented as the switch does for a port without TSO: every segment
	// is valid.
	var s gso.Segmenter
	if err := s.Reset(frame); err != nil {
		t.Fatal(err)
	}
	seg := make([]byte, s.MaxLen())
	count := 0
	for {
		k := s.Next(seg)
		if k == 0 {
			break
		}
		count++
		if err := checkPacket(seg[gso.HdrLen:k]); err != nil {
			t.Fatalf("segment %d: %v", count, err)
		}
	}
	if count != n/mss {
		t.Errorf("%d segments, want %d", count, n/mss)
	}
}

// FuzzWriteOffloaded feeds arbitrary frames with a virtio_net_hdr asking
// for offloads to a gateway whose uplink takes super-segments: Write must
// not panic nor modify its input, and whatever reaches the uplink is an
// IPv4 datagram from the uplink's address with a valid header checksum.
func FuzzWriteOffloaded(f *testing.F) {
	f.Add(tsoFrame(lanIP, 3000, 1000)[vswitch.Headroom:])
	f.Add(tsoFrame(gwIP, 3000, 1000)[vswitch.Headroom:])
	f.Add(tsoFrame(extIP, 3000, 1000)[vswitch.Headroom:])
	f.Add(tsoFrame(lanIP, 100, 1460)[vswitch.Headroom:])
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, hostLo := range []netip.Addr{{}, netip.MustParseAddr("192.0.0.1")} {
			g, up := newGSORouter(t, hostLo)
			openTCP(t, g, lanIP)
			up.Take()
			orig := append([]byte(nil), in...)
			if _, err := g.Write(in, 0); err != nil && !errors.Is(err, vswitch.ErrFrameTooBig) {
				t.Fatalf("Write: %v", err)
			}
			if !bytes.Equal(in, orig) {
				t.Fatalf("Write modified its input")
			}
			for _, p := range append(up.Take(), up.gso...) {
				if len(p) < 20 || checksum.Checksum(p[:int(p[0]&0x0f)*4], 0) != 0 || netip.AddrFrom4([4]byte(p[12:16])) != extIP {
					t.Fatalf("sent %x: want IPv4 from %s with a valid header checksum", p, extIP)
				}
			}
			for g.Queued() > 0 {
				buf := make([]byte, vswitch.Headroom+vswitch.MaxFrame)
				if _, err := g.Read(buf, vswitch.Headroom); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// FuzzFromUplinkGSO feeds arbitrary super-segments to FromUplinkGSO: no
// panic, and a frame it queues has a virtio_net_hdr that agrees with it.
func FuzzFromUplinkGSO(f *testing.F) {
	f.Add(make([]byte, 60), 1000)
	f.Fuzz(func(t *testing.T, in []byte, mss int) {
		g, up := newGSORouter(t, netip.MustParseAddr("192.0.0.1"))
		openTCP(t, g, lanIP)
		sent := up.Take()
		if len(sent) == 1 && len(in) >= 40 {
			// Aim at the mapping half of the time.
			copy(in[12:16], lanIP.AsSlice())
			copy(in[16:20], extIP.AsSlice())
			copy(in[22:24], sent[0][20:22])
		}
		g.FromUplinkGSO(in, mss)
		for g.Queued() > 0 {
			frame := readRaw(t, g)
			n := len(frame)
			h := gso.ParseHdr(frame)
			if h.GSOType == gso.TypeTCPv4 && (int(h.GSOSize) != mss || n-gso.HdrLen <= int(h.HdrLen)+mss) {
				t.Fatalf("virtio_net_hdr %+v for a %d-byte frame, mss %d", h, n-gso.HdrLen, mss)
			}
			if int(h.CsumStart)+int(h.CsumOffset)+2 > n-gso.HdrLen && h.Flags&gso.FlagNeedsCsum != 0 {
				t.Fatalf("checksum offsets %+v past the %d-byte frame", h, n-gso.HdrLen)
			}
		}
	})
}
