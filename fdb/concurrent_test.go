package fdb

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrent runs learners and lookups on several goroutines while
// another expires entries and flushes ports, checking the table's
// bookkeeping as it goes and its counters at the end. Run it with -race.
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
	var learners sync.WaitGroup
	for g := range 4 {
		learners.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 42))
			for range ops {
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

	r := rand.New(rand.NewPCG(99, 42))
	checks := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
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
