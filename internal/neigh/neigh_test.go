package neigh

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type ip4 = [4]byte

const sec = int64(time.Second)

var (
	macA = [6]byte{2, 0, 0, 0, 0, 0xa}
	macB = [6]byte{2, 0, 0, 0, 0, 0xb}
	ipA  = ip4{10, 0, 0, 2}
	ipB  = ip4{10, 0, 0, 3}
)

func newCache(limit int) *Cache[ip4, int] {
	return New[ip4, int](Config{Timeout: 60 * time.Second, Limit: limit})
}

func TestLookupStates(t *testing.T) {
	c := newCache(8)
	c.Learn(ipA, macA, 100*sec, true)
	for _, tt := range []struct {
		name  string
		now   int64
		state State
	}{
		{"fresh", 100 * sec, Reachable},
		{"under half the timeout", 129 * sec, Reachable},
		{"past half: refresh", 131 * sec, Refresh},
		{"refreshed less than a second ago", 131*sec + sec/2, Reachable},
		{"refresh again a second later", 133 * sec, Refresh},
		{"at the timeout", 160 * sec, Refresh},
		{"expired", 160*sec + 1, Missing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mac, st := c.Lookup(ipA, tt.now)
			if st != tt.state || (st != Missing && mac != macA) {
				t.Errorf("Lookup = %v, %d; want %v, %d", mac, st, macA, tt.state)
			}
		})
	}
	if _, st := c.Lookup(ipB, 100*sec); st != Missing {
		t.Errorf("unknown address: state %d, want Missing", st)
	}
}

func TestLearn(t *testing.T) {
	c := newCache(8)
	if r := c.Learn(ipA, macA, 0, false); r.Added || c.Len() != 0 {
		t.Fatalf("learned an address nobody asked for: %+v", r)
	}
	if r := c.Learn(ipA, macA, 0, true); !r.Added {
		t.Fatalf("Learn with add: %+v", r)
	}
	if r := c.Learn(ipA, macA, 10*sec, false); r.Added || r.Moved {
		t.Errorf("confirming: %+v", r)
	}
	if r := c.Learn(ipA, macB, 20*sec, false); !r.Moved {
		t.Errorf("moved: %+v", r)
	}
	if mac, _ := c.Lookup(ipA, 20*sec); mac != macB {
		t.Errorf("after move: %v", mac)
	}
	// Confirming refreshes the age.
	if _, st := c.Lookup(ipA, 75*sec); st == Missing {
		t.Error("confirmed entry expired")
	}
	// An address items wait for is added without add.
	c.Queue(ipB, 7, 30*sec)
	r := c.Learn(ipB, macB, 31*sec, false)
	if !r.Added || len(r.Waiting) != 1 || r.Waiting[0] != 7 || c.Pending() != 0 {
		t.Errorf("learning a waited-for address: %+v, pending %d", r, c.Pending())
	}
}

func TestEviction(t *testing.T) {
	c := newCache(2)
	c.Learn(ip4{10, 0, 0, 1}, macA, 0, true)
	c.Learn(ip4{10, 0, 0, 2}, macA, 10*sec, true)
	// Full: the oldest goes.
	if r := c.Learn(ip4{10, 0, 0, 3}, macA, 20*sec, true); !r.Added || !r.Evicted {
		t.Fatalf("full cache: %+v", r)
	}
	if _, st := c.Lookup(ip4{10, 0, 0, 1}, 20*sec); st != Missing {
		t.Error("oldest entry kept")
	}
	// Full again, but one entry has expired: it is swept, nothing evicted.
	if r := c.Learn(ip4{10, 0, 0, 4}, macA, 71*sec, true); r.Evicted {
		t.Errorf("evicted although an entry had expired: %+v", r)
	}
	if _, st := c.Lookup(ip4{10, 0, 0, 3}, 71*sec); st == Missing {
		t.Error("unexpired entry lost")
	}
}

func TestQueue(t *testing.T) {
	c := New[ip4, int](Config{Timeout: time.Minute, Limit: 8, PendingPerHost: 2, PendingTotal: 3})
	steps := []struct {
		ip              ip4
		now             int64
		ok, req         bool
		expired, queued int
	}{
		{ipA, 0, true, true, 0, 1},
		{ipA, sec / 2, true, false, 0, 2},
		{ipA, sec, false, true, 0, 2}, // per host full; a second later: ask again
		{ipB, sec, true, true, 0, 3},
		{ipB, sec, false, false, 0, 3},                // total full
		{ip4{10, 0, 0, 9}, 4 * sec, true, true, 3, 1}, // full: A and B gave up
		{ipA, 5 * sec, true, true, 0, 2},
		{ipA, 8 * sec, true, true, 1, 2}, // A unanswered for 3 s: starts over
	}
	for i, s := range steps {
		r := c.Queue(s.ip, i, s.now)
		if r.OK != s.ok || r.Request != s.req || len(r.Expired) != s.expired || c.Pending() != s.queued {
			t.Fatalf("step %d: ok %v request %v expired %d pending %d; want %v %v %d %d",
				i, r.OK, r.Request, len(r.Expired), c.Pending(), s.ok, s.req, s.expired, s.queued)
		}
	}
	if got := c.Forget(ipA); len(got) != 1 || got[0] != 7 || c.Pending() != 1 {
		t.Errorf("Forget: %v, pending %d", got, c.Pending())
	}
}

func TestExpire(t *testing.T) {
	c := newCache(8)
	c.Learn(ipA, macA, 0, true)
	c.Queue(ipB, 1, 0)
	r := c.Expire(sec + 1)
	if len(r.Retry) != 1 || r.Retry[0] != ipB || len(r.Items) != 0 || r.Forgotten != 0 {
		t.Errorf("after 1 s: %+v", r)
	}
	if r := c.Expire(sec + 2); len(r.Retry) != 0 {
		t.Errorf("asked again within a second: %+v", r)
	}
	r = c.Expire(3 * sec)
	if len(r.Items) != 1 || c.Pending() != 0 {
		t.Errorf("after 3 s: %+v, pending %d", r, c.Pending())
	}
	if r := c.Expire(61 * sec); r.Forgotten != 1 || c.Len() != 0 {
		t.Errorf("after the timeout: %+v, %d entries", r, c.Len())
	}
}

func TestSnapshot(t *testing.T) {
	c := newCache(8)
	c.Learn(ipA, macA, 0, true)
	c.Learn(ipB, macB, 50*sec, true)
	got := c.Snapshot(70 * sec)
	if len(got) != 1 || got[0].IP != ipB || got[0].MAC != macB || got[0].Age != 20*time.Second {
		t.Errorf("Snapshot = %+v", got)
	}
}

// TestHotPathDoesNotAllocate pins zero allocations on Lookup and on Learn
// of a known neighbour, what every routed packet does.
func TestHotPathDoesNotAllocate(t *testing.T) {
	c := newCache(8)
	c.Learn(ipA, macA, 0, true)
	now := int64(0)
	if n := testing.AllocsPerRun(1000, func() {
		now++
		c.Learn(ipA, macA, now, true)
		if _, st := c.Lookup(ipA, now); st == Missing {
			t.Fatal("lost")
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// TestConcurrent runs lookups, learning, queueing and sweeps together (go
// test -race checks them).
func TestConcurrent(t *testing.T) {
	c := newCache(16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				ip := ip4{10, 0, byte(g), byte(i % 32)}
				now := int64(i) * sec / 10
				switch i % 4 {
				case 0:
					c.Learn(ip, macA, now, true)
				case 1:
					c.Queue(ip, i, now)
				case 2:
					c.Lookup(ip, now)
				default:
					if i%100 == 3 {
						c.Expire(now)
					}
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > 16 || c.Pending() > DefaultPendingTotal {
		t.Errorf("bounds broken: %d entries, %d pending", c.Len(), c.Pending())
	}
}

// mutexTable is the gateway's neighbour table before this package, kept
// here to measure against: a mutex, a map write for an expired entry and
// the time of day on every routed packet.
type mutexTable struct {
	mu      sync.Mutex
	entries map[ip4]struct {
		mac  [6]byte
		seen time.Time
	}
}

func (t *mutexTable) learn(ip ip4, mac [6]byte, now time.Time) {
	t.mu.Lock()
	t.entries[ip] = struct {
		mac  [6]byte
		seen time.Time
	}{mac, now}
	t.mu.Unlock()
}

func (t *mutexTable) lookup(ip ip4, now time.Time) ([6]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[ip]
	if ok && now.Sub(e.seen) > time.Minute {
		delete(t.entries, ip)
		return [6]byte{}, false
	}
	return e.mac, ok
}

// BenchmarkRoutedPacket is what each routed packet asks of the neighbour
// table, on every core at once: a container's datagram out confirms its
// sender (learn), a reply in looks its MAC up.
func BenchmarkRoutedPacket(b *testing.B) {
	b.Run("neigh", func(b *testing.B) {
		c := newCache(1024)
		var clock atomic.Int64 // a coarse clock, as the switch's
		for i := range 256 {
			c.Learn(ip4{10, 0, 0, byte(i)}, macA, 0, true)
		}
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				now := clock.Load()
				c.Learn(ip4{10, 0, 0, byte(i)}, macA, now, true)
				c.Lookup(ip4{10, 0, 0, byte(i)}, now)
			}
		})
	})
	b.Run("mutex-map-time.Now", func(b *testing.B) {
		t := &mutexTable{entries: map[ip4]struct {
			mac  [6]byte
			seen time.Time
		}{}}
		for i := range 256 {
			t.learn(ip4{10, 0, 0, byte(i)}, macA, time.Now())
		}
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				t.learn(ip4{10, 0, 0, byte(i)}, macA, time.Now())
				t.lookup(ip4{10, 0, 0, byte(i)}, time.Now())
			}
		})
	})
}
