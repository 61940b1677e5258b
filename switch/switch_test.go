package vswitch_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/memport"
)

const wait = 2 * time.Second        // for frames that must arrive
const quiet = 50 * time.Millisecond // for frames that must not

var (
	macA  = fdb.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB  = fdb.MAC{0x02, 0, 0, 0, 0, 0xb}
	macC  = fdb.MAC{0x02, 0, 0, 0, 0, 0xc}
	macX  = fdb.MAC{0x02, 0, 0, 0, 0, 0xee} // never sends
	bcast = fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast = fdb.MAC{0x01, 0x00, 0x5e, 0, 0, 1}
)

// frame builds a virtio_net_hdr (zero) + Ethernet frame with an
// experimental EtherType (0x88b5, IEEE 802 local experimental) and a tag
// byte in the payload so tests can tell frames apart.
func frame(dst, src fdb.MAC, tag byte) []byte {
	eth := make([]byte, 0, 60)
	eth = append(eth, dst[:]...)
	eth = append(eth, src[:]...)
	eth = binary.BigEndian.AppendUint16(eth, 0x88b5)
	eth = append(eth, tag)
	eth = append(eth, make([]byte, 60-len(eth))...)
	return memport.WithHdr(eth)
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type rig struct {
	sw    *vswitch.Switch
	clock *fakeClock
	ports map[string]*memport.Port
	ids   map[string]fdb.PortID
}

func newRig(t *testing.T, cfg vswitch.Config, names ...string) *rig {
	t.Helper()
	r := &rig{clock: &fakeClock{}, ports: map[string]*memport.Port{}, ids: map[string]fdb.PortID{}}
	r.clock.ns.Store(int64(time.Hour))
	if cfg.Clock == nil {
		cfg.Clock = r.clock.now
	}
	sw, err := vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sw = sw
	t.Cleanup(func() { sw.Close() })
	for _, n := range names {
		r.add(t, n)
	}
	return r
}

func (r *rig) add(t *testing.T, name string) *memport.Port {
	t.Helper()
	p := memport.New(name, 64)
	id, err := r.sw.AddPort(p)
	if err != nil {
		t.Fatal(err)
	}
	r.ports[name], r.ids[name] = p, id
	return p
}

func (r *rig) send(t *testing.T, from string, f []byte) {
	t.Helper()
	if err := r.ports[from].Inject(f); err != nil {
		t.Fatal(err)
	}
}

// forward sends f from the port from and checks that exactly the ports to
// receive it.
func (r *rig) forward(t *testing.T, from string, f []byte, to ...string) {
	t.Helper()
	r.send(t, from, f)
	r.expect(t, f, to...)
}

// expect checks that exactly the named ports receive f (and nothing else
// arrives on the others within the quiet time).
func (r *rig) expect(t *testing.T, f []byte, to ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, n := range to {
		want[n] = true
		got, ok := r.ports[n].Recv(wait)
		if !ok {
			t.Fatalf("port %s: no frame, want tag %d", n, f[vswitch.VnetHdrLen+14])
		}
		if !bytes.Equal(got, f) {
			t.Fatalf("port %s: got frame (%d bytes, tag %d), want %d bytes, tag %d", n, len(got), got[min(len(got)-1, vswitch.VnetHdrLen+14)], len(f), f[vswitch.VnetHdrLen+14])
		}
	}
	for n, p := range r.ports {
		if want[n] {
			continue
		}
		if got, ok := p.Recv(quiet); ok {
			t.Fatalf("port %s: got unexpected frame with tag %d", n, got[vswitch.VnetHdrLen+14])
		}
	}
}

func TestForwarding(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *rig)
	}{
		{"unknown unicast floods to every other port", func(t *testing.T, r *rig) {
			r.forward(t, "a", frame(macX, macA, 1), "b", "c")
		}},
		{"broadcast floods and never returns to its sender", func(t *testing.T, r *rig) {
			r.forward(t, "a", frame(bcast, macA, 2), "b", "c")
		}},
		{"multicast floods", func(t *testing.T, r *rig) {
			r.forward(t, "b", frame(mcast, macB, 3), "a", "c")
		}},
		{"learned unicast goes to one port", func(t *testing.T, r *rig) {
			r.forward(t, "b", frame(bcast, macB, 4), "a", "c")
			r.forward(t, "a", frame(macB, macA, 5), "b")
			r.forward(t, "b", frame(macA, macB, 6), "a") // a was learned from the frame before
		}},
		{"a moved MAC follows the station", func(t *testing.T, r *rig) {
			r.forward(t, "b", frame(bcast, macB, 7), "a", "c")
			r.forward(t, "c", frame(bcast, macB, 8), "a", "b") // B now behind c
			r.forward(t, "a", frame(macB, macA, 9), "c")
			if got := r.sw.FDB().Stats().Moved; got != 1 {
				t.Errorf("fdb moves: got %d, want 1", got)
			}
		}},
		{"destination behind the ingress port is filtered", func(t *testing.T, r *rig) {
			r.forward(t, "b", frame(bcast, macB, 10), "a", "c")
			r.forward(t, "b", frame(macB, macC, 11)) // c and b "on the same segment" per the fdb
			st, _ := r.sw.Stats(r.ids["b"])
			if st.RxFiltered != 1 {
				t.Errorf("b rx_filtered: got %d, want 1", st.RxFiltered)
			}
		}},
		{"multicast or zero source is dropped, not learned", func(t *testing.T, r *rig) {
			r.send(t, "a", frame(macX, mcast, 12))
			r.send(t, "a", frame(macX, fdb.MAC{}, 13))
			r.forward(t, "a", frame(bcast, macA, 14), "b", "c") // ordering: the two were handled before this
			st, _ := r.sw.Stats(r.ids["a"])
			if st.RxErrors != 2 {
				t.Errorf("a rx_errors: got %d, want 2", st.RxErrors)
			}
			if n := r.sw.FDB().Len(); n != 1 {
				t.Errorf("fdb entries: got %d, want 1 (only A)", n)
			}
		}},
		{"a failing port does not stop the flood", func(t *testing.T, r *rig) {
			r.ports["b"].Fail(true)
			r.forward(t, "a", frame(bcast, macA, 14), "c")
			st, _ := r.sw.Stats(r.ids["b"])
			if st.TxDropped != 1 {
				t.Errorf("b tx_dropped: got %d, want 1", st.TxDropped)
			}
		}},
		{"runt frame is counted and dropped", func(t *testing.T, r *rig) {
			r.send(t, "a", make([]byte, vswitch.VnetHdrLen+13))
			r.forward(t, "a", frame(bcast, macA, 15), "b", "c") // ordering: the runt was handled before this
			st, _ := r.sw.Stats(r.ids["a"])
			if st.RxErrors != 1 || st.RxPackets != 1 {
				t.Errorf("a rx_errors, rx_packets: got %d, %d, want 1, 1", st.RxErrors, st.RxPackets)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newRig(t, vswitch.Config{}, "a", "b", "c"))
		})
	}
}

func TestCounters(t *testing.T) {
	r := newRig(t, vswitch.Config{}, "a", "b")
	f := frame(bcast, macA, 1)
	r.forward(t, "a", f, "b")
	a, _ := r.sw.Stats(r.ids["a"])
	b, _ := r.sw.Stats(r.ids["b"])
	ethLen := uint64(len(f) - vswitch.VnetHdrLen)
	if a.RxPackets != 1 || a.RxBytes != ethLen {
		t.Errorf("a rx: got %d packets %d bytes, want 1, %d", a.RxPackets, a.RxBytes, ethLen)
	}
	// The tx counter is bumped after the frame is handed over: wait for it.
	deadline := time.Now().Add(wait)
	for b.TxPackets == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		b, _ = r.sw.Stats(r.ids["b"])
	}
	if b.TxPackets != 1 || b.TxBytes != ethLen {
		t.Errorf("b tx: got %d packets %d bytes, want 1, %d", b.TxPackets, b.TxBytes, ethLen)
	}
}

func TestAgeing(t *testing.T) {
	r := newRig(t, vswitch.Config{FDB: fdb.Config{Ageing: 10 * time.Second}}, "a", "b", "c")
	r.forward(t, "b", frame(bcast, macB, 1), "a", "c")
	r.forward(t, "a", frame(macB, macA, 2), "b")
	r.clock.advance(11 * time.Second)
	r.forward(t, "c", frame(macB, macC, 3), "a", "b") // B aged out: flooded again
}

func TestLimits(t *testing.T) {
	r := newRig(t, vswitch.Config{FDB: fdb.Config{MaxPerPort: 2}}, "a", "b", "c")
	macs := []fdb.MAC{{2, 0, 0, 0, 1, 1}, {2, 0, 0, 0, 1, 2}, {2, 0, 0, 0, 1, 3}}
	for i, m := range macs {
		r.forward(t, "b", frame(bcast, m, byte(i)), "a", "c")
	}
	// The first two are known, the third was refused and still floods.
	r.forward(t, "a", frame(macs[1], macA, 10), "b")
	r.forward(t, "a", frame(macs[2], macA, 11), "b", "c")
	if got := r.sw.FDB().Stats().LimitPort; got == 0 {
		t.Errorf("fdb limit_port: got 0, want > 0")
	}
}

func TestPortGone(t *testing.T) {
	var mu sync.Mutex
	var gone []string
	goneCh := make(chan struct{}, 1)
	cfg := vswitch.Config{PortGone: func(id fdb.PortID, name string, err error) {
		mu.Lock()
		gone = append(gone, name)
		mu.Unlock()
		if !errors.Is(err, memport.ErrGone) {
			t.Errorf("PortGone err: got %v, want ErrGone", err)
		}
		goneCh <- struct{}{}
	}}
	r := newRig(t, cfg, "a", "b", "c")
	r.forward(t, "b", frame(bcast, macB, 1), "a", "c")
	r.ports["b"].Vanish()
	select {
	case <-goneCh:
	case <-time.After(wait):
		t.Fatal("PortGone not called")
	}
	if len(r.sw.Ports()) != 2 {
		t.Errorf("ports: got %d, want 2", len(r.sw.Ports()))
	}
	if _, ok := r.sw.FDB().Lookup(fdb.Key{MAC: macB}, r.clock.now()); ok {
		t.Error("B still in the fdb after its port is gone")
	}
	delete(r.ports, "b")
	r.forward(t, "a", frame(macB, macA, 2), "c") // floods to c only
	mu.Lock()
	defer mu.Unlock()
	if len(gone) != 1 || gone[0] != "b" {
		t.Errorf("gone: got %v, want [b]", gone)
	}
}

func TestRemovePort(t *testing.T) {
	r := newRig(t, vswitch.Config{}, "a", "b", "c")
	f := frame(bcast, macC, 1)
	r.forward(t, "c", f, "a", "b")
	if err := r.sw.RemovePort(r.ids["c"]); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.RemovePort(r.ids["c"]); !errors.Is(err, vswitch.ErrNoPort) {
		t.Errorf("second remove: got %v, want ErrNoPort", err)
	}
	if _, ok := r.sw.FDB().Lookup(fdb.Key{MAC: macC}, r.clock.now()); ok {
		t.Error("C still in the fdb after RemovePort")
	}
	if err := r.ports["c"].Inject(f); err == nil {
		t.Error("port c not closed by RemovePort")
	}
	delete(r.ports, "c")
	r.forward(t, "a", frame(macC, macA, 2), "b")
}

// TestChurnUnderTraffic adds and removes ports while a stream of known
// unicast flows between two others: the stream loses nothing. Run with
// -race.
func TestChurnUnderTraffic(t *testing.T) {
	r := newRig(t, vswitch.Config{}, "a", "b")
	r.forward(t, "b", frame(bcast, macB, 0), "a")

	const frames = 2000
	stop := untilStopped(func(i int) bool {
		p := memport.New("x", 4)
		id, err := r.sw.AddPort(p)
		if err != nil {
			t.Error(err)
			return false
		}
		p.Inject(frame(bcast, fdb.MAC{2, 0, 0, 1, byte(i >> 8), byte(i)}, 0))
		if err := r.sw.RemovePort(id); err != nil {
			t.Error(err)
			return false
		}
		return true
	})
	got := 0
	for i := range frames {
		r.send(t, "a", frame(macB, macA, byte(i)))
		if _, ok := r.ports["b"].Recv(wait); !ok {
			break
		}
		got++
	}
	stop()
	if got != frames {
		t.Errorf("b received %d of %d frames during churn", got, frames)
	}
}

// untilStopped calls step(0), step(1), ... on a goroutine of its own until
// step returns false or stop is called; stop waits for the goroutine.
func untilStopped(step func(i int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if !step(i) {
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func TestPortOfMAC(t *testing.T) {
	s, err := vswitch.New(vswitch.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mac := fdb.MAC{2, 0, 0, 0, 0, 7}
	id, err := s.AddPortConfig(memport.New("p", 4), vswitch.PortConfig{MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.PortOfMAC(mac); !ok || got != id {
		t.Errorf("PortOfMAC(%s) = %d, %v; want %d", mac, got, ok, id)
	}
	if n := testing.AllocsPerRun(100, func() { s.PortOfMAC(mac) }); n != 0 {
		t.Errorf("PortOfMAC allocates %.1f times", n)
	}
	s.RemovePort(id)
	if _, ok := s.PortOfMAC(mac); ok {
		t.Errorf("PortOfMAC(%s) after RemovePort: still found", mac)
	}
}
