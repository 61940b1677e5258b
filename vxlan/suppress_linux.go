package vxlan

import (
	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

var _ vswitch.NeighSuppressor = (*Tunnel)(nil)

// SuppressNeigh reports whether the tunnel suppresses ARP and ND
// (Config.Suppress): the switch then answers requests for the addresses
// it knows instead of replicating them to every remote VTEP.
func (t *Tunnel) SuppressNeigh() bool { return t.cfg.Suppress }

// LookupNeigh returns the MAC of ip learned from the tunnel, while that
// MAC is in the MAC table (behind a VTEP) at now.
func (t *Tunnel) LookupNeigh(ip [16]byte, now int64) (fdb.MAC, bool) {
	mac, ok := t.neigh.Lookup(ip, now)
	if !ok {
		return mac, false
	}
	if _, ok := t.table.Lookup(mac, now); !ok {
		return mac, false
	}
	return mac, true
}

// LearnNeigh records that ip is at mac behind the tunnel (the switch
// calls it for the ARP and ND messages decapsulated from the tunnel).
func (t *Tunnel) LearnNeigh(ip [16]byte, mac fdb.MAC, now int64) {
	t.neigh.Learn(ip, mac, now)
}

// Suppressed counts a request the switch answered instead of sending it
// through the tunnel: an NS if nd, else an ARP request.
func (t *Tunnel) Suppressed(nd bool) {
	if nd {
		t.c.ndSuppressed.Add(1)
		return
	}
	t.c.arpSuppressed.Add(1)
}

// Neigh returns the tunnel's table of addresses learned behind it (empty
// unless Config.Suppress).
func (t *Tunnel) Neigh() *NeighTable { return t.neigh }
