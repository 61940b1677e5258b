package vswitch

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
)

// sinkPort takes frames and counts them; its Read blocks until Close.
type sinkPort struct {
	name   string
	frames atomic.Uint64
	done   chan struct{}
}

func newSink(name string) *sinkPort { return &sinkPort{name: name, done: make(chan struct{})} }

func (p *sinkPort) Read(buf []byte, off int) (int, error) { <-p.done; return 0, errClosedForTest }
func (p *sinkPort) Write(buf []byte, off int) (int, error) {
	p.frames.Add(1)
	return len(buf) - off, nil
}
func (p *sinkPort) Close() error {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	return nil
}
func (p *sinkPort) Name() string { return p.name }

var errClosedForTest = errTest("closed")

type errTest string

func (e errTest) Error() string { return string(e) }

// testFrame writes a 64-byte frame dst <- src after Headroom in buf and
// returns its length with the virtio_net_hdr.
func testFrame(buf []byte, dst, src fdb.MAC) int {
	f := buf[Headroom:]
	clear(f[:VnetHdrLen])
	eth := f[VnetHdrLen:]
	copy(eth[0:6], dst[:])
	copy(eth[6:12], src[:])
	binary.BigEndian.PutUint16(eth[12:14], 0x0800)
	return VnetHdrLen + 64
}

func allocRig(t testing.TB, n int) (*Switch, []*port) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var ports []*port
	for i := range n {
		id, err := s.AddPort(newSink(string(rune('a' + i))))
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, s.ports.Load().byID[id])
	}
	return s, ports
}

func TestForwardAllocs(t *testing.T) {
	s, ports := allocRig(t, 3)
	defer s.Close()
	a, b := ports[0], ports[1]
	macA, macB := fdb.MAC{2, 0, 0, 0, 0, 0xa}, fdb.MAC{2, 0, 0, 0, 0, 0xb}
	bcast := fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	buf := make([]byte, BufSize)
	// B is learned on b.
	s.forward(b, buf, Headroom, testFrame(buf, bcast, macB))
	tests := []struct {
		name     string
		dst, src fdb.MAC
	}{
		{"known unicast", macB, macA},
		{"broadcast flood", bcast, macA},
		{"unknown unicast flood", fdb.MAC{2, 9, 9, 9, 9, 9}, macA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testFrame(buf, tt.dst, tt.src)
			allocs := testing.AllocsPerRun(1000, func() { s.forward(a, buf, Headroom, n) })
			if allocs != 0 {
				t.Errorf("allocations per forwarded frame: got %v, want 0", allocs)
			}
		})
	}
	if got := b.p.(*sinkPort).frames.Load(); got == 0 {
		t.Error("b received no frames")
	}
}

func BenchmarkForward(b *testing.B) {
	s, ports := allocRig(b, 3)
	defer s.Close()
	macA, macB := fdb.MAC{2, 0, 0, 0, 0, 0xa}, fdb.MAC{2, 0, 0, 0, 0, 0xb}
	buf := make([]byte, BufSize)
	s.forward(ports[1], buf, Headroom, testFrame(buf, fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macB))
	b.Run("known-unicast", func(b *testing.B) {
		n := testFrame(buf, macB, macA)
		b.ReportAllocs()
		for b.Loop() {
			s.forward(ports[0], buf, Headroom, n)
		}
	})
	b.Run("flood", func(b *testing.B) {
		n := testFrame(buf, fdb.MAC{2, 9, 9, 9, 9, 9}, macA)
		b.ReportAllocs()
		for b.Loop() {
			s.forward(ports[0], buf, Headroom, n)
		}
	})
}
