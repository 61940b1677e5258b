package vxlan

import (
	"sync"
	"sync/atomic"
	"time"
)

// agedMap is what Table (MAC -> VTEP) and NeighTable (IP -> MAC) have in
// common: a bounded map whose entries age unless static, read-mostly like
// fdb/. Lookups take a read lock; learn takes the write lock only for a
// new, moved or aged key, and refreshes an entry with an atomic store at
// most once per refreshGran. All methods are safe for concurrent use.
type agedMap[K, V comparable] struct {
	ageing int64 // nanoseconds
	max    int

	mu sync.RWMutex // guards m and the entries' val and static
	m  map[K]*agedEntry[V]

	learned, moved, full atomic.Uint64
}

type agedEntry[V comparable] struct {
	val    V
	static bool
	seen   atomic.Int64
}

// refreshGran is how stale an entry's last-seen time may get before a
// frame refreshes it: one store a second, not one per frame.
const refreshGran = int64(time.Second)

// init sets up an empty map with cfg's ageing and bound (the defaults
// for zero values); what names the table in the error.
func (a *agedMap[K, V]) init(cfg TableConfig, what string) error {
	ageing, limit, err := cfg.limits(what)
	if err != nil {
		return err
	}
	a.ageing, a.max, a.m = ageing, limit, map[K]*agedEntry[V]{}
	return nil
}

func (a *agedMap[K, V]) aged(e *agedEntry[V], now int64) bool {
	return !e.static && now-e.seen.Load() > a.ageing
}

// learn records that k has v at now. A static entry never changes; a
// full map learns nothing new (counted in full); a key seen again after
// it aged counts as learned, one seen with another value as moved.
func (a *agedMap[K, V]) learn(k K, v V, now int64) {
	a.mu.RLock()
	e := a.m[k]
	if e != nil && (e.val == v || e.static) && !a.aged(e, now) {
		if !e.static && now-e.seen.Load() > refreshGran {
			e.seen.Store(now)
		}
		a.mu.RUnlock()
		return
	}
	a.mu.RUnlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	e = a.m[k]
	switch {
	case e != nil && e.static:
		return
	case e != nil:
		switch {
		case a.aged(e, now):
			a.learned.Add(1) // gone in effect: learned again
		case e.val != v:
			a.moved.Add(1)
		}
		e.val = v
	case len(a.m) >= a.max:
		a.full.Add(1)
		return
	default:
		e = &agedEntry[V]{val: v}
		a.m[k] = e
		a.learned.Add(1)
	}
	e.seen.Store(now)
}

// lookup returns k's value if k has an entry not aged at now.
func (a *agedMap[K, V]) lookup(k K, now int64) (V, bool) {
	a.mu.RLock()
	e := a.m[k]
	var v V
	ok := e != nil && !a.aged(e, now)
	if ok {
		v = e.val
	}
	a.mu.RUnlock()
	return v, ok
}

// Expire removes the entries aged at now (never a static one) and
// returns how many.
func (a *agedMap[K, V]) Expire(now int64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, e := range a.m {
		if a.aged(e, now) {
			delete(a.m, k)
			n++
		}
	}
	return n
}

// Stats returns the map's counters.
func (a *agedMap[K, V]) Stats() TableStats {
	a.mu.RLock()
	n := len(a.m)
	a.mu.RUnlock()
	return TableStats{Entries: n, Learned: a.learned.Load(), Moved: a.moved.Load(), Full: a.full.Load()}
}

// list returns f of each entry of a not aged at now, with its age (0
// for a static entry), in no order.
func list[K, V comparable, T any](a *agedMap[K, V], now int64, f func(k K, e *agedEntry[V], age time.Duration) T) []T {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]T, 0, len(a.m))
	for k, e := range a.m {
		if a.aged(e, now) {
			continue
		}
		var age time.Duration
		if !e.static {
			age = time.Duration(now - e.seen.Load())
		}
		out = append(out, f(k, e, age))
	}
	return out
}
