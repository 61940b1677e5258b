package vswitch

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// benchRules returns n rules of which none matches the benchmark's
// frames. kind "ports": TCP rules for one destination port each (what the
// index serves in one map lookup); "mixed": a quarter each of TCP ports,
// UDP ports, source prefixes (which every IPv4 frame must check) and
// port-pair allows from b; "prefixes": source prefixes only, the case
// the index cannot narrow (a linear scan).
func benchRules(n int, kind string) []Rule {
	rules := make([]Rule, 0, n)
	for i := range n {
		r := Rule{ID: i + 1, Action: ActionDrop}
		k := i % 4
		if kind == "ports" {
			k = 0
		} else if kind == "prefixes" {
			k = 2
		}
		switch k {
		case 0:
			r.Proto, r.DPortLo = wire.ProtoTCP, uint16(2000+i)
		case 1:
			r.Proto, r.DPortLo = wire.ProtoUDP, uint16(2000+i)
		case 2:
			r.Src = netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(113 + i/256), byte(i)}), 32)
		case 3:
			r.SrcPort, r.DstPort, r.Action = "b", "a", ActionAllow
		}
		rules = append(rules, r)
	}
	return rules
}

func TestPipelineAllocs(t *testing.T) {
	unicast := tcp4(mB, mA, ipA, ipB, 40000, 80)
	flood := ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB))
	tagged := ethFrame(mA, mC, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipX, ipA, wire.ProtoTCP, l4(wire.ProtoTCP, 80, 40000, 0)))
	tests := []struct {
		name    string
		from    string
		raw     []byte
		rules   []Rule
		isolate bool
	}{
		{"unicast", "a", unicast, nil, false},
		{"flood, tagged to the trunk", "a", flood, nil, false},
		{"tagged from the trunk", "t", tagged, nil, false},
		{"unicast, 10 rules", "a", unicast, benchRules(10, "mixed"), false},
		{"unicast, 1000 rules", "a", unicast, benchRules(1000, "mixed"), false},
		{"flood, 1000 rules, isolated", "a", flood, benchRules(1000, "mixed"), true},
		{"count and mirror", "a", unicast, []Rule{{ID: 1, Action: ActionCount}, {ID: 2, DstPort: "b", Action: ActionMirror, MirrorTo: "t"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSinkRig(t, tt.isolate)
			if err := r.s.SetRules(tt.rules); err != nil {
				t.Fatal(err)
			}
			in := r.port[tt.from]
			buf := make([]byte, BufSize)
			fwd := func() {
				// A tag is stripped in place: start from the frame as read.
				n := copy(buf[Headroom:], tt.raw)
				r.s.forward(in, buf, Headroom, n)
			}
			fwd() // warm up: the Frame's port sets grow once
			if allocs := testing.AllocsPerRun(1000, fwd); allocs != 0 {
				t.Errorf("allocations per frame: got %v, want 0", allocs)
			}
			var sent uint64
			for _, pt := range r.port {
				sent += pt.p.(*sinkPort).frames.Load()
			}
			if sent == 0 {
				t.Error("no port received the frame")
			}
			for _, st := range r.s.Pipeline() {
				if st.Drops != 0 {
					t.Errorf("stage %s dropped %d frames", st.Name, st.Drops)
				}
			}
		})
	}
}

// BenchmarkPipeline measures the default pipeline per frame: a TCP frame
// between two access ports with port security (known unicast, to a
// counting sink), with no rules and with 10 and 1000 rules of which none
// matches.
func BenchmarkPipeline(b *testing.B) {
	unicast := tcp4(mB, mA, ipA, ipB, 40000, 80)
	flood := ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB))
	for _, tc := range []struct {
		name  string
		raw   []byte
		rules []Rule
	}{
		{"rules=0", unicast, nil},
		{"rules=10", unicast, benchRules(10, "mixed")},
		{"rules=1000", unicast, benchRules(1000, "mixed")},
		{"rules=1000-ports", unicast, benchRules(1000, "ports")},
		{"rules=1000-prefixes", unicast, benchRules(1000, "prefixes")},
		{"flood-tagged/rules=0", flood, nil},
		{"flood-tagged/rules=1000", flood, benchRules(1000, "mixed")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newSinkRig(b, false)
			if err := r.s.SetRules(tc.rules); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, BufSize)
			n := copy(buf[Headroom:], tc.raw)
			in := r.port["a"]
			b.ReportAllocs()
			for b.Loop() {
				r.s.forward(in, buf, Headroom, n)
			}
		})
	}
}

// newSinkRig is a switch with the default pipeline and ports that only
// count frames: a and b are access ports of VLAN 10 with port security, g
// the gateway on VLAN 10, t a trunk carrying VLAN 10 tagged. Every MAC is
// learned.
func newSinkRig(b testing.TB, isolate bool) *stageRig {
	ips := func(ip [4]byte) []netip.Addr { return []netip.Addr{netip.AddrFrom4(ip)} }
	s, err := New(Config{Clock: func() int64 { return 1e12 }, Isolate: isolate})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	r := &stageRig{s: s, port: map[string]*port{}}
	for _, p := range []sp{
		{"a", PortConfig{VLAN: 10, MAC: mA, IPs: ips(ipA)}},
		{"b", PortConfig{VLAN: 10, MAC: mB, IPs: ips(ipB)}},
		{"g", PortConfig{VLAN: 10, MAC: mG, Gateway: true}},
		{"t", PortConfig{Trunk: []uint16{10}}},
	} {
		id, err := s.AddPortConfig(newSink(p.name), p.pc)
		if err != nil {
			b.Fatal(err)
		}
		r.port[p.name] = s.ports.Load().byID[id]
	}
	for name, mac := range map[string]fdb.MAC{"a": mA, "b": mB, "g": mG, "t": mC} {
		s.fdb.Learn(fdb.Key{MAC: mac, VLAN: 10}, r.port[name].id, 1e12)
	}
	return r
}

// BenchmarkCounterShards compares the counters every ingress goroutine
// writes per frame: one atomic shared by all, and the shardedCounter the
// pipeline uses (one cache line per shard of ports).
func BenchmarkCounterShards(b *testing.B) {
	b.Run("shared", func(b *testing.B) {
		var c shardedCounter
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.add(0)
			}
		})
	})
	b.Run("sharded", func(b *testing.B) {
		var c shardedCounter
		var next fdb.PortID
		var mu = make(chan struct{}, 1)
		b.RunParallel(func(pb *testing.PB) {
			mu <- struct{}{}
			next++
			id := next
			<-mu
			for pb.Next() {
				c.add(id)
			}
		})
	})
}

// BenchmarkPipelineParallel forwards between a and b in both directions
// at once, one goroutine per ingress port as in the switch: each writes
// its own rx counters and the other port's tx counters. ns/op is per
// frame pair.
func BenchmarkPipelineParallel(b *testing.B) {
	r := newSinkRig(b, false)
	ins := []*port{r.port["a"], r.port["b"]}
	raws := [][]byte{tcp4(mB, mA, ipA, ipB, 40000, 80), tcp4(mA, mB, ipB, ipA, 80, 40000)}
	b.ReportAllocs()
	var wg sync.WaitGroup
	n := b.N
	b.ResetTimer()
	for i := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, BufSize)
			size := copy(buf[Headroom:], raws[i])
			for range n {
				r.s.forward(ins[i], buf, Headroom, size)
			}
		}()
	}
	wg.Wait()
}
