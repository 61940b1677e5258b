package vswitch

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
)

// TestCaptureForward checks what the capture points of the ports see of a
// forwarded frame: it comes In at the ingress port and goes Out at the
// egress port, without its virtio_net_hdr; a flood goes Out everywhere.
func TestCaptureForward(t *testing.T) {
	s, ports := allocRig(t, 3)
	defer s.Close()
	a, b := ports[0], ports[1]
	sess, err := capture.NewSession(capture.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for i, pt := range ports {
		p, err := s.CapturePoint(pt.id)
		if err != nil {
			t.Fatal(err)
		}
		if idx, err := sess.Attach(p, pt.p.Name()); err != nil || idx != i {
			t.Fatalf("attach %s: %d, %v", pt.p.Name(), idx, err)
		}
	}
	macA, macB := fdb.MAC{2, 0, 0, 0, 0, 0xa}, fdb.MAC{2, 0, 0, 0, 0, 0xb}
	bcast := fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	buf := make([]byte, BufSize)

	type seen struct {
		iface int
		dir   capture.Direction
	}
	collect := func() []seen {
		var out []seen
		for r := sess.TryNext(); r != nil; r = sess.TryNext() {
			if !bytes.Equal(r.Data, buf[Headroom+VnetHdrLen:Headroom+VnetHdrLen+64]) || r.Len != 64 {
				t.Errorf("captured frame is not the Ethernet frame: % x", r.Data)
			}
			out = append(out, seen{r.Iface, r.Dir})
			sess.Release(r)
		}
		return out
	}
	// A broadcast from b: in at b, out at a and c.
	s.forward(b, buf, Headroom, testFrame(buf, bcast, macB))
	if got, want := collect(), []seen{{1, capture.In}, {0, capture.Out}, {2, capture.Out}}; !slices.Equal(got, want) {
		t.Errorf("broadcast: got %v, want %v", got, want)
	}
	// Known unicast a -> b.
	s.forward(a, buf, Headroom, testFrame(buf, macB, macA))
	if got, want := collect(), []seen{{0, capture.In}, {1, capture.Out}}; !slices.Equal(got, want) {
		t.Errorf("unicast: got %v, want %v", got, want)
	}
	if _, err := s.CapturePoint(99); !errors.Is(err, ErrNoPort) {
		t.Errorf("CapturePoint(99): %v", err)
	}
}

// TestForwardAllocsCapturing: forwarding allocates nothing while a capture
// runs either.
func TestForwardAllocsCapturing(t *testing.T) {
	s, ports, sess, buf, n := capturingRig(t, capture.Config{Filter: "not arp", Slots: 8})
	defer s.Close()
	defer sess.Close()
	allocs := testing.AllocsPerRun(1000, func() {
		s.forward(ports[0], buf, Headroom, n)
		for r := sess.TryNext(); r != nil; r = sess.TryNext() {
			sess.Release(r)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per forwarded frame while capturing: got %v, want 0", allocs)
	}
}

// BenchmarkForwardCapturing is BenchmarkForward's known-unicast case with a
// capture running at both ports, read as fast as it fills.
func BenchmarkForwardCapturing(b *testing.B) {
	s, ports, sess, buf, n := capturingRig(b, capture.Config{})
	defer s.Close()
	defer sess.Close()
	b.ReportAllocs()
	for b.Loop() {
		s.forward(ports[0], buf, Headroom, n)
		for r := sess.TryNext(); r != nil; r = sess.TryNext() {
			sess.Release(r)
		}
	}
}

// capturingRig is a two-port switch with a capture session of cfg attached
// to both ports, B learned on the second port, and in buf a known-unicast
// frame of length n from A to B to forward from the first.
func capturingRig(tb testing.TB, cfg capture.Config) (*Switch, []*port, *capture.Session, []byte, int) {
	tb.Helper()
	s, ports := allocRig(tb, 2)
	sess, err := capture.NewSession(cfg)
	if err != nil {
		s.Close()
		tb.Fatal(err)
	}
	for _, pt := range ports {
		p, _ := s.CapturePoint(pt.id)
		sess.Attach(p, pt.p.Name())
	}
	macA, macB := fdb.MAC{2, 0, 0, 0, 0, 0xa}, fdb.MAC{2, 0, 0, 0, 0, 0xb}
	buf := make([]byte, BufSize)
	s.forward(ports[1], buf, Headroom, testFrame(buf, fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macB))
	return s, ports, sess, buf, testFrame(buf, macB, macA)
}
