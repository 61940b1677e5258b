package vxlan

import (
	"net/netip"
	"slices"
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
// store at most once per second (agedMap); Stats' Moved counts addresses
// seen at a new MAC. All methods are safe for concurrent use.
type NeighTable struct {
	agedMap[[16]byte, fdb.MAC]
}

// NewNeighTable returns an empty table with cfg's ageing and limit (the
// defaults of TableConfig for zero values).
func NewNeighTable(cfg TableConfig) (*NeighTable, error) {
	t := &NeighTable{}
	if err := t.init(cfg, "vxlan neighbour table"); err != nil {
		return nil, err
	}
	return t, nil
}

// Learn records that ip (IPv6, or IPv4 as IPv4-mapped IPv6) is at mac at
// time now. A multicast or zero MAC, and the unspecified or a multicast
// address, are not learned; a full table learns nothing new (counted).
func (t *NeighTable) Learn(ip [16]byte, mac fdb.MAC, now int64) {
	if mac.IsMulticast() || mac.IsZero() || !unicastIP(ip) {
		return
	}
	t.learn(ip, mac, now)
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
	return t.lookup(ip, now)
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
	out := list(&t.agedMap, now, func(ip [16]byte, e *agedEntry[fdb.MAC], age time.Duration) Neigh {
		return Neigh{IP: netip.AddrFrom16(ip).Unmap(), MAC: e.val, Age: age}
	})
	slices.SortFunc(out, func(a, b Neigh) int { return a.IP.Compare(b.IP) })
	return out
}
