package vswitch_test

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/memport"
)

var (
	ipA = [4]byte{198, 51, 100, 10}
	ipB = [4]byte{198, 51, 100, 11}
	ipG = [4]byte{198, 51, 100, 1}
)

func (r *rig) addConfig(t *testing.T, name string, pc vswitch.PortConfig) *memport.Port {
	t.Helper()
	p := memport.New(name, 64)
	id, err := r.sw.AddPortConfig(p, pc)
	if err != nil {
		t.Fatal(err)
	}
	r.ports[name], r.ids[name] = p, id
	return p
}

// stats waits until check accepts the counters of port name (tx counters
// are bumped after a frame is handed over), or fails.
func (r *rig) stats(t *testing.T, name string, check func(vswitch.PortStats) bool) vswitch.PortStats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st, err := r.sw.Stats(r.ids[name])
		if err != nil {
			t.Fatal(err)
		}
		if check(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

func addrs(ips ...[4]byte) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		out = append(out, netip.AddrFrom4(ip))
	}
	return out
}

func TestVLANs(t *testing.T) {
	r := newRig(t, vswitch.Config{})
	r.addConfig(t, "a", vswitch.PortConfig{VLAN: 10})
	r.addConfig(t, "b", vswitch.PortConfig{VLAN: 10})
	r.addConfig(t, "c", vswitch.PortConfig{VLAN: 20})
	r.addConfig(t, "t", vswitch.PortConfig{Trunk: []uint16{10, 20}})
	pay := []byte("vlan test")
	untagged := func(dst, src fdb.MAC) []byte { return vswitch.EthFrame(dst, src, nil, 0x88b5, pay) }
	tagged := func(dst, src fdb.MAC, vid uint16) []byte {
		f := vswitch.EthFrame(dst, src, []vswitch.Tag{vswitch.MkTag(vswitch.EtherVLAN, vid)}, 0x88b5, pay)
		return f[:len(untagged(dst, src))+4]
	}

	// A broadcast stays in its VLAN and reaches the trunk tagged.
	r.send(t, "a", untagged(bcast, macA))
	r.expectEach(t, map[string][]byte{"b": untagged(bcast, macA), "t": tagged(bcast, macA, 10)})
	r.send(t, "c", untagged(bcast, macC))
	r.expectEach(t, map[string][]byte{"t": tagged(bcast, macC, 20)})
	// From the trunk, untagged to the VLAN's access ports.
	r.send(t, "t", tagged(macA, macX, 10))
	r.expectEach(t, map[string][]byte{"a": untagged(macA, macX)})
	r.send(t, "t", tagged(macC, macX, 20))
	r.expectEach(t, map[string][]byte{"c": untagged(macC, macX)})
	// X was learned in both VLANs on t; C only in 20: a's frame to C floods VLAN 10.
	r.send(t, "a", untagged(macC, macA))
	r.expectEach(t, map[string][]byte{"b": untagged(macC, macA), "t": tagged(macC, macA, 10)})
	if _, ok := r.sw.FDB().Lookup(fdb.Key{MAC: macX, VLAN: 20}, r.clock.now()); !ok {
		t.Error("X not learned in VLAN 20")
	}

	// Tags where they may not be: dropped and counted.
	r.send(t, "a", tagged(macB, macA, 10))
	r.send(t, "t", tagged(macA, macX, 30))
	r.send(t, "t", vswitch.EthFrame(macA, macX, []vswitch.Tag{vswitch.MkTag(vswitch.EtherQinQ, 10), vswitch.MkTag(vswitch.EtherVLAN, 10)}, 0x88b5, pay))
	r.expect(t, nil)
	if st := r.stats(t, "a", func(s vswitch.PortStats) bool { return s.RxVLANErrors == 1 }); st.RxVLANErrors != 1 {
		t.Errorf("a rx_vlan_errors: got %d, want 1", st.RxVLANErrors)
	}
	if st := r.stats(t, "t", func(s vswitch.PortStats) bool { return s.RxVLANErrors == 2 }); st.RxVLANErrors != 2 {
		t.Errorf("t rx_vlan_errors: got %d, want 2", st.RxVLANErrors)
	}
}

// expectEach checks that each named port receives its frame and no other
// port receives anything.
func (r *rig) expectEach(t *testing.T, want map[string][]byte) {
	t.Helper()
	for n, f := range want {
		got, ok := r.ports[n].Recv(wait)
		if !ok {
			t.Fatalf("port %s: no frame", n)
		}
		if !bytes.Equal(got, f) {
			t.Fatalf("port %s: got\n%x\nwant\n%x", n, got, f)
		}
	}
	for n, p := range r.ports {
		if _, ok := want[n]; ok {
			continue
		}
		if got, ok := p.Recv(quiet); ok {
			t.Fatalf("port %s: got unexpected frame %x", n, got)
		}
	}
}

func TestPortSecurity(t *testing.T) {
	r := newRig(t, vswitch.Config{})
	r.addConfig(t, "a", vswitch.PortConfig{MAC: macA, IPs: addrs(ipA)})
	r.addConfig(t, "b", vswitch.PortConfig{MAC: macB, IPs: addrs(ipB)})
	r.addConfig(t, "g", vswitch.PortConfig{MAC: macC, IPs: addrs(ipG), Gateway: true})
	// b and the gateway announce themselves.
	for _, n := range []struct {
		name string
		mac  fdb.MAC
		ip   [4]byte
		to   []string
	}{{"b", macB, ipB, []string{"a", "g"}}, {"g", macC, ipG, []string{"a", "b"}}} {
		f := vswitch.EthFrame(bcast, n.mac, nil, vswitch.EtherARP, vswitch.ARP(1, n.mac, n.ip, fdb.MAC{}, ipA))
		r.send(t, n.name, f)
		r.expect(t, f, n.to...)
	}
	// a pretends to be b (its MAC), then claims the gateway's IP in ARP,
	// then sends IPv4 from b's address.
	r.send(t, "a", vswitch.EthFrame(bcast, macB, nil, vswitch.EtherARP, vswitch.ARP(1, macB, ipB, fdb.MAC{}, ipG)))
	r.send(t, "a", vswitch.EthFrame(bcast, macA, nil, vswitch.EtherARP, vswitch.ARP(2, macA, ipG, macB, ipB)))
	r.send(t, "a", vswitch.TCP4(macB, macA, ipB, ipG, 1, 2))
	r.expect(t, nil)
	if st := r.stats(t, "a", func(s vswitch.PortStats) bool { return s.RxSpoofed == 3 }); st.RxSpoofed != 3 {
		t.Errorf("a rx_spoofed: got %d, want 3", st.RxSpoofed)
	}
	// b's entry is still on b.
	if id, ok := r.sw.FDB().Lookup(fdb.Key{MAC: macB, VLAN: vswitch.DefaultVLAN}, r.clock.now()); !ok || id != r.ids["b"] {
		t.Errorf("b's MAC: got port %d (%v), want %d", id, ok, r.ids["b"])
	}
	// a's honest frame goes through.
	f := vswitch.TCP4(macB, macA, ipA, ipB, 1, 2)
	r.forward(t, "a", f, "b")
}

func TestIsolate(t *testing.T) {
	r := newRig(t, vswitch.Config{Isolate: true})
	r.addConfig(t, "a", vswitch.PortConfig{})
	r.addConfig(t, "b", vswitch.PortConfig{})
	r.addConfig(t, "g", vswitch.PortConfig{Gateway: true})
	f := vswitch.EthFrame(bcast, macA, nil, vswitch.EtherARP, vswitch.ARP(1, macA, ipA, fdb.MAC{}, ipG))
	r.forward(t, "a", f, "g")
	f = vswitch.EthFrame(bcast, macB, nil, vswitch.EtherARP, vswitch.ARP(1, macB, ipB, fdb.MAC{}, ipG))
	r.forward(t, "b", f, "g")
	f = vswitch.TCP4(macB, macA, ipA, ipB, 1, 2)
	r.send(t, "a", f)
	r.expect(t, nil)
	if st := r.stats(t, "a", func(s vswitch.PortStats) bool { return s.RxDenied == 1 }); st.RxDenied != 1 {
		t.Errorf("a rx_denied: got %d, want 1", st.RxDenied)
	}
	// An exception, and its reverse for the replies.
	if err := r.sw.SetRules([]vswitch.Rule{
		{ID: 1, SrcPort: "a", DstPort: "b", Action: vswitch.ActionAllow},
		{ID: 2, SrcPort: "b", DstPort: "a", Action: vswitch.ActionAllow},
	}); err != nil {
		t.Fatal(err)
	}
	r.forward(t, "a", f, "b")
	back := vswitch.TCP4(macA, macB, ipB, ipA, 2, 1)
	r.forward(t, "b", back, "a")
}

func TestHubMode(t *testing.T) {
	r := newRig(t, vswitch.Config{Mode: vswitch.ModeHub})
	r.addConfig(t, "a", vswitch.PortConfig{MAC: macA, IPs: addrs(ipA)})
	r.add(t, "b")
	r.add(t, "c")
	// Even after b has sent (a learning switch would know where B is),
	// a unicast to B reaches every other port.
	f := frame(bcast, macB, 1)
	r.forward(t, "b", f, "a", "c")
	f = vswitch.TCP4(macB, macA, ipA, ipB, 1, 2)
	r.forward(t, "a", f, "b", "c")
	// Tags are carried as they are.
	f = vswitch.EthFrame(macA, macC, []vswitch.Tag{vswitch.MkTag(vswitch.EtherVLAN, 10)}, 0x88b5, nil)
	r.forward(t, "c", f, "a", "b")
	// Port security holds in a hub too.
	r.send(t, "a", vswitch.TCP4(macB, macA, ipB, ipA, 1, 2))
	r.expect(t, nil)
	if st := r.stats(t, "a", func(s vswitch.PortStats) bool { return s.RxSpoofed == 1 }); st.RxSpoofed != 1 {
		t.Errorf("a rx_spoofed: got %d, want 1", st.RxSpoofed)
	}
	if r.sw.FDB().Len() != 0 {
		t.Errorf("a hub learned %d MACs", r.sw.FDB().Len())
	}
	var names []string
	for _, st := range r.sw.Pipeline() {
		names = append(names, st.Name)
	}
	if got := names; len(got) != 4 || got[2] != "hub" {
		t.Errorf("hub pipeline: got %v", got)
	}
}

func TestPipelineCounters(t *testing.T) {
	r := newRig(t, vswitch.Config{}, "a", "b")
	r.send(t, "a", frame(bcast, macA, 1))
	r.send(t, "a", frame(bcast, mcast, 2)) // dropped by parse
	r.send(t, "a", vswitch.EthFrame(bcast, macA, []vswitch.Tag{vswitch.MkTag(vswitch.EtherVLAN, 5)}, 0x88b5, nil))
	r.expect(t, frame(bcast, macA, 1), "b")
	want := map[string][2]uint64{ // hits, drops
		"parse": {3, 1}, "port-security": {2, 0}, "vlan": {2, 1}, "learn": {1, 0},
		"forward": {1, 0}, "acl": {1, 0}, "output": {1, 0},
	}
	deadline := time.Now().Add(wait)
	for {
		got := map[string][2]uint64{}
		for _, st := range r.sw.Pipeline() {
			if st.Doc == "" {
				t.Errorf("stage %s has no doc", st.Name)
			}
			got[st.Name] = [2]uint64{st.Hits, st.Drops}
		}
		if len(got) == len(want) && func() bool {
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		}() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// countPort counts the frames written to it whose tag byte (after a TCP
// header) says which sender they came from; its Read blocks until Close.
type countPort struct {
	name   string
	n      atomic.Uint64
	closed chan struct{}
	once   sync.Once
}

func (p *countPort) Read(buf []byte, off int) (int, error) {
	<-p.closed
	return 0, net.ErrClosed
}
func (p *countPort) Write(buf []byte, off int) (int, error) {
	p.n.Add(1)
	return len(buf) - off, nil
}
func (p *countPort) Close() error { p.once.Do(func() { close(p.closed) }); return nil }
func (p *countPort) Name() string { return p.name }

// TestSetRulesUnderTraffic swaps rule sets while frames flow and checks
// that no frame every rule set allows is lost: a swap is one atomic store,
// so a frame sees the old set or the new one.
func TestSetRulesUnderTraffic(t *testing.T) {
	r := newRig(t, vswitch.Config{})
	a := r.addConfig(t, "a", vswitch.PortConfig{MAC: macA, IPs: addrs(ipA)})
	c := r.addConfig(t, "c", vswitch.PortConfig{MAC: macC, IPs: addrs(ipG)})
	b := &countPort{name: "b", closed: make(chan struct{})}
	bID, err := r.sw.AddPort(b)
	if err != nil {
		t.Fatal(err)
	}
	var many []vswitch.Rule
	for i := range 1000 {
		many = append(many, vswitch.Rule{ID: i + 10, Proto: vswitch.ProtoTCP, DPortLo: uint16(1000 + i), Action: vswitch.ActionDrop})
	}
	sets := [][]vswitch.Rule{
		nil,
		{{ID: 1, Proto: vswitch.ProtoTCP, DPortLo: 22, Action: vswitch.ActionDrop}},
		{{ID: 1, Action: vswitch.ActionCount}, {ID: 2, Proto: vswitch.ProtoUDP, Action: vswitch.ActionDrop}, {ID: 3, DPortLo: 80, Action: vswitch.ActionAllow}, {ID: 4, Action: vswitch.ActionDrop}},
		many,
		{{ID: 1, DstPort: "nope", Action: vswitch.ActionDrop}, {ID: 2, Port: "b", Proto: vswitch.ProtoTCP, DPortLo: 81, DPortHi: 65535, Action: vswitch.ActionDrop}},
	}
	const frames = 20000
	var swaps atomic.Int64
	stop := untilStopped(func(i int) bool {
		if err := r.sw.SetRules(sets[i%len(sets)]); err != nil {
			t.Error(err)
			return false
		}
		swaps.Add(1)
		return true
	})
	// b is a sink whose MAC is never learned: make it known.
	if err := r.sw.FDB().AddStatic(fdb.Key{MAC: macB, VLAN: vswitch.DefaultVLAN}, bID); err != nil {
		t.Fatal(err)
	}
	// Two senders, so that two ingress goroutines match rules at once.
	var senders sync.WaitGroup
	for _, s := range []struct {
		p   *memport.Port
		mac fdb.MAC
		ip  [4]byte
	}{{a, macA, ipA}, {c, macC, ipG}} {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for range frames / 2 {
				if err := s.p.Inject(vswitch.TCP4(macB, s.mac, s.ip, ipB, 40000, 80)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	senders.Wait()
	deadline := time.Now().Add(10 * wait)
	for b.n.Load() < frames && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	if got := b.n.Load(); got != frames {
		sa, _ := r.sw.Stats(r.ids["a"])
		sc, _ := r.sw.Stats(r.ids["c"])
		t.Errorf("b received %d of %d frames (a: %+v, c: %+v)", got, frames, sa, sc)
	}
	if swaps.Load() < 10 {
		t.Errorf("only %d rule swaps happened during the traffic", swaps.Load())
	}
}
