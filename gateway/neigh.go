package gateway

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Neighbor is one entry of the gateway's neighbour table: an IPv4 address
// in the subnet and the MAC it was last heard from.
type Neighbor struct {
	// IP is the neighbour's IPv4 address.
	IP netip.Addr
	// MAC is the neighbour's hardware address.
	MAC net.HardwareAddr
	// Age is the time since the neighbour was last heard from (an ARP
	// packet or an IPv4 datagram it sent to the gateway).
	Age time.Duration
}

type neighEntry struct {
	mac  [6]byte
	seen time.Time
}

// neighTable maps IPv4 addresses to MACs. Entries expire timeout after they
// were last confirmed and are removed lazily. It holds at most limit entries;
// a new neighbour in a full table first sweeps the expired entries, then
// evicts the least recently confirmed one.
type neighTable struct {
	timeout time.Duration
	limit   int

	mu      sync.Mutex             // guards entries
	entries map[[4]byte]neighEntry // by IPv4 address
}

func newNeighTable(timeout time.Duration, limit int) *neighTable {
	return &neighTable{timeout: timeout, limit: limit, entries: make(map[[4]byte]neighEntry)}
}

// learn records that ip is at mac at time now. It returns whether the
// entry is new and whether another one was evicted to make room.
func (t *neighTable) learn(ip [4]byte, mac [6]byte, now time.Time) (added, evicted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.entries[ip]; !ok {
		added = true
		if len(t.entries) >= t.limit {
			t.sweepLocked(now)
		}
		if len(t.entries) >= t.limit {
			t.evictOldestLocked()
			evicted = true
		}
	}
	t.entries[ip] = neighEntry{mac: mac, seen: now}
	return added, evicted
}

// lookup returns the MAC of ip if it is known and not expired at now.
func (t *neighTable) lookup(ip [4]byte, now time.Time) ([6]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[ip]
	if !ok {
		return [6]byte{}, false
	}
	if t.expired(e, now) {
		delete(t.entries, ip)
		return [6]byte{}, false
	}
	return e.mac, true
}

func (t *neighTable) forget(ip [4]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, ip)
}

// snapshot removes the expired entries and returns the others, sorted by
// address.
func (t *neighTable) snapshot(now time.Time) []Neighbor {
	t.mu.Lock()
	t.sweepLocked(now)
	out := make([]Neighbor, 0, len(t.entries))
	for ip, e := range t.entries {
		out = append(out, Neighbor{
			IP:  netip.AddrFrom4(ip),
			MAC: net.HardwareAddr(append([]byte(nil), e.mac[:]...)),
			Age: max(now.Sub(e.seen), 0),
		})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
	return out
}

func (t *neighTable) expired(e neighEntry, now time.Time) bool {
	return now.Sub(e.seen) > t.timeout
}

func (t *neighTable) sweepLocked(now time.Time) {
	for ip, e := range t.entries {
		if t.expired(e, now) {
			delete(t.entries, ip)
		}
	}
}

func (t *neighTable) evictOldestLocked() {
	var (
		oldest [4]byte
		seen   time.Time
		found  bool
	)
	for ip, e := range t.entries {
		if !found || e.seen.Before(seen) {
			oldest, seen, found = ip, e.seen, true
		}
	}
	if found {
		delete(t.entries, oldest)
	}
}
