package gso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// spec describes a GSO frame for tests.
type spec struct {
	v6, udp bool
	vlan    bool
	mss     int
	flags   byte // TCP flags
	seq     uint32
	id      uint16
	opts    int // TCP option bytes (multiple of 4)
	payload []byte
}

// build returns the frame s describes, as a TAP with TSO/USO on hands it to
// the switch: NEEDS_CSUM with the pseudo-header sum in the checksum field.
func build(s spec) []byte {
	f := make([]byte, HdrLen, 128+len(s.payload))
	f = append(f, 0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa) // dst, src
	if s.vlan {
		f = append(f, 0x81, 0x00, 0x00, 0x05)
	}
	l3 := len(f) + 2
	proto := byte(wire.ProtoTCP)
	l4hdr := 20 + s.opts
	if s.udp {
		proto, l4hdr = wire.ProtoUDP, 8
	}
	l4len := l4hdr + len(s.payload)
	if s.v6 {
		f = append(f, 0x86, 0xdd)
		f = append(f, 0x60, 0, 0, 0)
		f = binary.BigEndian.AppendUint16(f, uint16(l4len))
		f = append(f, proto, 64)
		f = append(f, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
		f = append(f, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)
	} else {
		f = append(f, 0x08, 0x00)
		f = append(f, 0x45, 0)
		f = binary.BigEndian.AppendUint16(f, uint16(20+l4len))
		f = binary.BigEndian.AppendUint16(f, s.id)
		f = append(f, 0x40, 0, 64, proto, 0, 0) // DF, TTL, proto, checksum
		f = append(f, 198, 51, 100, 1, 198, 51, 100, 2)
		binary.BigEndian.PutUint16(f[l3+10:], checksum.Checksum(f[l3:l3+20], 0))
	}
	l4 := len(f)
	if s.udp {
		f = append(f, 0x30, 0x39, 0x14, 0x51) // ports 12345 -> 5201
		f = binary.BigEndian.AppendUint16(f, uint16(l4len))
		f = append(f, 0, 0)
	} else {
		f = append(f, 0x30, 0x39, 0x14, 0x51)
		f = binary.BigEndian.AppendUint32(f, s.seq)
		f = binary.BigEndian.AppendUint32(f, 0x01020304) // ack
		f = append(f, byte(l4hdr/4)<<4, s.flags|0x10)
		f = append(f, 0xff, 0xff, 0, 0, 0, 0) // window, checksum, urgent
		for i := 0; i < s.opts; i++ {
			f = append(f, 1) // NOP
		}
	}
	f = append(f, s.payload...)
	// The partial checksum: the pseudo-header sum, not complemented.
	var pseudo uint32
	if s.v6 {
		pseudo = checksum.Sum(f[l3+8:l3+40], uint32(proto)+uint32(l4len))
	} else {
		pseudo = checksum.Sum(f[l3+12:l3+20], uint32(proto)+uint32(l4len))
	}
	csumOff := uint16(16)
	if s.udp {
		csumOff = 6
	}
	binary.BigEndian.PutUint16(f[l4+int(csumOff):], checksum.Fold(pseudo))
	typ := uint8(TypeTCPv4)
	switch {
	case s.udp:
		typ = TypeUDPL4
	case s.v6:
		typ = TypeTCPv6
	}
	Hdr{Flags: FlagNeedsCsum, GSOType: typ, HdrLen: uint16(l4 - HdrLen + l4hdr), GSOSize: uint16(s.mss),
		CsumStart: uint16(l4 - HdrLen), CsumOffset: csumOff}.Put(f)
	return f
}

// check segments frame and verifies every invariant of Segmenter's doc
// against the spec it was built from.
func check(t *testing.T, s spec, frame []byte) [][]byte {
	t.Helper()
	var sg Segmenter
	if err := sg.Reset(frame); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	orig, err := parseIP(frame)
	if err != nil {
		t.Fatal(err)
	}
	var segs [][]byte
	var payload []byte
	for {
		dst := make([]byte, sg.MaxLen())
		n := sg.Next(dst)
		if n == 0 {
			break
		}
		segs = append(segs, dst[:n])
		if len(segs) > 70000 {
			t.Fatal("no end of segments")
		}
	}
	want := (len(s.payload) + s.mss - 1) / s.mss
	if want == 0 {
		want = 1
	}
	if len(segs) != want {
		t.Fatalf("segments: got %d, want %d (payload %d, mss %d)", len(segs), want, len(s.payload), s.mss)
	}
	for i, seg := range segs {
		last := i == len(segs)-1
		if !IsPlain(seg) || !bytes.Equal(seg[:HdrLen], make([]byte, HdrLen)) {
			t.Fatalf("segment %d: virtio_net_hdr % x, want zero", i, seg[:HdrLen])
		}
		l, err := parseIP(seg)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if l.end != len(seg) {
			t.Fatalf("segment %d: IP length ends at %d, frame at %d", i, l.end, len(seg))
		}
		if l.pay != orig.pay {
			t.Fatalf("segment %d: headers %d bytes, want %d", i, l.pay, orig.pay)
		}
		plen := len(seg) - l.pay
		if !last && plen != s.mss {
			t.Fatalf("segment %d: payload %d, want mss %d", i, plen, s.mss)
		}
		if last && plen > s.mss {
			t.Fatalf("last segment: payload %d > mss %d", plen, s.mss)
		}
		ip := seg[l.l3:]
		var pseudo uint32
		l4len := len(seg) - l.l4
		if l.v6 {
			pseudo = checksum.Sum(ip[8:40], uint32(l.proto)+uint32(l4len))
		} else {
			if c := checksum.Checksum(ip[:l.l4-l.l3], 0); c != 0 {
				t.Fatalf("segment %d: IPv4 header checksum does not verify (%#x)", i, c)
			}
			if got, want := binary.BigEndian.Uint16(ip[4:]), s.id+uint16(i); got != want {
				t.Fatalf("segment %d: IPv4 id %d, want %d", i, got, want)
			}
			pseudo = checksum.Sum(ip[12:20], uint32(l.proto)+uint32(l4len))
		}
		if c := checksum.Checksum(seg[l.l4:], pseudo); c != 0 {
			t.Fatalf("segment %d: transport checksum does not verify (%#x)", i, c)
		}
		tp := seg[l.l4:]
		if s.udp {
			if got := int(binary.BigEndian.Uint16(tp[4:])); got != l4len {
				t.Fatalf("segment %d: UDP length %d, want %d", i, got, l4len)
			}
		} else {
			if got, want := binary.BigEndian.Uint32(tp[4:]), s.seq+uint32(i*s.mss); got != want {
				t.Fatalf("segment %d: seq %d, want %d", i, got, want)
			}
			wantFlags := s.flags | 0x10
			if !last {
				wantFlags &^= wire.TCPFlagFIN | wire.TCPFlagPSH
			}
			if i > 0 {
				wantFlags &^= wire.TCPFlagCWR
			}
			if tp[13] != wantFlags {
				t.Fatalf("segment %d: flags %#x, want %#x", i, tp[13], wantFlags)
			}
		}
		payload = append(payload, seg[l.pay:]...)
	}
	if !bytes.Equal(payload, s.payload) {
		t.Fatal("payload of the segments differs from the frame's")
	}
	return segs
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func TestSegment(t *testing.T) {
	tests := []struct {
		name string
		s    spec
	}{
		{"tcp4 64KiB", spec{mss: 1448, flags: wire.TCPFlagPSH | wire.TCPFlagFIN | wire.TCPFlagCWR, seq: 0xfffff000, id: 0xfffe, opts: 12, payload: pattern(65000)}},
		{"tcp4 exact multiple", spec{mss: 1000, flags: wire.TCPFlagPSH, payload: pattern(3000)}},
		{"tcp4 one segment", spec{mss: 1460, flags: wire.TCPFlagPSH, payload: pattern(100)}},
		{"tcp4 odd mss and payload", spec{mss: 1001, payload: pattern(5003)}},
		{"tcp4 vlan", spec{vlan: true, mss: 1456, payload: pattern(9000)}},
		{"tcp6", spec{v6: true, mss: 1428, flags: wire.TCPFlagPSH | wire.TCPFlagCWR, seq: 77, payload: pattern(60000)}},
		{"udp4", spec{udp: true, mss: 1472, id: 9, payload: pattern(10000)}},
		{"udp6", spec{udp: true, v6: true, mss: 1452, payload: pattern(4000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.s, build(tt.s)) })
	}
}

func TestSegmentRejects(t *testing.T) {
	good := spec{mss: 1000, payload: pattern(3000)}
	tests := []struct {
		name   string
		mangle func(f []byte) []byte
		want   error
	}{
		{"short", func(f []byte) []byte { return f[:HdrLen+10] }, ErrMalformed},
		{"mss 0", func(f []byte) []byte { binary.LittleEndian.PutUint16(f[4:], 0); return f }, ErrMalformed},
		{"ufo", func(f []byte) []byte { f[1] = TypeUDP; return f }, ErrUnsupported},
		{"tcp6 type on ipv4", func(f []byte) []byte { f[1] = TypeTCPv6; return f }, ErrMalformed},
		{"ip length beyond frame", func(f []byte) []byte { return f[:len(f)-1] }, ErrMalformed},
		{"fragment", func(f []byte) []byte { f[HdrLen+14+6] |= 0x20; return f }, ErrMalformed},
		{"arp", func(f []byte) []byte { f[HdrLen+12], f[HdrLen+13] = 0x08, 0x06; return f }, ErrUnsupported},
		{"tcp data offset too big", func(f []byte) []byte { f[HdrLen+14+20+12] = 0xf0; return f }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sg Segmenter
			err := sg.Reset(tt.mangle(build(good)))
			if tt.want == nil {
				// Data offset 60 still fits in this frame: accepted
				// with a longer header; only must not panic.
				for dst := make([]byte, sg.MaxLen()); sg.Next(dst) > 0; {
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Reset: got %v, want %v", err, tt.want)
			}
			if n := sg.Next(make([]byte, 70000)); n != 0 {
				t.Fatalf("Next after a failed Reset: got %d, want 0", n)
			}
		})
	}
}

func TestCompleteChecksum(t *testing.T) {
	for _, s := range []spec{
		{mss: 1460, payload: pattern(100)},
		{v6: true, mss: 1460, payload: pattern(1001)},
		{udp: true, mss: 1460, payload: pattern(33)},
	} {
		f := build(s)
		f[1] = TypeNone
		if err := CompleteChecksum(f); err != nil {
			t.Fatal(err)
		}
		if f[0]&FlagNeedsCsum != 0 {
			t.Error("NEEDS_CSUM still set")
		}
		l, _ := parseIP(f)
		var pseudo uint32
		if l.v6 {
			pseudo = checksum.Sum(f[l.l3+8:l.l3+40], uint32(l.proto)+uint32(l.end-l.l4))
		} else {
			pseudo = checksum.Sum(f[l.l3+12:l.l3+20], uint32(l.proto)+uint32(l.end-l.l4))
		}
		if c := checksum.Checksum(f[l.l4:], pseudo); c != 0 {
			t.Errorf("v6=%v udp=%v: checksum does not verify (%#x)", s.v6, s.udp, c)
		}
		// Idempotent once complete.
		g := append([]byte(nil), f...)
		if err := CompleteChecksum(g); err != nil || !bytes.Equal(f, g) {
			t.Error("a second CompleteChecksum changed the frame")
		}
	}
	bad := build(spec{mss: 1460, payload: pattern(10)})
	binary.LittleEndian.PutUint16(bad[8:], 5000)
	if err := CompleteChecksum(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("offset beyond frame: got %v, want ErrMalformed", err)
	}
}

func TestSegmentAllocs(t *testing.T) {
	f := build(spec{mss: 1448, payload: pattern(65000)})
	dst := make([]byte, 70000)
	allocs := testing.AllocsPerRun(100, func() {
		var sg Segmenter
		if err := sg.Reset(f); err != nil {
			t.Fatal(err)
		}
		for sg.Next(dst) > 0 {
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per GSO frame: got %v, want 0", allocs)
	}
}

// FuzzSegment builds valid GSO frames from the fuzzer's parameters and
// checks every invariant of the segments.
func FuzzSegment(f *testing.F) {
	f.Add(false, false, false, uint16(1448), uint16(65000), byte(wire.TCPFlagPSH|wire.TCPFlagFIN), uint32(1), uint16(7), uint8(0))
	f.Add(true, false, true, uint16(1), uint16(300), byte(wire.TCPFlagCWR), uint32(0xffffffff), uint16(0xffff), uint8(3))
	f.Add(false, true, false, uint16(1472), uint16(1), byte(0), uint32(0), uint16(0), uint8(0))
	f.Add(true, true, false, uint16(65000), uint16(65000), byte(0), uint32(0), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, v6, udp, vlan bool, mss, plen uint16, flags byte, seq uint32, id uint16, opts uint8) {
		s := spec{v6: v6, udp: udp, vlan: vlan, mss: int(mss), flags: flags &^ 0x10, seq: seq, id: id, opts: int(opts%11) * 4}
		// Keep the IP packet within 64 KiB, as the kernel does.
		s.payload = pattern(min(int(plen), 65535-60-40-20-40))
		if s.mss == 0 {
			s.mss = 1
		}
		if s.mss < 8 && len(s.payload) > 4096 {
			s.payload = s.payload[:4096] // keep the fuzzer fast
		}
		check(t, s, build(s))
	})
}

// FuzzSegmentBytes feeds arbitrary bytes: no panic, segments within MaxLen.
func FuzzSegmentBytes(f *testing.F) {
	f.Add(build(spec{mss: 100, payload: pattern(1000)}))
	f.Add(build(spec{v6: true, udp: true, mss: 100, payload: pattern(250)}))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, frame []byte) {
		var sg Segmenter
		if sg.Reset(frame) != nil {
			return
		}
		dst := make([]byte, sg.MaxLen())
		for k := 0; ; k++ {
			n := sg.Next(dst)
			if n == 0 {
				break
			}
			if k > 70000 {
				t.Fatal("no end of segments")
			}
		}
		g := append([]byte(nil), frame...)
		_ = CompleteChecksum(g)
	})
}

func BenchmarkSegment(b *testing.B) {
	for _, tc := range []struct {
		name string
		s    spec
	}{
		{"tcp4-64KiB-mss1448", spec{mss: 1448, payload: pattern(65000)}},
		{"tcp6-64KiB-mss1428", spec{v6: true, mss: 1428, payload: pattern(65000)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := build(tc.s)
			dst := make([]byte, 70000)
			b.SetBytes(int64(len(tc.s.payload)))
			b.ReportAllocs()
			for b.Loop() {
				var sg Segmenter
				_ = sg.Reset(f)
				for sg.Next(dst) > 0 {
				}
			}
		})
	}
	b.Run("complete-checksum-1514", func(b *testing.B) {
		f := build(spec{mss: 1460, payload: pattern(1460)})
		f[1] = TypeNone
		h := ParseHdr(f)
		b.SetBytes(1460)
		b.ReportAllocs()
		for b.Loop() {
			h.Put(f) // CompleteChecksum zeroes it
			if err := CompleteChecksum(f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
