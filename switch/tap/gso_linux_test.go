package tap

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// gsoMaxSegs returns eth0's gso_max_segs in the namespace at path.
func gsoMaxSegs(t *testing.T, path string) uint32 {
	t.Helper()
	var n uint32
	withHandle(t, path, func(h *netlink.Handle) {
		link, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		n = link.Attrs().GSOMaxSegs
	})
	return n
}

// TestSetGSOMaxSegs: the bound of a TAP already in its namespace, and up,
// is lowered and raised back; another MAC, a missing interface and an
// out-of-range value change nothing.
func TestSetGSOMaxSegs(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	defer d.Close()
	if n := d.GSOMaxSegs(); n != MaxGSOSegs {
		t.Errorf("GSOMaxSegs() = %d after Create without GSOMaxSegs, want %d", n, MaxGSOSegs)
	}
	if n := gsoMaxSegs(t, path); n != MaxGSOSegs {
		t.Fatalf("gso_max_segs %d after Create without GSOMaxSegs, want %d", n, MaxGSOSegs)
	}
	if err := SetGSOMaxSegs(path, "eth0", testMAC, 44); err != nil {
		t.Fatalf("SetGSOMaxSegs 44: %v", err)
	}
	if n := gsoMaxSegs(t, path); n != 44 {
		t.Fatalf("gso_max_segs %d, want 44", n)
	}
	// The same value again writes nothing and is no error.
	if err := SetGSOMaxSegs(path, "eth0", testMAC, 44); err != nil {
		t.Fatalf("SetGSOMaxSegs 44 again: %v", err)
	}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	if err := SetGSOMaxSegs(path, "eth0", other, 7); !errors.Is(err, ErrNotOurs) {
		t.Errorf("SetGSOMaxSegs with another MAC: %v, want ErrNotOurs", err)
	}
	var nf netlink.LinkNotFoundError
	if err := SetGSOMaxSegs(path, "eth9", testMAC, 7); !errors.As(err, &nf) {
		t.Errorf("SetGSOMaxSegs of a missing interface: %v, want LinkNotFoundError", err)
	}
	for _, n := range []int{0, -1, MaxGSOSegs + 1} {
		if err := SetGSOMaxSegs(path, "eth0", testMAC, n); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("SetGSOMaxSegs %d: %v, want ErrInvalidConfig", n, err)
		}
	}
	if n := gsoMaxSegs(t, path); n != 44 {
		t.Fatalf("gso_max_segs %d after the refused calls, want 44 still", n)
	}
	if err := SetGSOMaxSegs(path, "eth0", testMAC, MaxGSOSegs); err != nil {
		t.Fatalf("SetGSOMaxSegs %d: %v", MaxGSOSegs, err)
	}
	if n := gsoMaxSegs(t, path); n != MaxGSOSegs {
		t.Fatalf("gso_max_segs %d, want %d", n, MaxGSOSegs)
	}
}
