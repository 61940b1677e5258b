package tap

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// linkExists reports whether eth0 exists in the namespace at path.
func linkExists(t *testing.T, path string) bool {
	t.Helper()
	found := false
	withHandle(t, path, func(h *netlink.Handle) {
		_, err := h.LinkByName("eth0")
		found = err == nil
	})
	return found
}

// TestPersistAdopt: a persistent TAP outlives its file with its address,
// is adopted again (only with its MAC) and removed once its flag is
// cleared; Remove deletes one left persistent.
func TestPersistAdopt(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	cfg := testConfig(path)
	cfg.GSOMaxSegs = 44
	d := create(t, cfg)
	if n := d.GSOMaxSegs(); n != 44 {
		t.Errorf("GSOMaxSegs() = %d after Create with 44", n)
	}
	if err := d.SetPersist(true); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// Changed behind the device's back: Adopt must read it, not assume.
	if err := SetGSOMaxSegs(path, "eth0", testMAC, 45); err != nil {
		t.Fatal(err)
	}
	if !linkExists(t, path) {
		t.Fatal("persistent TAP deleted when its file was closed")
	}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	if _, err := Adopt(path, "eth0", other, false); !errors.Is(err, ErrNotOurs) {
		t.Errorf("Adopt with another MAC: %v, want ErrNotOurs", err)
	}
	var nf netlink.LinkNotFoundError
	if _, err := Adopt(path, "eth9", testMAC, false); !errors.As(err, &nf) {
		t.Errorf("Adopt of a missing interface: %v, want LinkNotFoundError", err)
	}
	a, err := Adopt(path, "eth0", testMAC, false)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if n := a.GSOMaxSegs(); n != 45 {
		t.Errorf("GSOMaxSegs() = %d after Adopt, want 45, the kernel's", n)
	}
	if _, err := Adopt(path, "eth0", testMAC, false); err == nil {
		t.Error("second Adopt of an attached TAP succeeded")
	}
	withHandle(t, path, func(h *netlink.Handle) {
		link, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := h.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != testAddr.String() {
			t.Errorf("addresses after adoption = %v, want %s", addrs, testAddr)
		}
	})
	if err := a.SetPersist(false); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if linkExists(t, path) {
		t.Fatal("TAP still there after its persist flag was cleared and its file closed")
	}

	d = create(t, testConfig(path))
	if err := d.SetPersist(true); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := Remove(path, "eth0", other); !errors.Is(err, ErrNotOurs) {
		t.Errorf("Remove with another MAC: %v, want ErrNotOurs", err)
	}
	if err := Remove(path, "eth0", testMAC); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if linkExists(t, path) {
		t.Error("TAP still there after Remove")
	}
}
