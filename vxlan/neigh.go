package vxlan

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
)

// NeighTable maps the IP addresses seen behind the tunnel to their MACs,
// for ARP and ND suppression: what the switch answers for instead of
// flooding a request to every remote VTEP. It is learned from the ARP and
// ND messages decapsulated from the tunnel (the switch passes them, see
// vswitch.NeighSuppressor), with the MAC table's ageing and limit, and an
// entry is used only while its MAC is in the MAC table (behind a VTEP):
// when the MAC ages out or is deleted, requests for its addresses are
// flooded again. Lookups take a read lock; Learn takes the write lock only
// for a new or changed address and refreshes an entry with an atomic
// store at most once per second. All methods are safe for concurrent use.
type NeighTable struct {
	ageing int64
	max    int

	mu sync.RWMutex // guards m
	m  map[[16]byte]*neighEntry

	tableCounters
}

type neighEntry struct {
	mac  fdb.MAC // written under the write lock
	seen atomic.Int64
}

// NewNeighTable returns an empty table with cfg's ageing and limit (the
// defaults of TableConfig for zero values).
func NewNeighTable(cfg TableConfig) (*NeighTable, error) {
	ageing, limit, err := cfg.limits("vxlan neighbour table")
	if err != nil {
		return nil, err
	}
	return &NeighTable{ageing: ageing, max: limit, m: map[[16]byte]*neighEntry{}}, nil
}

func (t *NeighTable) aged(e *neighEntry, now int64) bool { return now-e.seen.Load() > t.ageing }

// Learn records that ip (IPv6, or IPv4 as IPv4-mapped IPv6) is at mac at
// time now. A multicast or zero MAC, and the unspecified or a multicast
// address, are not learned; a full table learns nothing new (counted).
func (t *NeighTable) Learn(ip [16]byte, mac fdb.MAC, now int64) {
	if mac.IsMulticast() || mac.IsZero() || !unicastIP(ip) {
		return
	}
	t.mu.RLock()
	e := t.m[ip]
	if e != nil && e.mac == mac && !t.aged(e, now) {
		if now-e.seen.Load() > refreshGran {
			e.seen.Store(now)
		}
		t.mu.RUnlock()
		return
	}
	t.mu.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	e = t.m[ip]
	switch {
	case e != nil:
		switch {
		case t.aged(e, now):
			t.learned.Add(1)
		case e.mac != mac:
			t.moved.Add(1)
		}
		e.mac = mac
	case len(t.m) >= t.max:
		t.full.Add(1)
		return
	default:
		e = &neighEntry{mac: mac}
		t.m[ip] = e
		t.learned.Add(1)
	}
	e.seen.Store(now)
}

// unicastIP reports whether ip may be learned: not unspecified, not
// multicast, not an IPv4-mapped 0.0.0.0, multicast or broadcast address.
func unicastIP(ip [16]byte) bool {
	a := netip.AddrFrom16(ip)
	if a.Is4In6() {
		a = a.Unmap()
		return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return !a.IsUnspecified() && !a.IsMulticast()
}

// Lookup returns the MAC of ip, if known and not aged at now.
func (t *NeighTable) Lookup(ip [16]byte, now int64) (fdb.MAC, bool) {
	t.mu.RLock()
	e := t.m[ip]
	var mac fdb.MAC
	ok := e != nil && !t.aged(e, now)
	if ok {
		mac = e.mac
	}
	t.mu.RUnlock()
	return mac, ok
}

// Expire removes the entries aged at now and returns how many.
func (t *NeighTable) Expire(now int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sweep(t.m, func(e *neighEntry) bool { return t.aged(e, now) })
}

// Neigh is one entry of a NeighTable, for listings.
type Neigh struct {
	IP  netip.Addr
	MAC fdb.MAC
	// Age is the time since the last message that confirmed it.
	Age time.Duration
}

// Entries lists the entries not aged at now, by address.
func (t *NeighTable) Entries(now int64) []Neigh {
	t.mu.RLock()
	out := make([]Neigh, 0, len(t.m))
	for ip, e := range t.m {
		if !t.aged(e, now) {
			out = append(out, Neigh{IP: netip.AddrFrom16(ip).Unmap(), MAC: e.mac, Age: time.Duration(now - e.seen.Load())})
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Neigh) int { return a.IP.Compare(b.IP) })
	return out
}

// Stats returns t's counters: Moved counts addresses seen at a new MAC.
func (t *NeighTable) Stats() TableStats {
	t.mu.RLock()
	n := len(t.m)
	t.mu.RUnlock()
	return t.stats(n)
}
