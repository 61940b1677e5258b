package vswitch

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

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

// offloadSink is a sinkPort that takes checksum and TSO offloads.
type offloadSink struct{ *sinkPort }

func (offloadSink) Offloads() Offloads { return OffloadCsum | OffloadTSO4 | OffloadTSO6 }

// gsoFrame writes, after Headroom in buf, a TCP/IPv4 super-frame dst <- src
// with payload bytes to be cut into 1448-byte segments, and returns its
// length with the virtio_net_hdr. The checksums are left zero: the
// segmenter computes them from scratch.
func gsoFrame(buf []byte, dst, src fdb.MAC, payload int) int {
	f := buf[Headroom:]
	clear(f[:VnetHdrLen+54])
	f[0], f[1] = 1, 1 // NEEDS_CSUM, GSO_TCPV4
	binary.LittleEndian.PutUint16(f[4:], 1448)
	binary.LittleEndian.PutUint16(f[6:], 34)
	binary.LittleEndian.PutUint16(f[8:], 16)
	eth := f[VnetHdrLen:]
	copy(eth[0:6], dst[:])
	copy(eth[6:12], src[:])
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := eth[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
	ip[20+12] = 0x50
	return VnetHdrLen + 54 + payload
}

// gsoRig is a switch with three ports, a and c with offloads and b
// without; b's and c's MACs have been learned.
type gsoRig struct {
	s                *Switch
	a, b, c          *port
	macA, macB, macC fdb.MAC
	buf              []byte
}

func newGSORig(tb testing.TB) *gsoRig {
	tb.Helper()
	s, err := New(Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	r := &gsoRig{
		s:    s,
		macA: fdb.MAC{2, 0, 0, 0, 0, 0xa}, macB: fdb.MAC{2, 0, 0, 0, 0, 0xb}, macC: fdb.MAC{2, 0, 0, 0, 0, 0xc},
		buf: make([]byte, BufSize),
	}
	var ports []*port
	for i, p := range []Port{offloadSink{newSink("a")}, newSink("b"), offloadSink{newSink("c")}} {
		id, err := s.AddPort(p)
		if err != nil {
			tb.Fatal(err, i)
		}
		ports = append(ports, s.ports.Load().byID[id])
	}
	r.a, r.b, r.c = ports[0], ports[1], ports[2]
	bcast := fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	s.forward(r.b, r.buf, Headroom, testFrame(r.buf, bcast, r.macB))
	s.forward(r.c, r.buf, Headroom, testFrame(r.buf, bcast, r.macC))
	return r
}

func TestForwardGSOAllocs(t *testing.T) {
	r := newGSORig(t)
	s, a, b, buf := r.s, r.a, r.b, r.buf
	macA, macB, macC := r.macA, r.macB, r.macC
	tests := []struct {
		name string
		dst  fdb.MAC
		want uint64 // frames b gets per forward
	}{
		{"super-frame to an offload port, whole", macC, 0},
		{"super-frame to a non-offload port, segmented", macB, 45},
		{"super-frame flooded to both", fdb.MAC{2, 9, 9, 9, 9, 9}, 45},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := gsoFrame(buf, tt.dst, macA, 65000)
			before := b.p.(*sinkPort).frames.Load()
			allocs := testing.AllocsPerRun(100, func() { s.forward(a, buf, Headroom, n) })
			if allocs != 0 {
				t.Errorf("allocations per forwarded super-frame: got %v, want 0", allocs)
			}
			if got := b.p.(*sinkPort).frames.Load() - before; got != 101*tt.want {
				t.Errorf("frames to b: got %d, want %d", got, 101*tt.want)
			}
		})
	}
}

func BenchmarkForwardGSO(b *testing.B) {
	r := newGSORig(b)
	for _, tc := range []struct {
		name string
		dst  fdb.MAC
	}{{"64KiB-whole", r.macC}, {"64KiB-segmented", r.macB}} {
		b.Run(tc.name, func(b *testing.B) {
			n := gsoFrame(r.buf, tc.dst, r.macA, 65000)
			b.SetBytes(65000)
			b.ReportAllocs()
			for b.Loop() {
				r.s.forward(r.a, r.buf, Headroom, n)
			}
		})
	}
}

// parseSink keeps the compiler from dropping BenchmarkParse's work.
var parseSink Offloads

// BenchmarkParse measures what forward reads of every frame before the FDB:
// the MACs and the virtio_net_hdr's offload needs.
func BenchmarkParse(b *testing.B) {
	buf := make([]byte, BufSize)
	for _, tc := range []struct {
		name string
		n    int
	}{
		{"plain", testFrame(buf, fdb.MAC{2, 0, 0, 0, 0, 0xb}, fdb.MAC{2, 0, 0, 0, 0, 0xa})},
		{"gso", gsoFrame(buf, fdb.MAC{2, 0, 0, 0, 0, 0xb}, fdb.MAC{2, 0, 0, 0, 0, 0xa}, 65000)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.name == "plain" {
				testFrame(buf, fdb.MAC{2, 0, 0, 0, 0, 0xb}, fdb.MAC{2, 0, 0, 0, 0, 0xa})
			} else {
				gsoFrame(buf, fdb.MAC{2, 0, 0, 0, 0, 0xb}, fdb.MAC{2, 0, 0, 0, 0, 0xa}, 65000)
			}
			frame := buf[Headroom : Headroom+tc.n]
			b.ReportAllocs()
			for b.Loop() {
				eth := frame[VnetHdrLen:]
				dst, src := fdb.MAC(eth[0:6]), fdb.MAC(eth[6:12])
				if dst.IsMulticast() || src.IsZero() {
					parseSink++
				}
				parseSink |= frameNeeds(frame)
			}
		})
	}
}

// clockSink keeps the compiler from dropping BenchmarkClock's work.
var clockSink int64

// BenchmarkClock compares what a frame paid for the time before the coarse
// clock (time.Since, a vDSO clock_gettime) with what it pays now (an atomic
// load of Switch.coarse).
func BenchmarkClock(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("time.Since", func(b *testing.B) {
		epoch := time.Now()
		for b.Loop() {
			clockSink += int64(time.Since(epoch))
		}
	})
	b.Run("coarse", func(b *testing.B) {
		for b.Loop() {
			clockSink += s.clock()
		}
	})
}
