package vxlan

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
)

// DefaultMaxEntries bounds a Table whose Config gives no limit.
const DefaultMaxEntries = 8192

// ErrFull is returned by AddStatic when the table holds MaxEntries entries.
var ErrFull = errors.New("vxlan: mac table full")

// TableConfig configures a Table.
type TableConfig struct {
	// Ageing is how long a learned entry lives without a frame from its
	// MAC; zero means fdb.DefaultAgeing (300 s, as the Linux bridge and
	// vxlan device).
	Ageing time.Duration
	// MaxEntries bounds the number of entries; zero means
	// DefaultMaxEntries. A full table learns nothing new until entries
	// age out.
	MaxEntries int
}

// Table maps the MACs seen behind the tunnel to the VTEP that sent them,
// as the Linux vxlan device's FDB does (`bridge fdb show dev vxlan42`).
// Lookups take a read lock; Learn takes the write lock only for a new or
// moved MAC, and refreshes an entry with an atomic store at most once per
// second. The clock is passed in (nanoseconds). All methods are safe for
// concurrent use.
type Table struct {
	ageing int64
	max    int

	mu sync.RWMutex // guards m
	m  map[fdb.MAC]*entry

	tableCounters
}

// tableCounters are the counters of a Table or a NeighTable.
type tableCounters struct {
	learned, moved, full atomic.Uint64
}

func (c *tableCounters) stats(entries int) TableStats {
	return TableStats{Entries: entries, Learned: c.learned.Load(), Moved: c.moved.Load(), Full: c.full.Load()}
}

// limits returns cfg's ageing (nanoseconds) and bound, the defaults for
// zero values; what names the table in the error.
func (cfg TableConfig) limits(what string) (int64, int, error) {
	if cfg.Ageing < 0 || cfg.MaxEntries < 0 {
		return 0, 0, fmt.Errorf("%s: negative ageing %s or limit %d", what, cfg.Ageing, cfg.MaxEntries)
	}
	if cfg.Ageing == 0 {
		cfg.Ageing = fdb.DefaultAgeing
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	return int64(cfg.Ageing), cfg.MaxEntries, nil
}

// sweep deletes the entries of m that aged reports and returns how many;
// the caller holds the write lock of m.
func sweep[K comparable, E any](m map[K]E, aged func(E) bool) int {
	n := 0
	for k, e := range m {
		if aged(e) {
			delete(m, k)
			n++
		}
	}
	return n
}

type entry struct {
	vtep   *VTEP
	static bool
	seen   atomic.Int64
}

// refreshGran is how stale an entry's last-seen time may get before a
// frame refreshes it: one store a second, not one per frame.
const refreshGran = int64(time.Second)

// NewTable returns an empty table.
func NewTable(cfg TableConfig) (*Table, error) {
	ageing, limit, err := cfg.limits("vxlan table")
	if err != nil {
		return nil, err
	}
	return &Table{ageing: ageing, max: limit, m: map[fdb.MAC]*entry{}}, nil
}

func (t *Table) aged(e *entry, now int64) bool {
	return !e.static && now-e.seen.Load() > t.ageing
}

// Learn records that mac is behind v at time now. A multicast or zero MAC
// is never learned; a static entry never moves; a full table learns
// nothing new (counted).
func (t *Table) Learn(mac fdb.MAC, v *VTEP, now int64) {
	if mac.IsMulticast() || mac.IsZero() {
		return
	}
	t.mu.RLock()
	e := t.m[mac]
	if e != nil && (e.vtep == v || e.static) && !t.aged(e, now) {
		if !e.static && now-e.seen.Load() > refreshGran {
			e.seen.Store(now)
		}
		t.mu.RUnlock()
		return
	}
	t.mu.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	e = t.m[mac]
	switch {
	case e != nil && e.static:
		return
	case e != nil:
		switch {
		case t.aged(e, now):
			t.learned.Add(1) // gone in effect: learned again
		case e.vtep != v:
			t.moved.Add(1)
		}
		e.vtep = v
	case len(t.m) >= t.max:
		t.full.Add(1)
		return
	default:
		e = &entry{vtep: v}
		t.m[mac] = e
		t.learned.Add(1)
	}
	e.seen.Store(now)
}

// Lookup returns the VTEP mac is behind, if known and not aged.
func (t *Table) Lookup(mac fdb.MAC, now int64) (*VTEP, bool) {
	t.mu.RLock()
	e := t.m[mac]
	var v *VTEP
	if e != nil && !t.aged(e, now) {
		v = e.vtep
	}
	t.mu.RUnlock()
	return v, v != nil
}

// AddStatic pins mac behind v: it never ages and Learn never moves it, as
// `bridge fdb append ... dev vxlan42 dst ADDR` does.
func (t *Table) AddStatic(mac fdb.MAC, v *VTEP) error {
	if mac.IsMulticast() || mac.IsZero() {
		return fmt.Errorf("static entry %s: %w", mac, fdb.ErrNotUnicast)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[mac]; !ok && len(t.m) >= t.max {
		return fmt.Errorf("static entry %s: %w", mac, ErrFull)
	}
	e := &entry{vtep: v, static: true}
	t.m[mac] = e
	return nil
}

// Delete removes mac's entry, static or learned; it reports whether there
// was one.
func (t *Table) Delete(mac fdb.MAC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[mac]
	delete(t.m, mac)
	return ok
}

// Expire removes the learned entries aged at now and returns how many.
func (t *Table) Expire(now int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sweep(t.m, func(e *entry) bool { return t.aged(e, now) })
}

// Entry is one entry of a Table, for listings.
type Entry struct {
	MAC    fdb.MAC
	VTEP   *VTEP
	Static bool
	// Age is the time since the last frame from MAC (0 for a static
	// entry).
	Age time.Duration
}

// Entries lists the entries not aged at now, by MAC.
func (t *Table) Entries(now int64) []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, len(t.m))
	for mac, e := range t.m {
		if t.aged(e, now) {
			continue
		}
		en := Entry{MAC: mac, VTEP: e.vtep, Static: e.static}
		if !e.static {
			en.Age = time.Duration(now - e.seen.Load())
		}
		out = append(out, en)
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return slices.Compare(a.MAC[:], b.MAC[:]) })
	return out
}

// TableStats are a Table's counters.
type TableStats struct {
	Entries int    `json:"entries"`
	Learned uint64 `json:"learned"`
	Moved   uint64 `json:"moved"`
	// Full counts MACs not learned because the table was full.
	Full uint64 `json:"full"`
}

// Stats returns t's counters.
func (t *Table) Stats() TableStats {
	t.mu.RLock()
	n := len(t.m)
	t.mu.RUnlock()
	return t.stats(n)
}
