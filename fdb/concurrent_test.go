package fdb

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrent runs learners and lookups on several goroutines while
// another expires entries and flushes ports, checking the table's
// bookkeeping as it goes and its counters at the end. Run it with -race.
//
// In a full table eviction usually removes an entry before it ages, so
// whether the random rounds ever age one depends on scheduling. Halfway the
// learners therefore wait while the control plane moves, flushes, learns and
// ages one MAC of its own (see exercise); every counter the test checks is
// then non-zero whatever the scheduler did.
func TestConcurrent(t *testing.T) {
	const (
		ports      = 8
		macs       = 512
		maxPerPort = 40
		maxEntries = 250
		ageing     = 3000 // ticks of the shared clock
		statics    = 16
	)
	ops := 20000
	if testing.Short() {
		ops = 2000
	}
	tb := newTable(t, Config{Ageing: ageing, MaxEntries: maxEntries, MaxPerPort: maxPerPort})
	// Static entries on keys the learners never use; FlushPort removes them.
	for i := range statics {
		if err := tb.AddStatic(key(10000+i), PortID(1+i%ports)); err != nil {
			t.Fatal(err)
		}
	}

	var clock atomic.Int64
	var learners, paused sync.WaitGroup
	resume := make(chan struct{})
	for g := range 4 {
		paused.Add(1)
		learners.Go(func() {
			halfway := false
			defer func() {
				if !halfway { // an early error return must not block the others
					paused.Done()
				}
			}()
			r := rand.New(rand.NewPCG(uint64(g), 42))
			for i := range ops {
				if i == ops/2 {
					halfway = true
					paused.Done()
					<-resume
				}
				now := clock.Add(1)
				k := key(r.IntN(macs))
				if r.IntN(3) == 0 {
					// A station mostly stays on the port its MAC hashes to,
					// and sometimes moves.
					port := PortID(1 + int(k.MAC[5])%ports)
					if r.IntN(50) == 0 {
						port = PortID(1 + r.IntN(ports))
					}
					switch res := tb.Learn(k, port, now); res {
					case Refreshed, Learned, Moved, LimitPort, LimitTotal:
					default:
						t.Errorf("Learn(%v, %d) = %v", k, port, res)
						return
					}
				} else if p, ok := tb.Lookup(k, now); ok != (p != NoPort) || p > ports {
					t.Errorf("Lookup(%v) = %d, %v", k, p, ok)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { learners.Wait(); close(done) }()
	allPaused := make(chan struct{})
	go func() { paused.Wait(); close(allPaused) }()

	r := rand.New(rand.NewPCG(99, 42))
	checks := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-allPaused:
			allPaused = nil
			err := exercise(tb, &clock, ports, ageing)
			close(resume)
			if err != nil {
				t.Fatal(err)
			}
		default:
		}
		switch r.IntN(16) {
		case 0:
			tb.FlushPort(PortID(1 + r.IntN(ports)))
		default:
			tb.Expire(clock.Load())
		}
		if err := tb.checkInvariants(); err != nil {
			t.Fatal(err)
		}
		checks++
	}

	if err := tb.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	st := tb.Stats()
	sum := st.Static
	for p := range PortID(ports + 1) {
		sum += tb.PortCount(p)
	}
	if got := tb.Len(); got != sum || got != st.Entries {
		t.Errorf("Len() = %d, Stats().Entries = %d, sum of per-port counts and statics = %d; want all equal", got, st.Entries, sum)
	}
	// Every entry that ever existed is still there, aged, was flushed or
	// was evicted.
	if in, out := st.Learned+statics, uint64(st.Entries)+st.Aged+st.Flushed+st.Evicted; in != out {
		t.Errorf("learned %d + static %d = %d, but entries %d + aged %d + flushed %d + evicted %d = %d",
			st.Learned, statics, in, st.Entries, st.Aged, st.Flushed, st.Evicted, out)
	}
	if st.Learned == 0 || st.Aged == 0 || st.Flushed == 0 || st.Moved == 0 {
		t.Errorf("the test did not exercise every path: %+v", st)
	}
	t.Logf("%d control-plane rounds; %+v", checks, st)
}

// exercise runs, while no learner runs, one Moved, one Flushed, one Learned
// and one Aged on a learner's MAC, so TestConcurrent's "every path" check
// holds however the goroutines were scheduled. The clock jumps past ageing,
// so every dynamic entry the learners left ages too.
func exercise(tb *Table, clock *atomic.Int64, ports int, ageing int64) error {
	// roomiest is the port with the fewest entries other than not; as
	// ports*MaxPerPort exceeds MaxEntries it is below MaxPerPort.
	roomiest := func(not PortID) PortID {
		best := NoPort
		for p := PortID(1); p <= PortID(ports); p++ {
			if p != not && (best == NoPort || tb.PortCount(p) < tb.PortCount(best)) {
				best = p
			}
		}
		return best
	}
	k := key(0)
	from := roomiest(NoPort)
	if res := tb.Learn(k, from, clock.Add(1)); res != Learned && res != Refreshed && res != Moved {
		return fmt.Errorf("Learn(%v, %d) = %v, want it in the table", k, from, res)
	}
	to := roomiest(from)
	steps := []struct {
		do   func() bool
		what string
	}{
		{func() bool { return tb.Learn(k, to, clock.Add(1)) == Moved }, "Learn on another port = Moved"},
		{func() bool { return tb.FlushPort(to) >= 1 }, "FlushPort removed the moved entry"},
		{func() bool { return tb.Learn(k, to, clock.Add(1)) == Learned }, "Learn after the flush = Learned"},
		{func() bool { return tb.Expire(clock.Add(ageing+1)) >= 1 }, "Expire past ageing aged the entry"},
	}
	for _, s := range steps {
		if !s.do() {
			return fmt.Errorf("%s: false; %+v", s.what, tb.Stats())
		}
		if err := tb.checkInvariants(); err != nil {
			return err
		}
	}
	return nil
}
