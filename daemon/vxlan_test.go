package daemon

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
)

// TestVXLANAPI opens tunnels on loopback (no privilege needed): the
// default MTU leaves room for the encapsulation, several tunnels need a
// VLAN each, static entries show in the FDB with their VTEP, and a removed
// tunnel leaves nothing behind.
func TestVXLANAPI(t *testing.T) {
	spec := api.VXLANSpec{VNI: 42, Local: "127.0.0.1", Remotes: []string{"127.0.0.2"}, Port: testutil.FreePort(t, "udp", "127.0.0.1"), MTU: 1500}
	d := newTestDaemon(t, Config{VXLAN: []api.VXLANSpec{spec}})
	if d.cfg.MTU != 1450 {
		t.Errorf("MTU %d with an underlay of 1500, want 1450", d.cfg.MTU)
	}
	list := d.VXLANs()
	if len(list) != 1 || list[0].Name != "vxlan42" || list[0].InnerMTU != 1450 || list[0].VLAN != 1 || !list[0].Stats.Suppress {
		t.Fatalf("tunnels: %+v (want suppression on by default)", list)
	}
	other := api.VXLANSpec{VNI: 43, Local: "127.0.0.1", Remotes: []string{"127.0.0.3"}, Port: spec.Port, VLAN: 10} // the same port, as vxlan devices share 4789
	if _, err := d.AddVXLAN(other); !errors.Is(err, ErrInvalid) {
		t.Errorf("second tunnel while the first has no vlan: %v, want ErrInvalid", err)
	}
	if _, err := d.AddVXLAN(spec); !errors.Is(err, ErrConflict) {
		t.Errorf("vni 42 twice: %v, want ErrConflict", err)
	}
	rec := httptest.NewRecorder()
	d.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`tapswitch_vxlan_vtep_packets_total{dir="tx",tunnel="vxlan42",vtep="127.0.0.2"} 0`,
		`tapswitch_vxlan_dropped_total{reason="claimed_mac",tunnel="vxlan42"} 0`,
		`tapswitch_port_rx_packets_total{port="vxlan42"}`,
		`tapswitch_vxlan_suppressed_total{proto="arp",tunnel="vxlan42"} 0`,
		`tapswitch_vxlan_suppressed_total{proto="nd",tunnel="vxlan42"} 0`,
		`tapswitch_vxlan_neighs{tunnel="vxlan42"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if l, err := d.VXLANNeighs(42); err != nil || len(l) != 0 {
		t.Errorf("addresses behind vni 42: %v, %v; want none yet", l, err)
	}
	if _, err := d.VXLANNeighs(7); !errors.Is(err, ErrNotFound) {
		t.Errorf("addresses behind vni 7: %v, want ErrNotFound", err)
	}
	const mac = "02:42:0a:5a:07:07"
	for _, bad := range []api.VXLANStatic{{MAC: "ff:ff:ff:ff:ff:ff", VTEP: "127.0.0.2"}, {MAC: mac, VTEP: "::1"}, {MAC: "x", VTEP: "127.0.0.2"}} {
		if err := d.AddVXLANStatic(42, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("static %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if err := d.AddVXLANStatic(7, api.VXLANStatic{MAC: mac, VTEP: "127.0.0.2"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("static on vni 7: %v, want ErrNotFound", err)
	}
	if err := d.AddVXLANStatic(42, api.VXLANStatic{MAC: mac, VTEP: "127.0.0.9"}); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range d.FDB() {
		if e.MAC == mac {
			found = true
			if e.Port != "vxlan42" || !e.Static || e.VTEP != "127.0.0.9" {
				t.Errorf("fdb entry %+v, want static on vxlan42 at 127.0.0.9", e)
			}
		}
	}
	if !found {
		t.Errorf("static entry %s not in the fdb", mac)
	}
	if err := d.DeleteVXLANStatic(42, mac); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVXLANStatic(42, mac); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if err := d.DeleteVXLAN(42); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVXLAN(42); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteVXLAN: %v, want ErrNotFound", err)
	}
	for _, p := range d.Ports() {
		if p.Kind == "vxlan" {
			t.Errorf("port %s left after DeleteVXLAN", p.Name)
		}
	}
	// Now two tunnels, each with its VLAN, one without suppression.
	spec.VLAN = 20
	other.Suppress = "off"
	for _, s := range []api.VXLANSpec{spec, other} {
		if _, err := d.AddVXLAN(s); err != nil {
			t.Fatal(err)
		}
	}
	if l := d.VXLANs(); !l[0].Stats.Suppress || l[1].Stats.Suppress || l[1].Spec.String() != other.String() {
		t.Errorf("suppression of vni 42 and 43: %v and %v (%s), want on and off", l[0].Stats.Suppress, l[1].Stats.Suppress, l[1].Spec)
	}
	other.VNI = 44
	if _, err := d.AddVXLAN(other); !errors.Is(err, ErrConflict) {
		t.Errorf("vlan 10 twice: %v, want ErrConflict", err)
	}
	if n := len(d.VXLANs()); n != 2 {
		t.Errorf("%d tunnels, want 2", n)
	}
}
