package vxlan

import (
	"testing"

	"github.com/tapswitch/tapswitch/switch/gso"
)

func TestSegmentsPerSend(t *testing.T) {
	for _, tt := range []struct{ mtu, want int }{
		{1450, 44}, // 64768 bytes of datagrams of 1472 in one sendmsg
		{1500, 42},
		{1430, 44},
		{9000, 7},
		{68, udpMaxSegments}, // tiny segments: the kernel's count bounds it
		{65521, 1},           // one segment never fits: still one
	} {
		got := SegmentsPerSend(tt.mtu)
		if got != tt.want {
			t.Errorf("SegmentsPerSend(%d) = %d, want %d", tt.mtu, got, tt.want)
		}
		if tt.mtu <= 9000 && got*(HeaderLen+18+tt.mtu) > gsoMaxTotal {
			t.Errorf("SegmentsPerSend(%d) = %d: %d bytes, over one sendmsg's %d", tt.mtu, got, got*(HeaderLen+18+tt.mtu), gsoMaxTotal)
		}
	}
}

// TestTunnelSuperFrameWhole checks what the container's gso_max_segs
// relies on: a super-frame of SegmentsPerSend(mtu) full segments crosses
// in one sendmsg and comes out of the receiving tunnel as one super-frame
// of as many segments, and one segment more takes two.
func TestTunnelSuperFrameWhole(t *testing.T) {
	const mtu = 1450
	const mss = mtu - 40 // IPv4 and TCP headers without options
	n := SegmentsPerSend(mtu)
	for _, tt := range []struct{ segs, reads int }{{n, 1}, {n + 1, 2}} {
		a, b := pair(t, nil)
		if _, err := a.Write(tcpSuperFrame(tt.segs*mss, mss), 0); err != nil {
			t.Fatal(err)
		}
		var counts []int
		for got := 0; got < tt.segs; {
			f := readFrame(t, b)
			k := 1
			if !gso.IsPlain(f) {
				k = len(segmentsOf(t, f))
			}
			counts = append(counts, k)
			got += k
		}
		if len(counts) != tt.reads {
			t.Errorf("a super-frame of %d segments (MTU %d) came out as %v segments per frame, want %d frames", tt.segs, mtu, counts, tt.reads)
		}
	}
}
