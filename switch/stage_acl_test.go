package vswitch

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

func TestACLStage(t *testing.T) {
	ports := []sp{{"a", PortConfig{}}, {"b", PortConfig{}}, {"c", PortConfig{}}, {"g", PortConfig{Gateway: true}}, {"m", PortConfig{}}}
	macs := map[string]fdb.MAC{"a": mA, "b": mB, "c": mC, "g": mG}
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		isolate bool
		rules   []Rule
		from    string
		raw     []byte
		want    Verdict
		outs    []string
		counts  map[int]uint64 // rule ID -> packets
		mirror  int            // frames m must receive
	}{
		{name: "no rules: unicast", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22), outs: []string{"b"}},
		{name: "drop tcp/22 from a", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 1, Port: "a", Proto: wire.ProtoTCP, DPortLo: 22, Action: ActionDrop}},
			want:  DropDenied, counts: map[int]uint64{1: 1}},
		{name: "drop tcp/22 leaves tcp/80", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 80),
			rules: []Rule{{ID: 1, Port: "a", Proto: wire.ProtoTCP, DPortLo: 22, Action: ActionDrop}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 0}},
		{name: "port rule matches frames leaving the port", from: "b", raw: tcp4(mA, mB, ipB, ipA, 1000, 22),
			rules: []Rule{{ID: 1, Port: "a", Proto: wire.ProtoTCP, DPortLo: 22, Action: ActionDrop}},
			want:  DropDenied, counts: map[int]uint64{1: 1}},
		{name: "dst port rule removes one port of a flood", from: "a", raw: ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)),
			rules: []Rule{{ID: 1, DstPort: "b", Action: ActionDrop}},
			outs:  []string{"c", "g", "m"}, counts: map[int]uint64{1: 1}},
		{name: "ipv6 source prefix", from: "a", raw: icmp6(mA, mB, ip6A, ip6B, []byte{128, 0, 0, 0, 0, 1, 0, 1}),
			rules: []Rule{{ID: 1, Src: pfx("fd42:1::/64"), Dst: pfx("fd42:1::b/128"), Action: ActionDrop}},
			want:  DropDenied, counts: map[int]uint64{1: 1}},
		{name: "ipv6 prefix leaves other ipv6 and ipv4", from: "a", raw: icmp6(mA, mB, ip6A, ip6B, []byte{128, 0, 0, 0, 0, 1, 0, 1}),
			rules: []Rule{{ID: 1, Dst: pfx("fd42:2::/64"), Action: ActionDrop}, {ID: 2, Src: pfx("198.51.100.0/24"), Action: ActionDrop}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 0, 2: 0}},
		{name: "ipv6 prefix never matches ipv4", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 1, Src: pfx("::/0"), Action: ActionDrop}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 0}},
		{name: "first terminal rule wins", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 1, Src: pfx("198.51.100.0/24"), Action: ActionAllow}, {ID: 2, Proto: wire.ProtoTCP, Action: ActionDrop}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 1, 2: 0}},
		{name: "rules in id order, not in the order given", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 5, Src: pfx("198.51.100.0/24"), Action: ActionAllow}, {ID: 2, Proto: wire.ProtoTCP, Action: ActionDrop}},
			want:  DropDenied, counts: map[int]uint64{2: 1, 5: 0}},
		{name: "out-dependent rule before a terminal one", from: "a", raw: ethFrame(bcast, mA, nil, 0x88b5, nil),
			rules: []Rule{{ID: 1, DstPort: "g", Action: ActionAllow}, {ID: 2, SrcPort: "a", Action: ActionDrop}},
			outs:  []string{"g"}, counts: map[int]uint64{1: 1, 2: 1}},
		{name: "count goes on", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 443),
			rules: []Rule{{ID: 1, Action: ActionCount}, {ID: 2, DPortLo: 400, DPortHi: 500, Action: ActionCount}, {ID: 3, EtherType: wire.EtherTypeARP, Action: ActionCount}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 1, 2: 1, 3: 0}},
		{name: "mirror copies and goes on", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 443),
			rules: []Rule{{ID: 1, SrcPort: "a", Action: ActionMirror, MirrorTo: "m"}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 1}, mirror: 1},
		{name: "mirror of a dropped frame", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 443),
			rules: []Rule{{ID: 1, Action: ActionMirror, MirrorTo: "m"}, {ID: 2, Action: ActionDrop}},
			want:  DropDenied, counts: map[int]uint64{1: 1, 2: 1}, mirror: 1},
		{name: "rule naming a missing port matches nothing", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 1, SrcPort: "nope", Action: ActionDrop}, {ID: 2, MirrorTo: "nope", Action: ActionMirror}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 0, 2: 0}},
		{name: "vlan, mac, ethertype and prefix fields", from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{
				{ID: 1, VLAN: 2, Action: ActionDrop},
				{ID: 2, SrcMAC: mB, Action: ActionDrop},
				{ID: 3, DstMAC: mA, Action: ActionDrop},
				{ID: 4, EtherType: wire.EtherTypeARP, Action: ActionDrop},
				{ID: 5, Dst: pfx("203.0.113.0/24"), Action: ActionDrop},
				{ID: 6, Proto: wire.ProtoUDP, Action: ActionDrop},
				{ID: 7, SPortLo: 1, SPortHi: 999, Action: ActionDrop},
				{ID: 8, VLAN: 1, SrcMAC: mA, DstMAC: mB, EtherType: wire.EtherTypeIPv4, Src: pfx("198.51.100.10/32"), Dst: pfx("198.51.100.0/25"), Proto: wire.ProtoTCP, SPortLo: 1000, DPortLo: 20, DPortHi: 30, Action: ActionCount},
			},
			outs: []string{"b"}, counts: map[int]uint64{1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 1}},
		{name: "ip rules do not match arp", from: "a", raw: ethFrame(mB, mA, nil, wire.EtherTypeARP, arp(2, mA, ipA, mB, ipB)),
			rules: []Rule{{ID: 1, Src: pfx("0.0.0.0/0"), Action: ActionDrop}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 0}},
		{name: "isolated container to container", isolate: true, from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			want: DropDenied},
		{name: "isolated container to gateway", isolate: true, from: "a", raw: tcp4(mG, mA, ipA, ipX, 1000, 22),
			outs: []string{"g"}},
		{name: "isolated broadcast reaches the gateway only", isolate: true, from: "a", raw: ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipG)),
			outs: []string{"g"}},
		{name: "gateway reaches isolated containers", isolate: true, from: "g", raw: ethFrame(bcast, mG, nil, wire.EtherTypeARP, arp(1, mG, ipG, fdb.MAC{}, ipA)),
			outs: []string{"a", "b", "c", "m"}},
		{name: "allow rule overrides isolation", isolate: true, from: "a", raw: tcp4(mB, mA, ipA, ipB, 1000, 22),
			rules: []Rule{{ID: 1, SrcPort: "a", DstPort: "b", Action: ActionAllow}},
			outs:  []string{"b"}, counts: map[int]uint64{1: 1}},
		{name: "allow a to b is one way", isolate: true, from: "b", raw: tcp4(mA, mB, ipB, ipA, 22, 1000),
			rules: []Rule{{ID: 1, SrcPort: "a", DstPort: "b", Action: ActionAllow}},
			want:  DropDenied, counts: map[int]uint64{1: 0}},
		{name: "allow pair in a flood under isolation", isolate: true, from: "a", raw: ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)),
			rules: []Rule{{ID: 1, SrcPort: "a", DstPort: "b", Action: ActionAllow}},
			outs:  []string{"b", "g"}, counts: map[int]uint64{1: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newStageRig(t, Config{Isolate: tt.isolate}, ports...)
			for name, mac := range macs {
				r.s.fdb.Learn(fdb.Key{MAC: mac, VLAN: DefaultVLAN}, r.port[name].id, 1e12)
			}
			if err := r.s.SetRules(tt.rules); err != nil {
				t.Fatal(err)
			}
			f := r.frame(tt.from, tt.raw)
			got := run(f, parseStage{}, vlanStage{}, forwardStage{}, aclStage{})
			if got != tt.want {
				t.Fatalf("got verdict %d, want %d", got, tt.want)
			}
			if got == Continue && !slices.Equal(r.outs(f), tt.outs) {
				t.Errorf("got outputs %v, want %v", r.outs(f), tt.outs)
			}
			for _, rs := range r.s.Rules() {
				if want, ok := tt.counts[rs.ID]; ok && rs.Packets != want {
					t.Errorf("rule %d: got %d packets, want %d", rs.ID, rs.Packets, want)
				}
			}
			if n := len(r.rec["m"].Take()); n != tt.mirror {
				t.Errorf("mirror port got %d frames, want %d", n, tt.mirror)
			}
		})
	}
}

// TestRuleAppliesOncePortExists checks that a rule naming a port that is
// added later starts matching then.
func TestRuleAppliesOncePortExists(t *testing.T) {
	r := newStageRig(t, Config{}, sp{name: "a"})
	if err := r.s.SetRules([]Rule{{ID: 1, DstPort: "late", Action: ActionDrop}}); err != nil {
		t.Fatal(err)
	}
	r.add(t, sp{name: "late"})
	r.add(t, sp{name: "other"})
	f := r.frame("a", ethFrame(bcast, mA, nil, 0x88b5, nil))
	if v := run(f, parseStage{}, vlanStage{}, forwardStage{}, aclStage{}); v != Continue {
		t.Fatalf("verdict %d", v)
	}
	if got := r.outs(f); !slices.Equal(got, []string{"other"}) {
		t.Errorf("got outputs %v, want [other]", got)
	}
}

func TestSetRulesValidation(t *testing.T) {
	r := newStageRig(t, Config{})
	good := Rule{ID: 1, Action: ActionDrop}
	if err := r.s.SetRules([]Rule{good}); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		r    Rule
	}{
		{"zero id", Rule{Action: ActionDrop}},
		{"no action", Rule{ID: 2}},
		{"mirror without port", Rule{ID: 2, Action: ActionMirror}},
		{"mirror-to without mirror", Rule{ID: 2, Action: ActionDrop, MirrorTo: "a"}},
		{"vlan out of range", Rule{ID: 2, VLAN: 4095, Action: ActionDrop}},
		{"mixed families", Rule{ID: 2, Src: netip.MustParsePrefix("2001:db8::/32"), Dst: netip.MustParsePrefix("10.0.0.0/8"), Action: ActionDrop}},
		{"ipv6 prefix with a protocol", Rule{ID: 2, Src: netip.MustParsePrefix("2001:db8::/32"), Proto: wire.ProtoTCP, Action: ActionDrop}},
		{"ipv6 prefix with arp", Rule{ID: 2, Dst: netip.MustParsePrefix("2001:db8::/32"), EtherType: wire.EtherTypeARP, Action: ActionDrop}},
		{"empty port range", Rule{ID: 2, DPortLo: 30, DPortHi: 20, Action: ActionDrop}},
		{"ports with icmp", Rule{ID: 2, Proto: wire.ProtoICMP, DPortLo: 22, Action: ActionDrop}},
		{"ip fields with arp", Rule{ID: 2, EtherType: wire.EtherTypeARP, Proto: wire.ProtoTCP, Action: ActionDrop}},
		{"duplicate id", Rule{ID: 1, Action: ActionAllow}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := r.s.SetRules([]Rule{good, tt.r})
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("got %v, want ErrInvalidRule", err)
			}
			if got := r.s.Rules(); len(got) != 1 || got[0].Rule != good {
				t.Errorf("rules changed by a failed SetRules: %v", got)
			}
		})
	}
}

func TestRuleCountersKept(t *testing.T) {
	r := newStageRig(t, Config{}, sp{name: "a"}, sp{name: "b"})
	if err := r.s.SetRules([]Rule{{ID: 1, Action: ActionCount}, {ID: 2, Action: ActionCount}}); err != nil {
		t.Fatal(err)
	}
	r.s.forward(r.port["a"], r.frame("a", ethFrame(bcast, mA, nil, 0x88b5, nil)).buf, Headroom, VnetHdrLen+60)
	if err := r.s.SetRules([]Rule{{ID: 2, Action: ActionCount}, {ID: 3, Action: ActionCount}}); err != nil {
		t.Fatal(err)
	}
	got := r.s.Rules()
	if len(got) != 2 || got[0].ID != 2 || got[0].Packets != 1 || got[0].Bytes != 60 || got[1].ID != 3 || got[1].Packets != 0 {
		t.Errorf("got %+v, want rule 2 with 1 packet of 60 bytes, rule 3 with none", got)
	}
}

func TestPortConfigValidation(t *testing.T) {
	r := newStageRig(t, Config{})
	bad := []struct {
		name string
		pc   PortConfig
	}{
		{"vlan out of range", PortConfig{VLAN: 4095}},
		{"trunk vlan 0", PortConfig{Trunk: []uint16{0}}},
		{"trunk duplicate", PortConfig{Trunk: []uint16{10, 10}}},
		{"trunk has native", PortConfig{VLAN: 10, Trunk: []uint16{10}}},
		{"multicast mac", PortConfig{MAC: fdb.MAC{1, 0, 0x5e, 0, 0, 1}}},
		{"ipv6 multicast address", PortConfig{IPs: []netip.Addr{netip.MustParseAddr("ff02::1")}}},
		{"ipv4-mapped address", PortConfig{IPs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}}},
		{"duplicate ip", PortConfig{IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.1")}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := newSink("x")
			if _, err := r.s.AddPortConfig(p, tt.pc); !errors.Is(err, ErrInvalidPortConfig) {
				t.Fatalf("got %v, want ErrInvalidPortConfig", err)
			}
			select {
			case <-p.done:
			default:
				t.Error("port not closed after a failed AddPortConfig")
			}
		})
	}
	if len(r.s.Ports()) != 0 {
		t.Errorf("got %d ports, want none", len(r.s.Ports()))
	}
}

func TestParseAction(t *testing.T) {
	for a := ActionAllow; a <= ActionMirror; a++ {
		got, err := ParseAction(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a.String(), got, err)
		}
	}
	if _, err := ParseAction("reject"); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("ParseAction(reject): got %v, want ErrInvalidRule", err)
	}
}
