package vxlan

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// segmentsOf cuts a super-frame into its segments (virtio_net_hdr first).
func segmentsOf(t testing.TB, f []byte) [][]byte {
	var sg gso.Segmenter
	if err := sg.Reset(f); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		seg := make([]byte, 2048)
		n := sg.Next(seg)
		if n == 0 {
			return out
		}
		out = append(out, seg[:n])
	}
}

// coalesceAll runs segs (virtio_net_hdr first) through groStart and add,
// and returns the frame and how many segments joined.
func coalesceAll(segs [][]byte) ([]byte, int) {
	buf := make([]byte, 70000)
	n := copy(buf, segs[0])
	g, ok := groStart(buf, n)
	if !ok {
		return buf[:n], 0
	}
	for _, s := range segs[1:] {
		if !g.add(s[gso.HdrLen:]) {
			break
		}
	}
	return buf[:g.finish()], g.segs
}

// tcpSuperFrame6 is tcpSuperFrame over IPv6 (GSO_TCPV6).
func tcpSuperFrame6(payload, mss int) []byte { return tcpSuperFrameIP(true, payload, mss) }

func TestGRO(t *testing.T) {
	for _, fam := range []struct {
		name  string
		frame func(payload, mss int) []byte
		l4    int // offset of TCP in a segment, virtio_net_hdr first
		v6    bool
	}{{"ipv4", tcpSuperFrame, gso.HdrLen + 34, false}, {"ipv6", tcpSuperFrame6, gso.HdrLen + 54, true}} {
		fix := func(seg []byte) { // recompute the TCP checksum after a change
			ip := seg[gso.HdrLen+14:]
			tcp := seg[fam.l4:]
			binary.BigEndian.PutUint16(tcp[16:], 0)
			binary.BigEndian.PutUint16(tcp[16:], checksum.Checksum(tcp, pseudo(ip, fam.v6, len(tcp))))
		}
		for _, c := range []struct {
			name   string
			mutate func(segs [][]byte)
			joined int
		}{
			{"whole", func([][]byte) {}, 5},
			{"bad checksum", func(s [][]byte) { s[2][len(s[2])-1] ^= 1 }, 2},
			{"bad first checksum", func(s [][]byte) { s[0][len(s[0])-1] ^= 1 }, 1},
			{"gap", func(s [][]byte) { binary.BigEndian.PutUint32(s[3][fam.l4+4:], 1); fix(s[3]) }, 3},
			{"other port", func(s [][]byte) { s[1][fam.l4] ^= 1; fix(s[1]) }, 1},
			{"PSH ends the run", func(s [][]byte) { s[2][fam.l4+13] |= wire.TCPFlagPSH; fix(s[2]) }, 3},
			{"SYN never starts one", func(s [][]byte) { s[0][fam.l4+13] |= wire.TCPFlagSYN; fix(s[0]) }, 0},
			{"other MAC", func(s [][]byte) { s[4][gso.HdrLen] ^= 2 }, 4},
		} {
			t.Run(fam.name+"/"+c.name, func(t *testing.T) {
				segs := segmentsOf(t, fam.frame(5*1000, 1000))
				c.mutate(segs)
				got, joined := coalesceAll(segs)
				if joined != c.joined {
					t.Fatalf("%d segments joined, want %d", joined, c.joined)
				}
				if joined < 2 {
					if !bytes.Equal(got, segs[0]) {
						t.Errorf("a run of one changed the frame")
					}
					return
				}
				wantResegmented(t, got, joined, segs)
			})
		}
	}
}

// FuzzGRO offers an arbitrary frame to a run of valid segments: nothing
// panics, and whatever was joined segments back into the segments given.
// Seed testdata/fuzz/FuzzGRO/9068f4245d5594b4, found by the fuzzer: a
// segment whose IPv4 header checksum is wrong, which a run must refuse.
func FuzzGRO(f *testing.F) { fuzzGRO(f, segmentsOf(f, tcpSuperFrame(3*500, 500))) }

// FuzzGRO6 is FuzzGRO over IPv6.
func FuzzGRO6(f *testing.F) { fuzzGRO(f, segmentsOf(f, tcpSuperFrame6(3*500, 500))) }

func fuzzGRO(f *testing.F, segs [][]byte) {
	f.Add(segs[2][gso.HdrLen:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, extra []byte) {
		in := append(append([][]byte{}, segs[:2]...), append(make([]byte, gso.HdrLen), extra...))
		got, joined := coalesceAll(in)
		if joined < 2 {
			return
		}
		wantResegmented(t, got, joined, in)
	})
}

// wantResegmented fails t unless segmenting the super-frame got, which
// joined segments, gives back exactly the first joined frames of in.
func wantResegmented(t testing.TB, got []byte, joined int, in [][]byte) {
	t.Helper()
	back := segmentsOf(t, got)
	if len(back) != joined {
		t.Fatalf("super-frame of %d segments, %d joined", len(back), joined)
	}
	for i := range back {
		if !bytes.Equal(back[i], in[i]) {
			t.Errorf("segment %d: got %x, want %x", i, back[i], in[i])
		}
	}
}
