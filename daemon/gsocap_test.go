package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/vxlan"
)

// gsoRecorder stands in for setting a TAP's gso_max_segs: it records the
// calls, and fails those of the ports in fail.
type gsoRecorder struct {
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]bool
}

func (r *gsoRecorder) set(a *attachment, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[a.name] = n
	if r.fail[a.name] {
		return errors.New("no such device")
	}
	return nil
}

// take returns the calls since the last take.
func (r *gsoRecorder) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = map[string]int{}
	return c
}

func sameCalls(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// TestSyncGSOCaps: the first tunnel bounds the TAPs attached before it
// (each by its MTU, an adopted one whose bound is not known included), a
// second changes nothing, removing the last takes the bound off; a TAP
// that cannot be set is a warning once and is tried again at each sync;
// an attachment's own sync touches it alone.
func TestSyncGSOCaps(t *testing.T) {
	d := newTestDaemon(t, Config{})
	var logs bytes.Buffer
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	r := &gsoRecorder{calls: map[string]int{}, fail: map[string]bool{}}
	d.gso.set = r.set
	d.mu.Lock()
	for _, a := range []*attachment{
		{name: "p1", mtu: 1450, gsoSegs: tap.MaxGSOSegs},
		{name: "p2", mtu: 9000, gsoSegs: tap.MaxGSOSegs},
		{name: "p3", mtu: 1450}, // not known (0)
	} {
		d.ports[a.name] = a
	}
	d.mu.Unlock()

	port := testutil.FreePort(t, "udp", "127.0.0.1")
	spec := api.VXLANSpec{VNI: 42, Local: "127.0.0.1", Remotes: []string{"127.0.0.2"}, Port: port, MTU: 1500, VLAN: 10}
	if _, err := d.AddVXLAN(spec); err != nil {
		t.Fatal(err)
	}
	capped := map[string]int{"p1": 44, "p2": vxlan.SegmentsPerSend(9000), "p3": 44}
	if got := r.take(); !sameCalls(got, capped) {
		t.Fatalf("after the first tunnel: set %v, want %v", got, capped)
	}
	other := api.VXLANSpec{VNI: 43, Local: "127.0.0.1", Remotes: []string{"127.0.0.3"}, Port: port, MTU: 1500, VLAN: 20}
	if _, err := d.AddVXLAN(other); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVXLAN(43); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("a second tunnel added and removed: set %v, want nothing (the bound is the same)", got)
	}

	r.fail["p1"] = true
	if err := d.DeleteVXLAN(42); err != nil {
		t.Fatal(err)
	}
	free := map[string]int{"p1": tap.MaxGSOSegs, "p2": tap.MaxGSOSegs, "p3": tap.MaxGSOSegs}
	if got := r.take(); !sameCalls(got, free) {
		t.Fatalf("after the last tunnel: set %v, want %v", got, free)
	}
	d.syncGSOCaps()
	if got := r.take(); !sameCalls(got, map[string]int{"p1": tap.MaxGSOSegs}) {
		t.Fatalf("next sync: set %v, want p1 tried again alone", got)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "port=p1") {
		t.Errorf("%d warnings, want one for p1:\n%s", n, logs.String())
	}
	r.fail["p1"] = false
	d.syncGSOCaps()
	d.syncGSOCaps()
	if got := r.take(); !sameCalls(got, map[string]int{"p1": tap.MaxGSOSegs}) {
		t.Fatalf("once p1 can be set: set %v, want p1 once", got)
	}

	// A port's own sync, as attach makes it: a tunnel came while its
	// TAP was made without a bound.
	if _, err := d.addVXLAN(spec); err != nil { // no sync of its own
		t.Fatal(err)
	}
	d.mu.Lock()
	p2 := d.ports["p2"]
	d.mu.Unlock()
	d.syncGSO(p2)
	if got := r.take(); !sameCalls(got, map[string]int{"p2": vxlan.SegmentsPerSend(9000)}) {
		t.Fatalf("p2's own sync: set %v, want p2 alone", got)
	}
}
