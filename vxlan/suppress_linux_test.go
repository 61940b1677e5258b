package vxlan

import (
	"net/netip"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
)

// TestTunnelSuppress: the tunnel is a NeighSuppressor only with Suppress;
// an address it learned is given while its MAC is behind a VTEP, and the
// answers the switch gives for it are counted in Stats.
func TestTunnelSuppress(t *testing.T) {
	a, b := pair(t, func(a, _ *Config) { a.Suppress = true })
	if !a.SuppressNeigh() || b.SuppressNeigh() {
		t.Fatalf("SuppressNeigh: %v and %v, want true for the tunnel with Suppress only", a.SuppressNeigh(), b.SuppressNeigh())
	}
	ip := netip.MustParseAddr("::ffff:10.80.2.2").As16()
	mac := fdb.MAC{2, 0, 0, 0, 0, 0x22}
	now := a.Now()
	a.LearnNeigh(ip, mac, now)
	if _, ok := a.LookupNeigh(ip, now); ok {
		t.Error("an address whose MAC is behind no VTEP was given")
	}
	v, _ := a.vtep(addrB)
	a.Table().Learn(mac, v, now)
	if got, ok := a.LookupNeigh(ip, now); !ok || got != mac {
		t.Errorf("LookupNeigh = %v, %v; want %s", got, ok, mac)
	}
	a.Table().Delete(mac)
	if _, ok := a.LookupNeigh(ip, now); ok {
		t.Error("an address was given after its MAC left the table")
	}
	a.Suppressed(false)
	a.Suppressed(true)
	a.Suppressed(true)
	if s := a.Stats(); s.ARPSuppressed != 1 || s.NDSuppressed != 2 || s.Neigh.Entries != 1 || s.Neigh.Learned != 1 {
		t.Errorf("stats %+v: want 1 ARP and 2 ND suppressed, 1 address learned", s)
	}
}
