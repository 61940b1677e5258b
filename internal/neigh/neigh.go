// Package neigh implements the neighbour cache that the gateway (its
// containers) and the routed TAP uplink (its next hops) share: which MAC an
// IP address is at, and the packets waiting while an address is being
// resolved (the kernel's neighbour table and its unres_qlen queue).
//
// The cache is read-mostly, like the FDB: Lookup, and Learn of an address
// already known at the same MAC, take only the read lock and update
// timestamps with atomics, and only when the clock has moved; no exclusive
// lock, map write or clock read happens per routed packet. The clock is the
// caller's (nanoseconds, monotonic), read once per packet by the caller,
// such as the switch's coarse clock refreshed every 100 ms. Map writes
// happen for a new neighbour, a moved one, the pending queue, and the
// sweeps of expired entries (Expire, a full table, Snapshot).
//
// Keys are fixed-size addresses ([4]byte for IPv4, [16]byte for IPv6) and
// queued items are whatever the caller holds for a packet (a pooled buffer,
// a copy). A Cache is safe for concurrent use.
package neigh

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config (the kernel retries an unanswered ARP request 3 times
// a second apart; its unres_qlen is 101 packets per neighbour).
const (
	DefaultPendingPerHost = 32
	DefaultPendingTotal   = 256
	DefaultResolveTimeout = 3 * time.Second
	// RequestInterval is the least time between two requests for the
	// same address (and between two refreshes of the same entry).
	RequestInterval = time.Second
)

// Config sets the bounds of a Cache.
type Config struct {
	// Timeout is how long an entry stays usable after it was last
	// confirmed (Learn). Past half of it, Lookup asks for a refresh.
	Timeout time.Duration
	// Limit bounds the entries; a new neighbour in a full cache first
	// sweeps the expired entries, then evicts the least recently
	// confirmed one.
	Limit int
	// PendingPerHost and PendingTotal bound the packets waiting for
	// resolution, per address and in all; 0 means the defaults.
	PendingPerHost, PendingTotal int
	// ResolveTimeout is how long packets wait for an answer before they
	// are given up; 0 means DefaultResolveTimeout.
	ResolveTimeout time.Duration
}

// State is what Lookup found.
type State uint8

const (
	// Missing: the address is unknown or its entry has expired.
	Missing State = iota
	// Reachable: the MAC may be used.
	Reachable
	// Refresh: the MAC may be used, and the caller should send a
	// unicast request to confirm it now (past half the timeout, at most
	// once per RequestInterval: the kernel's STALE -> PROBE).
	Refresh
)

// entry is one neighbour. mac is written under Cache.mu (write lock) and
// read under its read lock; seen and probed are atomics so that readers
// refresh them under the read lock.
type entry struct {
	mac    [6]byte
	seen   atomic.Int64 // clock of the last confirmation
	probed atomic.Int64 // clock of the last refresh request
}

// waiting holds the items waiting for one address.
type waiting[T any] struct {
	items   []T
	since   int64 // clock of the first request
	lastReq int64 // clock of the last request
}

// Cache maps addresses of type K to MACs and queues items of type T for
// addresses being resolved.
type Cache[K comparable, T any] struct {
	timeout, resolve int64
	limit            int
	perHost, total   int

	mu      sync.RWMutex // guards entries (the map and each entry's mac)
	entries map[K]*entry

	npend   atomic.Int32 // items waiting, read without pmu
	pmu     sync.Mutex   // guards pending
	pending map[K]*waiting[T]
}

// New returns an empty cache.
func New[K comparable, T any](cfg Config) *Cache[K, T] {
	c := &Cache[K, T]{
		timeout: int64(cfg.Timeout), resolve: int64(cfg.ResolveTimeout), limit: max(cfg.Limit, 1),
		perHost: cfg.PendingPerHost, total: cfg.PendingTotal,
		entries: map[K]*entry{}, pending: map[K]*waiting[T]{},
	}
	if c.resolve == 0 {
		c.resolve = int64(DefaultResolveTimeout)
	}
	if c.perHost == 0 {
		c.perHost = DefaultPendingPerHost
	}
	if c.total == 0 {
		c.total = DefaultPendingTotal
	}
	return c
}

// Lookup returns the MAC of ip and whether it may be used at now. It takes
// the read lock only; it changes nothing but, when it returns Refresh, the
// entry's last refresh time.
func (c *Cache[K, T]) Lookup(ip K, now int64) ([6]byte, State) {
	c.mu.RLock()
	e := c.entries[ip]
	var mac [6]byte
	if e != nil {
		mac = e.mac
	}
	c.mu.RUnlock()
	if e == nil {
		return mac, Missing
	}
	age := now - e.seen.Load()
	switch {
	case age > c.timeout:
		return mac, Missing
	case age > c.timeout/2:
		if p := e.probed.Load(); now-p > int64(RequestInterval) && e.probed.CompareAndSwap(p, now) {
			return mac, Refresh
		}
	}
	return mac, Reachable
}

// Learned says what Learn did besides refreshing an entry.
type Learned[T any] struct {
	// Added is set when the address was new to the cache, Evicted when
	// another entry was evicted to make room, Moved when a known
	// address changed MAC.
	Added, Evicted, Moved bool
	// Waiting are the items that waited for the address, removed from
	// the queue: the caller's to send to the MAC.
	Waiting []T
}

// Learn records that ip is at mac at now. A new address is added only when
// add is true or items wait for it (RFC 826: update a known sender, add one
// only when asked). Confirming a known address at the same MAC takes only
// the read lock, and stores the time only when the clock has moved.
func (c *Cache[K, T]) Learn(ip K, mac [6]byte, now int64, add bool) Learned[T] {
	var r Learned[T]
	c.mu.RLock()
	e := c.entries[ip]
	same := e != nil && e.mac == mac
	c.mu.RUnlock()
	if same {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
	} else if !c.learnSlow(ip, mac, now, add, &r) {
		return r
	}
	if c.npend.Load() > 0 {
		r.Waiting = c.Take(ip)
	}
	return r
}

// learnSlow adds or moves ip under the write lock; it reports false when ip
// is new and may not be added.
func (c *Cache[K, T]) learnSlow(ip K, mac [6]byte, now int64, add bool, r *Learned[T]) bool {
	pending := add || c.isPending(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[ip]
	if e == nil {
		if !pending {
			return false
		}
		if len(c.entries) >= c.limit {
			c.sweepLocked(now)
		}
		if len(c.entries) >= c.limit {
			c.evictOldestLocked()
			r.Evicted = true
		}
		e = &entry{}
		c.entries[ip] = e
		r.Added = true
	} else if e.mac != mac {
		r.Moved = true
	}
	e.mac = mac
	e.seen.Store(now)
	return true
}

func (c *Cache[K, T]) isPending(ip K) bool {
	if c.npend.Load() == 0 {
		return false
	}
	c.pmu.Lock()
	_, ok := c.pending[ip]
	c.pmu.Unlock()
	return ok
}

// Forget removes ip and returns the items that waited for it.
func (c *Cache[K, T]) Forget(ip K) []T {
	c.mu.Lock()
	delete(c.entries, ip)
	c.mu.Unlock()
	return c.Take(ip)
}

// Take removes and returns the items waiting for ip.
func (c *Cache[K, T]) Take(ip K) []T {
	if c.npend.Load() == 0 {
		return nil
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	w := c.pending[ip]
	if w == nil {
		return nil
	}
	delete(c.pending, ip)
	c.npend.Add(-int32(len(w.items)))
	return w.items
}

// Queued says what Queue did.
type Queued[T any] struct {
	// OK is set when the item was queued; otherwise the queue is full
	// and the item is still the caller's.
	OK bool
	// Request is set when the caller should send a request for the
	// address now (the first item, then at most once per
	// RequestInterval).
	Request bool
	// Expired are items that waited longer than the resolve timeout,
	// removed from the queue: the caller's to release.
	Expired []T
}

// Queue queues item for ip, whose MAC is unknown, at now. Items of an
// address unanswered for the resolve timeout are given up first; when the
// queue is full, those of every such address are.
func (c *Cache[K, T]) Queue(ip K, item T, now int64) Queued[T] {
	var r Queued[T]
	c.pmu.Lock()
	defer c.pmu.Unlock()
	w := c.pending[ip]
	if w != nil && now-w.since >= c.resolve {
		// Unanswered for too long: give up on what waited, start over.
		r.Expired = w.items
		c.npend.Add(-int32(len(w.items)))
		w = nil
	}
	if w == nil {
		w = &waiting[T]{since: now, lastReq: now - int64(RequestInterval)}
		c.pending[ip] = w
	}
	if now-w.lastReq >= int64(RequestInterval) {
		w.lastReq = now
		r.Request = true
	}
	if int(c.npend.Load()) >= c.total {
		for ip2, w2 := range c.pending {
			if w2 != w && now-w2.since >= c.resolve {
				r.Expired = append(r.Expired, w2.items...)
				c.npend.Add(-int32(len(w2.items)))
				delete(c.pending, ip2)
			}
		}
	}
	if len(w.items) >= c.perHost || int(c.npend.Load()) >= c.total {
		return r
	}
	w.items = append(w.items, item)
	c.npend.Add(1)
	r.OK = true
	return r
}

// Expired says what Expire did.
type Expired[K comparable, T any] struct {
	// Items waited longer than the resolve timeout: the caller's to
	// release.
	Items []T
	// Retry are the addresses still being resolved whose last request
	// is RequestInterval old: the caller asks again.
	Retry []K
	// Forgotten counts the entries removed for not being confirmed
	// within the timeout.
	Forgotten int
}

// Expire gives up the items unanswered for the resolve timeout, lists the
// addresses to ask for again, and removes the expired entries. It is meant
// for a periodic sweep (a few times per resolve timeout).
func (c *Cache[K, T]) Expire(now int64) Expired[K, T] {
	var r Expired[K, T]
	c.pmu.Lock()
	for ip, w := range c.pending {
		if now-w.since >= c.resolve {
			r.Items = append(r.Items, w.items...)
			c.npend.Add(-int32(len(w.items)))
			delete(c.pending, ip)
		} else if now-w.lastReq >= int64(RequestInterval) {
			w.lastReq = now
			r.Retry = append(r.Retry, ip)
		}
	}
	c.pmu.Unlock()
	c.mu.Lock()
	r.Forgotten = c.sweepLocked(now)
	c.mu.Unlock()
	return r
}

// Entry is one neighbour as Snapshot lists it.
type Entry[K comparable] struct {
	IP  K
	MAC [6]byte
	// Age is the time since the entry was last confirmed.
	Age time.Duration
}

// Neighbor is an entry as the listings of the gateway and the uplinks show
// it.
type Neighbor struct {
	// IP is the neighbour's address.
	IP netip.Addr
	// MAC is the neighbour's hardware address.
	MAC net.HardwareAddr
	// Age is the time since the neighbour was last heard from.
	Age time.Duration
}

// Neighbors returns Snapshot as Neighbors sorted by address; addr converts
// a key (netip.AddrFrom4 for [4]byte). The result is the caller's.
func (c *Cache[K, T]) Neighbors(now int64, addr func(K) netip.Addr) []Neighbor {
	entries := c.Snapshot(now)
	out := make([]Neighbor, 0, len(entries))
	for _, e := range entries {
		out = append(out, Neighbor{IP: addr(e.IP), MAC: net.HardwareAddr(e.MAC[:]), Age: e.Age})
	}
	slices.SortFunc(out, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
	return out
}

// Snapshot removes the expired entries and returns the others, in no
// particular order.
func (c *Cache[K, T]) Snapshot(now int64) []Entry[K] {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	out := make([]Entry[K], 0, len(c.entries))
	for ip, e := range c.entries {
		out = append(out, Entry[K]{IP: ip, MAC: e.mac, Age: time.Duration(max(now-e.seen.Load(), 0))})
	}
	return out
}

// Len returns the number of entries, expired ones included until a sweep.
func (c *Cache[K, T]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Pending returns the number of items waiting.
func (c *Cache[K, T]) Pending() int { return int(c.npend.Load()) }

func (c *Cache[K, T]) sweepLocked(now int64) int {
	n := 0
	for ip, e := range c.entries {
		if now-e.seen.Load() > c.timeout {
			delete(c.entries, ip)
			n++
		}
	}
	return n
}

func (c *Cache[K, T]) evictOldestLocked() {
	var (
		oldest K
		seen   int64
		found  bool
	)
	for ip, e := range c.entries {
		if s := e.seen.Load(); !found || s < seen {
			oldest, seen, found = ip, s, true
		}
	}
	if found {
		delete(c.entries, oldest)
	}
}
