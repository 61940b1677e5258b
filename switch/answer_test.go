package vswitch

import (
	"sync/atomic"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
)

// answerPort is an Answerer that answers every frame written to it with
// WriteAnswer at once: the frame sent back from its own MAC, to the
// frame's source, or to bcast when set. Write counts in the sink.
type answerPort struct {
	*sinkPort
	mac     fdb.MAC
	bcast   bool
	answers atomic.Uint64
}

func (p *answerPort) WriteAnswer(buf []byte, off int, ans []byte, ansOff int) (int, int, error) {
	p.answers.Add(1)
	f := buf[off:]
	a := ans[ansOff:]
	n := copy(a, f)
	eth := a[VnetHdrLen:]
	copy(eth[0:6], f[VnetHdrLen+6:VnetHdrLen+12])
	if p.bcast {
		copy(eth[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	copy(eth[6:12], p.mac[:])
	return len(f), n, nil
}

// TestAnswerer: an Answerer's answer to a frame is forwarded before the
// write returns, on the writer's goroutine, to the frame's sender; the
// answer's own outputs are plain writes, also to another Answerer (no
// answer to an answer), and nothing is allocated per answered frame.
func TestAnswerer(t *testing.T) {
	s, ports := allocRig(t, 2)
	defer s.Close()
	a := ports[0]
	macA, macG, macH := fdb.MAC{2, 0, 0, 0, 0, 0xa}, fdb.MAC{2, 0, 0, 0, 0, 0x61}, fdb.MAC{2, 0, 0, 0, 0, 0x62}
	g := &answerPort{sinkPort: newSink("g"), mac: macG}
	h := &answerPort{sinkPort: newSink("h"), mac: macH, bcast: true}
	gid, err := s.AddPort(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddPort(h); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, BufSize)
	// A frame to g's MAC, unknown yet: flooded to b, g and h; g and h
	// answer, g to a, h to everyone; h's answer reaches g with Write,
	// and g's answer (to a) never reaches h.
	s.forward(a, buf, Headroom, testFrame(buf, macG, macA))
	if g.answers.Load() != 1 || h.answers.Load() != 1 {
		t.Fatalf("answers asked of g and h: %d, %d; want 1 each", g.answers.Load(), h.answers.Load())
	}
	aGot := a.p.(*sinkPort).frames.Load()
	if aGot != 2 || g.frames.Load() != 1 || h.frames.Load() != 0 {
		t.Errorf("frames written: a %d (want g's and h's answers), g %d (want h's answer), h %d (want none)",
			aGot, g.frames.Load(), h.frames.Load())
	}
	if st := a.stats.snapshot(); st.TxPackets != 2 {
		t.Errorf("a's TxPackets %d, want 2", st.TxPackets)
	}
	if st, _ := s.Stats(gid); st.RxPackets != 1 || st.TxPackets != 2 {
		t.Errorf("g's stats %+v: want 1 frame received from it (its answer), 2 sent to it", st)
	}
	// Now g's MAC is known: a frame to it goes to g alone, and its
	// answer to a, allocation-free.
	n := testFrame(buf, macG, macA)
	before := aGot
	allocs := testing.AllocsPerRun(1000, func() { s.forward(a, buf, Headroom, n) })
	if allocs != 0 {
		t.Errorf("allocations per answered frame: got %v, want 0", allocs)
	}
	if got := a.p.(*sinkPort).frames.Load() - before; got != 1001 {
		t.Errorf("a got %d answers to 1001 frames", got)
	}
}
