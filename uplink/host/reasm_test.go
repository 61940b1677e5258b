package host

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

// frag returns fragment [off, off+len(data)) of datagram id, with MF when
// more is set.
func frag(id uint16, off int, more bool, data []byte) []byte {
	p := make([]byte, ipHdrLen+len(data))
	ff := uint16(off / 8)
	if more {
		ff |= 0x2000
	}
	putIPv4(p, len(p), wire.ProtoUDP, [4]byte{192, 0, 0, 8}, [4]byte{198, 51, 100, 1}, id, ff)
	copy(p[ipHdrLen:], data)
	return p
}

func TestReassembly(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	tests := []struct {
		name  string
		order []int // fragment indexes: 0 [0,1480), 1 [1480,2960), 2 [2960,3000)
		dup   bool
	}{
		{"in order", []int{0, 1, 2}, false},
		{"last first", []int{2, 1, 0}, false},
		{"middle first, duplicate", []int{1, 1, 0, 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reassembly
			frags := [][]byte{
				frag(7, 0, true, payload[:1480]),
				frag(7, 1480, true, payload[1480:2960]),
				frag(7, 2960, false, payload[2960:]),
			}
			now := time.Now()
			for i, f := range tt.order {
				whole, dropped := r.add(frags[f], ipHdrLen, now)
				if dropped {
					t.Fatalf("fragment %d dropped", f)
				}
				if i < len(tt.order)-1 {
					if whole != nil {
						t.Fatalf("whole after %d fragments", i+1)
					}
					continue
				}
				if whole == nil {
					t.Fatalf("not whole after every fragment")
				}
				if got := int(binary.BigEndian.Uint16(whole[2:4])); got != ipHdrLen+3000 || !bytes.Equal(whole[ipHdrLen:], payload) {
					t.Fatalf("reassembled %d bytes (total length %d), want the 3000-byte payload", len(whole)-ipHdrLen, got)
				}
				if whole[6]&0x3f != 0 || whole[7] != 0 {
					t.Errorf("reassembled datagram still a fragment: %x", whole[6:8])
				}
			}
			if len(r.m) != 0 {
				t.Errorf("%d datagrams left in reassembly", len(r.m))
			}
		})
	}
	t.Run("timeout and limit", func(t *testing.T) {
		var r reassembly
		now := time.Now()
		for i := range reasmMax {
			if _, dropped := r.add(frag(uint16(i), 0, true, payload[:8]), ipHdrLen, now); dropped {
				t.Fatalf("fragment of datagram %d dropped", i)
			}
		}
		if _, dropped := r.add(frag(999, 0, true, payload[:8]), ipHdrLen, now); !dropped {
			t.Errorf("a datagram over the limit was taken")
		}
		if n := r.expire(now.Add(reasmTimeout + time.Second)); n != reasmMax {
			t.Errorf("expired %d, want %d", n, reasmMax)
		}
	})
	t.Run("inconsistent", func(t *testing.T) {
		var r reassembly
		now := time.Now()
		if _, dropped := r.add(frag(2, 8, true, payload[:5]), ipHdrLen, now); !dropped {
			t.Errorf("a middle fragment of 5 bytes was taken")
		}
		r.add(frag(3, 16, false, payload[:8]), ipHdrLen, now) // the datagram ends at 24
		if _, dropped := r.add(frag(3, 24, true, payload[:8]), ipHdrLen, now); !dropped {
			t.Errorf("a fragment past the end was taken")
		}
		if len(r.m) != 0 {
			t.Errorf("%d datagrams left after the inconsistency", len(r.m))
		}
	})
}

func FuzzReassembly(f *testing.F) {
	f.Add(frag(1, 0, true, make([]byte, 16)), frag(1, 16, false, make([]byte, 5)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var r reassembly
		for _, p := range [][]byte{a, b} {
			if len(p) < ipHdrLen {
				continue
			}
			whole, _ := r.add(p, ipHdrLen, time.Now())
			if whole != nil && (len(whole) < ipHdrLen || int(binary.BigEndian.Uint16(whole[2:4])) != len(whole)) {
				t.Fatalf("whole datagram of %d bytes says %d", len(whole), binary.BigEndian.Uint16(whole[2:4]))
			}
		}
	})
}
