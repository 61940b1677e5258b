package capture

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestSessionDropAccounting(t *testing.T) {
	var p Point
	s, err := NewSession(Config{Slots: 4, BigSlots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p.Active() {
		t.Fatal("point active before Attach")
	}
	if i, err := s.Attach(&p, "c1"); err != nil || i != 0 {
		t.Fatalf("Attach: %d, %v", i, err)
	}
	small := testFrames()["echo a>b"]
	big := make([]byte, 9000)
	// Nobody reads: 4 small records, then drops.
	for range 10 {
		p.Deliver(In, small)
	}
	p.Deliver(Out, big)
	p.Deliver(Out, big)
	st := s.Stats()[0]
	if st.Received != 12 || st.Dropped != 7 {
		t.Errorf("session stats: received %d dropped %d, want 12 and 7", st.Received, st.Dropped)
	}
	if ps := p.Stats(); ps.Captured != 5 || ps.Dropped != 7 {
		t.Errorf("point stats: %+v, want 5 captured, 7 dropped", ps)
	}
	// Reading frees records for the next frames.
	var got []*Record
	for range 5 {
		r, err := s.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if r := s.TryNext(); r != nil {
		t.Errorf("a sixth record: %+v", r)
	}
	if !bytes.Equal(got[0].Data, small) || got[0].Dir != In || got[0].Len != len(small) || got[0].Iface != 0 {
		t.Errorf("first record: %+v", got[0])
	}
	if len(got[4].Data) != 9000 || got[4].Dir != Out {
		t.Errorf("big record: %d bytes, dir %v", len(got[4].Data), got[4].Dir)
	}
	if d := time.Since(time.Unix(0, got[0].Time)); d < 0 || d > time.Minute {
		t.Errorf("timestamp %v ago", d)
	}
	for _, r := range got {
		s.Release(r)
	}
	p.Deliver(In, small)
	if st := s.Stats()[0]; st.Received != 13 || st.Dropped != 7 {
		t.Errorf("after release: %+v", st)
	}
	s.Close()
	if p.Active() {
		t.Error("point still active after Close")
	}
	p.Deliver(In, small) // no session: nothing counted
	if ps := p.Stats(); ps.Captured != 6 {
		t.Errorf("captured after close: %d, want 6", ps.Captured)
	}
	if r := s.TryNext(); r == nil {
		t.Error("the frame captured before Close is gone")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: %v", err)
	}
}

func TestSessionFilterAndSnaplen(t *testing.T) {
	var a, b Point
	s, err := NewSession(Config{Filter: "icmp", Snaplen: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Attach(&a, "a")
	if i, _ := s.Attach(&b, "b"); i != 1 {
		t.Fatalf("second interface index %d", i)
	}
	fr := testFrames()
	a.Deliver(In, fr["arp request"])
	b.Deliver(Out, fr["echo b>a"])
	r := s.TryNext()
	if r == nil || r.Iface != 1 || len(r.Data) != 20 || r.Len != len(fr["echo b>a"]) {
		t.Fatalf("record %+v", r)
	}
	if s.TryNext() != nil {
		t.Error("the ARP frame passed the icmp filter")
	}
	if st := s.Stats(); st[0].Received != 0 || st[1].Received != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := NewSession(Config{Filter: "port"}); !errors.Is(err, ErrBadFilter) {
		t.Errorf("bad filter: %v", err)
	}
}

// TestDeliverAllocs pins the datapath's cost: nothing allocated with or
// without a session, filter or not.
func TestDeliverAllocs(t *testing.T) {
	frame := testFrames()["tcp a:40000>b:80"]
	var p Point
	if n := testing.AllocsPerRun(1000, func() { p.Deliver(In, frame) }); n != 0 {
		t.Errorf("no session: %v allocations", n)
	}
	for _, filter := range []string{"", "tcp port 80 and host 10.90.0.3"} {
		s, err := NewSession(Config{Filter: filter, Slots: 4})
		if err != nil {
			t.Fatal(err)
		}
		s.Attach(&p, "p")
		n := testing.AllocsPerRun(1000, func() {
			p.Deliver(In, frame)
			if r := s.TryNext(); r != nil {
				s.Release(r)
			}
		})
		if n != 0 {
			t.Errorf("filter %q: %v allocations per frame", filter, n)
		}
		s.Close()
	}
}

func BenchmarkDeliver(b *testing.B) {
	frame := testFrames()["tcp a:40000>b:80"]
	b.Run("none", func(b *testing.B) {
		var p Point
		for b.Loop() {
			p.Deliver(In, frame)
		}
	})
	for _, filter := range []string{"", "tcp port 80 and host 10.90.0.3"} {
		b.Run("filter="+filter, func(b *testing.B) {
			var p Point
			s, _ := NewSession(Config{Filter: filter})
			s.Attach(&p, "p")
			defer s.Close()
			for b.Loop() {
				p.Deliver(In, frame)
				if r := s.TryNext(); r != nil {
					s.Release(r)
				}
			}
		})
	}
}
