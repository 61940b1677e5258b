package fdb

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const sec = int64(time.Second)

// mac returns the locally administered unicast address 02:00:00:00:hi:lo.
func mac(i int) MAC { return MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i)} }

func key(i int) Key { return Key{MAC: mac(i)} }

func newTable(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return tb
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Config
		err  string // field named in the error; "" means success
	}{
		{name: "zero means defaults", cfg: Config{},
			want: Config{Ageing: 300 * time.Second, MaxEntries: 65536, MaxPerPort: 8192}},
		{name: "explicit", cfg: Config{Ageing: time.Second, MaxEntries: 10, MaxPerPort: 20},
			want: Config{Ageing: time.Second, MaxEntries: 10, MaxPerPort: 20}},
		{name: "negative ageing", cfg: Config{Ageing: -time.Second}, err: "Ageing"},
		{name: "negative max entries", cfg: Config{MaxEntries: -1}, err: "MaxEntries"},
		{name: "negative max per port", cfg: Config{MaxPerPort: -1}, err: "MaxPerPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := New(tt.cfg)
			if tt.err != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("New(%+v) error = %v, want ErrInvalidConfig naming %s", tt.cfg, err, tt.err)
				}
				if tb != nil {
					t.Errorf("New(%+v) returned a table with its error", tt.cfg)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.cfg, err)
			}
			if got := tb.Config(); got != tt.want {
				t.Errorf("Config() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// step is one operation of a scripted table test and what it must return.
type step struct {
	op   string // learn, lookup, static, delete, flush, expire, len, portcount, stats
	k    Key
	port PortID
	now  int64
	want any // LearnResult, PortID (NoPort: miss), error (nil or a sentinel), bool, int, Stats
}

func runSteps(t *testing.T, tb *Table, steps []step) {
	t.Helper()
	for i, s := range steps {
		var got any
		switch s.op {
		case "learn":
			got = tb.Learn(s.k, s.port, s.now)
		case "lookup":
			p, ok := tb.Lookup(s.k, s.now)
			if ok == (p == NoPort) {
				t.Fatalf("step %d: Lookup(%v) = %d, %v: port and ok disagree", i, s.k, p, ok)
			}
			got = p
		case "static":
			err := tb.AddStatic(s.k, s.port)
			if want, _ := s.want.(error); errors.Is(err, want) {
				continue
			}
			t.Errorf("step %d: AddStatic(%v, %d) error = %v, want %v", i, s.k, s.port, err, s.want)
			continue
		case "delete":
			got = tb.Delete(s.k)
		case "flush":
			got = tb.FlushPort(s.port)
		case "expire":
			got = tb.Expire(s.now)
		case "len":
			got = tb.Len()
		case "portcount":
			got = tb.PortCount(s.port)
		case "stats":
			got = tb.Stats()
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
		if got != s.want {
			t.Errorf("step %d: %s(%v, port %d, now %d) = %v, want %v", i, s.op, s.k, s.port, s.now, got, s.want)
		}
		if err := tb.checkInvariants(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

func TestLearnLookup(t *testing.T) {
	ageing := 10 * sec
	k1, k2 := key(1), key(2)
	k1v2 := Key{MAC: k1.MAC, VLAN: 2}
	bcast := Key{MAC: MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	mcast := Key{MAC: MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "learn then lookup", steps: []step{
			{op: "lookup", k: k1, want: NoPort},
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "lookup", k: k1, now: sec, want: PortID(1)},
			{op: "lookup", k: k2, now: sec, want: NoPort},
			{op: "lookup", k: k1v2, now: sec, want: NoPort}, // VLANs are separate
			{op: "learn", k: k1v2, port: 2, want: Learned},
			{op: "lookup", k: k1v2, now: sec, want: PortID(2)},
			{op: "lookup", k: k1, now: sec, want: PortID(1)},
			{op: "len", want: 2},
			{op: "stats", want: Stats{Entries: 2, Learned: 2}},
		}},
		{name: "refresh on the same port", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k1, port: 1, now: sec, want: Refreshed},
			{op: "portcount", port: 1, want: 1},
			{op: "stats", want: Stats{Entries: 1, Learned: 1}},
		}},
		{name: "lookup misses after ageing, before expire", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "lookup", k: k1, now: ageing - 1, want: PortID(1)},
			{op: "lookup", k: k1, now: ageing, want: NoPort},
			{op: "len", want: 1}, // still there, holding its slot
			{op: "expire", now: ageing - 1, want: 0},
			{op: "expire", now: ageing, want: 1},
			{op: "len", want: 0},
			{op: "portcount", port: 1, want: 0},
			{op: "stats", want: Stats{Learned: 1, Aged: 1}},
		}},
		{name: "refresh keeps alive", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 1, want: Learned},
			{op: "learn", k: k1, port: 1, now: 9 * sec, want: Refreshed},
			{op: "lookup", k: k1, now: 15 * sec, want: PortID(1)},
			{op: "lookup", k: k2, now: 15 * sec, want: NoPort},
			{op: "expire", now: 15 * sec, want: 1},
			{op: "lookup", k: k1, now: 19*sec - 1, want: PortID(1)},
			{op: "lookup", k: k1, now: 19 * sec, want: NoPort},
		}},
		{name: "refresh never moves the clock back", steps: []step{
			{op: "learn", k: k1, port: 1, now: 5 * sec, want: Learned},
			{op: "learn", k: k1, port: 1, now: 1 * sec, want: Refreshed},
			{op: "lookup", k: k1, now: 15*sec - 1, want: PortID(1)},
		}},
		{name: "relearn after ageing", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k1, port: 1, now: ageing, want: Learned},
			{op: "lookup", k: k1, now: ageing, want: PortID(1)},
			{op: "portcount", port: 1, want: 1},
			{op: "stats", want: Stats{Entries: 1, Learned: 2, Aged: 1}},
		}},
		{name: "move", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k1, port: 2, now: sec, want: Moved},
			{op: "lookup", k: k1, now: sec, want: PortID(2)},
			{op: "portcount", port: 1, want: 0},
			{op: "portcount", port: 2, want: 1},
			{op: "learn", k: k1, port: 2, now: sec, want: Refreshed},
			{op: "stats", want: Stats{Entries: 1, Learned: 1, Moved: 1}},
		}},
		{name: "aged entry on another port is learned, not moved", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k1, port: 2, now: ageing, want: Learned},
			{op: "lookup", k: k1, now: ageing, want: PortID(2)},
			{op: "portcount", port: 1, want: 0},
			{op: "stats", want: Stats{Entries: 1, Learned: 2, Aged: 1}},
		}},
		{name: "multicast, broadcast, zero and NoPort ignored", steps: []step{
			{op: "learn", k: mcast, port: 1, want: Ignored},
			{op: "learn", k: bcast, port: 1, want: Ignored},
			{op: "learn", k: Key{}, port: 1, want: Ignored},
			{op: "learn", k: k1, port: NoPort, want: Ignored},
			{op: "lookup", k: mcast, want: NoPort},
			{op: "lookup", k: bcast, want: NoPort},
			{op: "len", want: 0},
			{op: "stats", want: Stats{Ignored: 4}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, newTable(t, Config{Ageing: time.Duration(ageing)}), tt.steps)
		})
	}
}

func TestStatic(t *testing.T) {
	ageing := 10 * sec
	k1, k2 := key(1), key(2)
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{name: "never ages, never moves", steps: []step{
			{op: "static", k: k1, port: 1, want: nil},
			{op: "learn", k: k1, port: 2, want: StaticConflict},
			{op: "lookup", k: k1, now: 100 * ageing, want: PortID(1)},
			{op: "learn", k: k1, port: 1, now: 100 * ageing, want: Refreshed},
			{op: "expire", now: 100 * ageing, want: 0},
			{op: "portcount", port: 1, want: 0}, // static entries do not count per port
			{op: "stats", want: Stats{Entries: 1, Static: 1, StaticConflicts: 1}},
		}},
		{name: "replaces a dynamic entry", steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "static", k: k1, port: 2, want: nil},
			{op: "portcount", port: 1, want: 0},
			{op: "lookup", k: k1, now: 2 * ageing, want: PortID(2)},
			{op: "len", want: 1},
		}},
		{name: "re-adding points it to the new port", steps: []step{
			{op: "static", k: k1, port: 1, want: nil},
			{op: "static", k: k1, port: 3, want: nil},
			{op: "lookup", k: k1, want: PortID(3)},
			{op: "stats", want: Stats{Entries: 1, Static: 1}},
		}},
		{name: "bad arguments", steps: []step{
			{op: "static", k: Key{MAC: MAC{0x01, 0, 0x5e, 0, 0, 1}}, port: 1, want: ErrNotUnicast},
			{op: "static", k: Key{MAC: MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, port: 1, want: ErrNotUnicast},
			{op: "static", k: Key{}, port: 1, want: ErrNotUnicast},
			{op: "static", k: k1, port: NoPort, want: ErrNoPort},
			{op: "len", want: 0},
		}},
		{name: "counts against MaxEntries", cfg: Config{MaxEntries: 1}, steps: []step{
			{op: "static", k: k1, port: 1, want: nil},
			{op: "static", k: k2, port: 1, want: ErrFull},
			{op: "learn", k: k2, port: 1, want: LimitTotal},
			{op: "static", k: k1, port: 2, want: nil}, // not new: allowed
		}},
		{name: "delete", steps: []step{
			{op: "static", k: k1, port: 1, want: nil},
			{op: "learn", k: k2, port: 1, want: Learned},
			{op: "delete", k: k1, want: true},
			{op: "delete", k: k1, want: false},
			{op: "delete", k: k2, want: true},
			{op: "len", want: 0},
			{op: "learn", k: k1, port: 2, want: Learned}, // no longer static
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Ageing == 0 {
				tt.cfg.Ageing = time.Duration(ageing)
			}
			runSteps(t, newTable(t, tt.cfg), tt.steps)
		})
	}
}

func TestFlushPort(t *testing.T) {
	tb := newTable(t, Config{})
	runSteps(t, tb, []step{
		{op: "learn", k: key(1), port: 1, want: Learned},
		{op: "learn", k: key(2), port: 1, want: Learned},
		{op: "learn", k: key(3), port: 2, want: Learned},
		{op: "static", k: key(4), port: 1, want: nil},
		{op: "static", k: key(5), port: 2, want: nil},
		{op: "flush", port: NoPort, want: 0},
		{op: "flush", port: 1, want: 3},
		{op: "flush", port: 1, want: 0},
		{op: "lookup", k: key(1), want: NoPort},
		{op: "lookup", k: key(4), want: NoPort},
		{op: "lookup", k: key(3), want: PortID(2)},
		{op: "lookup", k: key(5), want: PortID(2)},
		{op: "portcount", port: 1, want: 0},
		{op: "stats", want: Stats{Entries: 2, Static: 1, Learned: 3, Flushed: 3}},
		{op: "learn", k: key(1), port: 1, want: Learned}, // the port's slots are free again
	})
}

func TestLimits(t *testing.T) {
	ageing := 10 * sec
	k1, k2, k3, k4, k5, k6, k7 := key(1), key(2), key(3), key(4), key(5), key(6), key(7)
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{name: "per port", cfg: Config{MaxPerPort: 2}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 1, want: Learned},
			{op: "learn", k: k3, port: 1, want: LimitPort},
			{op: "learn", k: k3, port: 1, want: LimitPort},
			{op: "lookup", k: k3, want: NoPort},
			{op: "learn", k: k3, port: 2, want: Learned}, // other ports are not affected
			{op: "learn", k: k1, port: 1, want: Refreshed},
			{op: "portcount", port: 1, want: 2},
			{op: "stats", want: Stats{Entries: 3, Learned: 3, LimitPort: 2}},
		}},
		{name: "move to a full port is refused", cfg: Config{MaxPerPort: 1}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 2, want: Learned},
			{op: "learn", k: k1, port: 2, want: LimitPort},
			{op: "lookup", k: k1, want: PortID(1)}, // stays where it was
			{op: "learn", k: k2, port: 3, want: Moved},
			{op: "learn", k: k1, port: 2, want: Moved}, // port 2 has room now
			{op: "stats", want: Stats{Entries: 2, Learned: 2, Moved: 2, LimitPort: 1}},
		}},
		{name: "ageing frees the per-port slot", cfg: Config{MaxPerPort: 1}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 1, now: ageing, want: LimitPort}, // aged, not yet expired
			{op: "expire", now: ageing, want: 1},
			{op: "learn", k: k2, port: 1, now: ageing, want: Learned},
		}},
		{name: "total evicts, the lowest port on a tie", cfg: Config{MaxEntries: 3}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 2, want: Learned},
			{op: "static", k: k3, port: 3, want: nil},
			{op: "learn", k: k4, port: 4, want: Learned}, // evicts k1
			{op: "lookup", k: k4, want: PortID(4)},
			{op: "lookup", k: k1, want: NoPort},
			{op: "learn", k: k2, port: 4, want: Moved}, // a move does not grow the table
			{op: "stats", want: Stats{Entries: 3, Static: 1, Learned: 3, Moved: 1, Evicted: 1}},
		}},
		{name: "total evicts the oldest of the port with the most", cfg: Config{MaxEntries: 5}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 2, want: Learned},
			{op: "learn", k: k3, port: 2, want: Learned},
			{op: "learn", k: k4, port: 2, want: Learned},
			{op: "learn", k: k5, port: 2, want: Learned},
			{op: "learn", k: k2, port: 2, want: Refreshed}, // refreshing does not reorder
			{op: "learn", k: k6, port: 3, want: Learned},   // evicts k2, the oldest of port 2
			{op: "learn", k: k7, port: 1, want: Learned},   // evicts k3
			{op: "lookup", k: k1, want: PortID(1)},
			{op: "lookup", k: k2, want: NoPort},
			{op: "lookup", k: k3, want: NoPort},
			{op: "lookup", k: k4, want: PortID(2)},
			{op: "lookup", k: k6, want: PortID(3)},
			{op: "lookup", k: k7, want: PortID(1)},
			{op: "stats", want: Stats{Entries: 5, Learned: 7, Evicted: 2}},
		}},
		{name: "a moved MAC is the newest of its port", cfg: Config{MaxEntries: 3}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 2, want: Learned},
			{op: "learn", k: k3, port: 2, want: Learned},
			{op: "learn", k: k2, port: 1, want: Moved},   // port 1: k1, k2
			{op: "learn", k: k4, port: 3, want: Learned}, // evicts k1
			{op: "lookup", k: k1, want: NoPort},
			{op: "lookup", k: k2, want: PortID(1)},
		}},
		{name: "per port is checked first", cfg: Config{MaxEntries: 1, MaxPerPort: 1}, steps: []step{
			{op: "learn", k: k1, port: 1, want: Learned},
			{op: "learn", k: k2, port: 1, want: LimitPort},
			{op: "learn", k: k2, port: 2, want: Learned}, // evicts k1
			{op: "lookup", k: k1, want: NoPort},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Ageing = time.Duration(ageing)
			runSteps(t, newTable(t, tt.cfg), tt.steps)
		})
	}
}

func TestEntries(t *testing.T) {
	tb := newTable(t, Config{Ageing: 10 * time.Second})
	a := Key{MAC: MAC{0x02, 0, 0, 0, 0, 0xaa}}
	b := Key{MAC: MAC{0x02, 0, 0, 0, 0, 0xbb}}
	aV5 := Key{MAC: a.MAC, VLAN: 5}
	for _, l := range []struct {
		k    Key
		port PortID
		now  int64
	}{
		{key(9), 3, 0}, // aged at 10 s
		{a, 1, 1 * sec}, {b, 1, 2 * sec}, {aV5, 1, 3 * sec}, {b, 2, 4 * sec},
	} {
		tb.Learn(l.k, l.port, l.now)
	}
	if err := tb.AddStatic(Key{MAC: mac(7)}, 1); err != nil {
		t.Fatal(err)
	}
	got := tb.Entries(10 * sec)
	want := []Entry{
		{Key: Key{MAC: mac(7)}, Port: 1, Static: true},
		{Key: a, Port: 1, Age: 9 * time.Second},
		{Key: aV5, Port: 1, Age: 7 * time.Second},
		{Key: b, Port: 2, Age: 6 * time.Second}, // moved from port 1 at 4 s
	}
	if !slices.Equal(got, want) {
		t.Errorf("Entries() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLearnResultString(t *testing.T) {
	tests := []struct {
		r    LearnResult
		want string
	}{
		{Refreshed, "refreshed"}, {Learned, "learned"}, {Moved, "moved"}, {Ignored, "ignored"},
		{LimitPort, "limit-port"}, {LimitTotal, "limit-total"}, {StaticConflict, "static-conflict"},
		{LearnResult(99), "LearnResult(99)"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("LearnResult(%d).String() = %q, want %q", uint8(tt.r), got, tt.want)
		}
	}
	if got, want := (Key{MAC: mac(1), VLAN: 5}).String(), "02:00:00:00:00:01 vlan 5"; got != want {
		t.Errorf("Key.String() = %q, want %q", got, want)
	}
}

// TestHotPathTakesNoWriteLock holds the read lock while the datapath's calls
// run: any of them that tried to take the write lock would block.
func TestHotPathTakesNoWriteLock(t *testing.T) {
	tb := newTable(t, Config{MaxPerPort: 1, MaxEntries: 3})
	tb.Learn(key(1), 1, 0)
	tb.Learn(key(2), 2, 0)
	if err := tb.AddStatic(key(3), 3); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() any
		want any
	}{
		{"lookup hit", func() any { p, _ := tb.Lookup(key(1), sec); return p }, PortID(1)},
		{"lookup miss", func() any { p, _ := tb.Lookup(key(9), sec); return p }, NoPort},
		{"learn known", func() any { return tb.Learn(key(1), 1, sec) }, Refreshed},
		{"learn static", func() any { return tb.Learn(key(3), 3, sec) }, Refreshed},
		{"learn multicast", func() any { return tb.Learn(Key{MAC: MAC{1}}, 1, sec) }, Ignored},
		{"learn over port limit", func() any { return tb.Learn(key(4), 1, sec) }, LimitPort},
		{"move to full port", func() any { return tb.Learn(key(2), 1, sec) }, LimitPort},
		{"static conflict", func() any { return tb.Learn(key(3), 1, sec) }, StaticConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb.mu.RLock()
			defer tb.mu.RUnlock()
			done := make(chan any, 1)
			go func() { done <- tt.call() }()
			select {
			case got := <-done:
				if got != tt.want {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("blocked while the read lock was held: it takes the write lock")
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	tb := newTable(t, Config{})
	for i := range 1000 {
		tb.Learn(key(i), PortID(1+i%8), 0)
	}
	full := newTable(t, Config{MaxPerPort: 1})
	full.Learn(key(1), 1, 0)
	tests := []struct {
		name string
		f    func()
	}{
		{"lookup hit", func() { tb.Lookup(key(500), sec) }},
		{"lookup miss", func() { tb.Lookup(key(5000), sec) }},
		{"learn known", func() { tb.Learn(key(500), PortID(1+500%8), sec) }},
		{"learn multicast", func() { tb.Learn(Key{MAC: MAC{1}}, 1, sec) }},
		{"learn over limit", func() { full.Learn(key(2), 1, sec) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.f); got != 0 {
				t.Errorf("allocations = %v, want 0", got)
			}
		})
	}
}

func TestEntryString(t *testing.T) {
	tests := []struct {
		e    Entry
		want string
	}{
		{Entry{Key: Key{MAC: mac(1), VLAN: 5}, Port: 3, Age: 1500 * time.Millisecond}, "02:00:00:00:00:01 vlan 5 port 3 age 1.5s"},
		{Entry{Key: Key{MAC: mac(2)}, Port: 1, Static: true}, "02:00:00:00:00:02 vlan 0 port 1 static"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
