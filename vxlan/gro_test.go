package vxlan

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/switch/gso"
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

func TestGRO(t *testing.T) {
	fix := func(seg []byte) { // recompute the TCP checksum after a change
		ip := seg[gso.HdrLen+14:]
		binary.BigEndian.PutUint16(ip[36:], 0)
		binary.BigEndian.PutUint16(ip[36:], ^foldPseudo(ip))
	}
	for _, c := range []struct {
		name   string
		mutate func(segs [][]byte)
		joined int
	}{
		{"whole", func([][]byte) {}, 5},
		{"bad checksum", func(s [][]byte) { s[2][len(s[2])-1] ^= 1 }, 2},
		{"bad first checksum", func(s [][]byte) { s[0][len(s[0])-1] ^= 1 }, 1},
		{"gap", func(s [][]byte) { binary.BigEndian.PutUint32(s[3][gso.HdrLen+34+4:], 1); fix(s[3]) }, 3},
		{"other port", func(s [][]byte) { s[1][gso.HdrLen+34] ^= 1; fix(s[1]) }, 1},
		{"PSH ends the run", func(s [][]byte) { s[2][gso.HdrLen+34+13] |= tcpPSH; fix(s[2]) }, 3},
		{"SYN never starts one", func(s [][]byte) { s[0][gso.HdrLen+34+13] |= tcpSYN; fix(s[0]) }, 0},
		{"other MAC", func(s [][]byte) { s[4][gso.HdrLen] ^= 2 }, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := tcpSuperFrame(5*1000, 1000)
			segs := segmentsOf(t, f)
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
			back := segmentsOf(t, got)
			if len(back) != joined {
				t.Fatalf("super-frame of %d segments, want %d", len(back), joined)
			}
			for i := range back {
				if !bytes.Equal(back[i], segs[i]) {
					t.Errorf("segment %d: got %x, want %x", i, back[i][:60], segs[i][:60])
				}
			}
		})
	}
}

// foldPseudo returns the folded sum of the TCP segment of the IPv4 packet
// ip with its pseudo-header.
func foldPseudo(ip []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20])
	sum += 6 + uint32(len(ip)-20)
	add(ip[20:])
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// FuzzGRO offers an arbitrary frame to a run of valid segments: nothing
// panics, and whatever was joined segments back into the segments given.
// Seed testdata/fuzz/FuzzGRO/9068f4245d5594b4, found by the fuzzer: a
// segment whose IPv4 header checksum is wrong, which a run must refuse.
func FuzzGRO(f *testing.F) {
	segs := segmentsOf(f, tcpSuperFrame(3*500, 500))
	f.Add(segs[2][gso.HdrLen:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, extra []byte) {
		in := append(append([][]byte{}, segs[:2]...), append(make([]byte, gso.HdrLen), extra...))
		got, joined := coalesceAll(in)
		if joined < 2 {
			return
		}
		back := segmentsOf(t, got)
		if len(back) != joined {
			t.Fatalf("%d segments back, %d joined", len(back), joined)
		}
		for i := range back {
			if !bytes.Equal(back[i], in[i]) {
				t.Fatalf("segment %d changed: %x, want %x", i, back[i], in[i])
			}
		}
	})
}
