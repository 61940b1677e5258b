package fdb

import (
	"cmp"
	"errors"
	"slices"
	"testing"
	"time"
)

// refTable is the reference model for FuzzTable: a plain map and the rules of
// the package documentation written as directly as possible.
type refTable struct {
	ageing, gran           int64
	maxEntries, maxPerPort int
	m                      map[Key]*refEntry
	st                     Stats
	seq                    int // orders dynamic entries by when they came to their port
}

type refEntry struct {
	port   PortID
	static bool
	last   int64
	seq    int
}

// evict removes the oldest entry (lowest seq) of the port with the most
// dynamic entries, the lowest port on a tie; false if there is none.
func (r *refTable) evict() bool {
	counts := map[PortID]int{}
	for _, e := range r.m {
		if !e.static {
			counts[e.port]++
		}
	}
	victim, most := NoPort, 0
	for p, n := range counts {
		if n > most || n == most && p < victim {
			victim, most = p, n
		}
	}
	if most == 0 {
		return false
	}
	var old Key
	oldSeq := -1
	for k, e := range r.m {
		if !e.static && e.port == victim && (oldSeq < 0 || e.seq < oldSeq) {
			old, oldSeq = k, e.seq
		}
	}
	delete(r.m, old)
	r.st.Evicted++
	return true
}

func (r *refTable) aged(e *refEntry, now int64) bool { return !e.static && now-e.last >= r.ageing }

func (r *refTable) dynamic(port PortID) int {
	n := 0
	for _, e := range r.m {
		if !e.static && e.port == port {
			n++
		}
	}
	return n
}

func (r *refTable) learn(k Key, port PortID, now int64) LearnResult {
	if port == NoPort || k.MAC[0]&1 == 1 || k.MAC == (MAC{}) {
		r.st.Ignored++
		return Ignored
	}
	e := r.m[k]
	switch {
	case e != nil && e.static && e.port == port:
		return Refreshed
	case e != nil && e.static:
		r.st.StaticConflicts++
		return StaticConflict
	case e != nil && !r.aged(e, now) && e.port == port:
		if now > e.last && now-e.last >= r.gran {
			e.last = now
		}
		return Refreshed
	case e != nil && !r.aged(e, now):
		if r.dynamic(port) >= r.maxPerPort {
			r.st.LimitPort++
			return LimitPort
		}
		r.seq++
		e.port, e.last, e.seq = port, max(e.last, now), r.seq
		r.st.Moved++
		return Moved
	case e != nil: // aged: as if it had been expired first
		if e.port != port && r.dynamic(port) >= r.maxPerPort {
			r.st.LimitPort++
			return LimitPort
		}
		delete(r.m, k)
		r.st.Aged++
	default:
		if r.dynamic(port) >= r.maxPerPort {
			r.st.LimitPort++
			return LimitPort
		}
		if len(r.m) >= r.maxEntries && !r.evict() {
			r.st.LimitTotal++
			return LimitTotal
		}
	}
	r.seq++
	r.m[k] = &refEntry{port: port, last: now, seq: r.seq}
	r.st.Learned++
	return Learned
}

func (r *refTable) lookup(k Key, now int64) PortID {
	if e := r.m[k]; e != nil && !r.aged(e, now) {
		return e.port
	}
	return NoPort
}

func (r *refTable) addStatic(k Key, port PortID) error {
	switch {
	case port == NoPort:
		return ErrNoPort
	case k.MAC[0]&1 == 1 || k.MAC == (MAC{}):
		return ErrNotUnicast
	}
	if e := r.m[k]; e != nil {
		e.port, e.static = port, true
		return nil
	}
	if len(r.m) >= r.maxEntries {
		return ErrFull
	}
	r.m[k] = &refEntry{port: port, static: true}
	return nil
}

func (r *refTable) remove(pred func(*refEntry) bool) int {
	n := 0
	for k, e := range r.m {
		if pred(e) {
			delete(r.m, k)
			n++
		}
	}
	return n
}

func (r *refTable) stats() Stats {
	s := r.st
	s.Entries = len(r.m)
	s.Static = 0
	for _, e := range r.m {
		if e.static {
			s.Static++
		}
	}
	return s
}

func (r *refTable) entries(now int64) []Entry {
	var out []Entry
	for k, e := range r.m {
		if r.aged(e, now) {
			continue
		}
		en := Entry{Key: k, Port: e.port, Static: e.static}
		if !e.static {
			en.Age = time.Duration(max(0, now-e.last))
		}
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.VLAN, b.VLAN),
			slices.Compare(a.MAC[:], b.MAC[:]))
	})
	return out
}

// fuzzMACs are the addresses FuzzTable plays with: unicast ones, and ones
// that must be ignored.
var fuzzMACs = [...]MAC{
	{0x02, 0, 0, 0, 0, 1},
	{0x02, 0, 0, 0, 0, 2},
	{0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc},
	{0xfe, 0xff, 0xff, 0xff, 0xff, 0xfe},
	{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, // multicast
	{},                                   // zero
}

// FuzzTable runs the fuzz input as a sequence of operations on a Table and on
// refTable and checks after each that they agree on everything observable.
//
// Input: the first byte picks the configuration, then each pair of bytes is
// an operation and its argument; the argument picks a key (MAC and VLAN 0 or
// 4095), a port (0 to 4) or a time step.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0x00, 0, 0, 0, 0x10, 3, 0, 8, 30, 7, 0})
	f.Add([]byte{0x25, 0, 0x11, 1, 0x22, 2, 0x33, 0, 0x44, 6, 0x10, 8, 200, 0, 0x11, 7, 0})
	f.Add([]byte{0x43, 4, 0x12, 0, 0x22, 0, 0x12, 5, 0x02, 9, 7, 8, 255, 0, 0x22, 7, 1})
	f.Add([]byte{0xff, 0, 0x10, 0, 0x11, 0, 0x12, 0, 0x13, 0, 0x20, 0, 0x21, 8, 40, 0, 0x10, 9, 3, 0, 0x10})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		c := data[0]
		ageing := [...]time.Duration{16, 3000, 40000, 1 << 20}[c&3]
		cfg := Config{Ageing: ageing, MaxEntries: 1 + int(c>>2&7), MaxPerPort: 1 + int(c>>5&3)}
		tb := newTable(t, cfg)
		ref := &refTable{
			ageing: int64(ageing), gran: int64(ageing) >> 10,
			maxEntries: cfg.MaxEntries, maxPerPort: cfg.MaxPerPort,
			m: make(map[Key]*refEntry),
		}
		step := max(1, int64(ageing)/32)
		now := int64(0)
		for i := 1; i+1 < len(data); i += 2 {
			op, arg := data[i]%10, data[i+1]
			k := Key{MAC: fuzzMACs[int(arg>>1)%len(fuzzMACs)], VLAN: uint16(arg&1) * 4095}
			port := PortID(arg>>4) % 5
			switch op {
			case 0, 1, 2:
				if got, want := tb.Learn(k, port, now), ref.learn(k, port, now); got != want {
					t.Fatalf("op %d: Learn(%v, %d, %d) = %v, want %v", i, k, port, now, got, want)
				}
			case 3:
				now += int64(arg % 4)
			case 4:
				got, want := tb.AddStatic(k, port), ref.addStatic(k, port)
				if (got == nil) != (want == nil) || !errors.Is(got, want) {
					t.Fatalf("op %d: AddStatic(%v, %d) = %v, want %v", i, k, port, got, want)
				}
			case 5:
				_, had := ref.m[k]
				delete(ref.m, k)
				if got := tb.Delete(k); got != had {
					t.Fatalf("op %d: Delete(%v) = %v, want %v", i, k, got, had)
				}
			case 6:
				want := 0
				if port != NoPort {
					want = ref.remove(func(e *refEntry) bool { return e.port == port })
				}
				ref.st.Flushed += uint64(want)
				if got := tb.FlushPort(port); got != want {
					t.Fatalf("op %d: FlushPort(%d) = %d, want %d", i, port, got, want)
				}
			case 7:
				want := ref.remove(func(e *refEntry) bool { return ref.aged(e, now) })
				ref.st.Aged += uint64(want)
				if got := tb.Expire(now); got != want {
					t.Fatalf("op %d: Expire(%d) = %d, want %d", i, now, got, want)
				}
			case 8:
				now += int64(arg) * step
			case 9:
				now -= int64(arg % 8) // clocks of different goroutines disagree a little
			}
			checkAgainstRef(t, i, tb, ref, now)
		}
	})
}

func checkAgainstRef(t *testing.T, i int, tb *Table, ref *refTable, now int64) {
	t.Helper()
	if err := tb.checkInvariants(); err != nil {
		t.Fatalf("op %d: %v", i, err)
	}
	for _, m := range fuzzMACs {
		for _, vlan := range []uint16{0, 4095} {
			k := Key{MAC: m, VLAN: vlan}
			got, ok := tb.Lookup(k, now)
			if want := ref.lookup(k, now); got != want || ok != (want != NoPort) {
				t.Fatalf("op %d: Lookup(%v, %d) = %d, %v; want %d", i, k, now, got, ok, want)
			}
		}
	}
	for p := range PortID(5) {
		if got, want := tb.PortCount(p), ref.dynamic(p); got != want {
			t.Fatalf("op %d: PortCount(%d) = %d, want %d", i, p, got, want)
		}
	}
	if got, want := tb.Stats(), ref.stats(); got != want {
		t.Fatalf("op %d: Stats() = %+v, want %+v", i, got, want)
	}
	if got, want := tb.Entries(now), ref.entries(now); !slices.Equal(got, want) {
		t.Fatalf("op %d: Entries(%d) = %v, want %v", i, now, got, want)
	}
}
