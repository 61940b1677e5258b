package vswitch

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

var (
	mA    = fdb.MAC{2, 0, 0, 0, 0, 0xa}
	mB    = fdb.MAC{2, 0, 0, 0, 0, 0xb}
	mC    = fdb.MAC{2, 0, 0, 0, 0, 0xc}
	mG    = fdb.MAC{2, 0, 0, 0, 0, 0x1}
	bcast = fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ipA   = [4]byte{198, 51, 100, 10}
	ipB   = [4]byte{198, 51, 100, 11}
	ipG   = [4]byte{198, 51, 100, 1}
	ipX   = [4]byte{203, 0, 113, 7}
	zero4 = [4]byte{}
)

// recPort is a port that keeps a copy of every frame written to it; its
// Read blocks until Close.
type recPort struct {
	*sinkPort
	testutil.Frames
}

func newRec(name string) *recPort { return &recPort{sinkPort: newSink(name)} }

func (p *recPort) Write(buf []byte, off int) (int, error) {
	p.Add(buf[off:])
	return len(buf) - off, nil
}

// sp names a port of a stage rig and its configuration.
type sp struct {
	name string
	pc   PortConfig
}

// stageRig is a switch with recording ports; the tests call stages and the
// pipeline on the test goroutine (the ports never send by themselves).
type stageRig struct {
	s     *Switch
	port  map[string]*port
	rec   map[string]*recPort
	names []string
}

func newStageRig(t testing.TB, cfg Config, ports ...sp) *stageRig {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = func() int64 { return 1e12 }
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &stageRig{s: s, port: map[string]*port{}, rec: map[string]*recPort{}}
	for _, p := range ports {
		r.add(t, p)
	}
	return r
}

func (r *stageRig) add(t testing.TB, p sp) {
	t.Helper()
	rp := newRec(p.name)
	id, err := r.s.AddPortConfig(rp, p.pc)
	if err != nil {
		t.Fatal(err)
	}
	r.port[p.name], r.rec[p.name] = r.s.ports.Load().byID[id], rp
	r.names = append(r.names, p.name)
}

// frame returns a Frame for raw arriving on port in, in a fresh buffer.
func (r *stageRig) frame(in string, raw []byte) *Frame {
	pt := r.port[in]
	buf := make([]byte, BufSize)
	n := copy(buf[Headroom:], raw)
	pl := pt.where.Load()
	f := &Frame{}
	f.reset(r.s, pl.t, pt, pl.pos, buf[:Headroom+n], Headroom)
	return f
}

// run runs stages on f until one does not say Continue.
func run(f *Frame, stages ...Stage) Verdict {
	for _, st := range stages {
		if v := st.Process(f); v != Continue {
			return v
		}
	}
	return Continue
}

// outs lists the names of f's output ports.
func (r *stageRig) outs(f *Frame) []string {
	var names []string
	for i := f.out.next(0); i >= 0; i = f.out.next(i + 1) {
		names = append(names, f.t.list[i].p.Name())
	}
	return names
}

// received returns which ports got a frame since the last call, and the
// frames.
func (r *stageRig) received() (names []string, frames map[string][][]byte) {
	frames = map[string][][]byte{}
	for _, n := range r.names {
		if g := r.rec[n].Take(); len(g) > 0 {
			names = append(names, n)
			frames[n] = g
		}
	}
	return names, frames
}

func TestParseStage(t *testing.T) {
	r := newStageRig(t, Config{}, sp{name: "a"})
	frag := ipv4(ipA, ipB, wire.ProtoTCP, l4(wire.ProtoTCP, 1000, 22, 0))
	binary.BigEndian.PutUint16(frag[6:], 0x0010) // fragment offset 16: not the first
	shortIP := ipv4(ipA, ipB, wire.ProtoUDP, l4(wire.ProtoUDP, 1, 2, 0))
	binary.BigEndian.PutUint16(shortIP[2:], 200) // total length beyond the frame
	tests := []struct {
		name  string
		raw   []byte
		want  Verdict
		check func(t *testing.T, f *Frame)
	}{
		{"runt", make([]byte, VnetHdrLen+13), DropError, nil},
		{"multicast source", ethFrame(mB, fdb.MAC{1, 0, 0x5e, 0, 0, 1}, nil, 0x88b5, nil), DropError, nil},
		{"zero source", ethFrame(mB, fdb.MAC{}, nil, 0x88b5, nil), DropError, nil},
		{"tcp", tcp4(mB, mA, ipA, ipB, 1000, 22), Continue, func(t *testing.T, f *Frame) {
			if !f.IPv4 || f.Proto != wire.ProtoTCP || !f.HasPorts || f.SPort != 1000 || f.DPort != 22 || f.SrcIP != ipA || f.DstIP != ipB {
				t.Errorf("got ipv4 %v proto %d ports %v %d>%d %v>%v", f.IPv4, f.Proto, f.HasPorts, f.SPort, f.DPort, f.SrcIP, f.DstIP)
			}
			if f.Dst != mB || f.Src != mA || f.EtherType != wire.EtherTypeIPv4 || f.L3 != VnetHdrLen+14 || f.Tags != 0 {
				t.Errorf("got %v > %v type %#x l3 %d tags %d", f.Src, f.Dst, f.EtherType, f.L3, f.Tags)
			}
		}},
		{"udp in one tag", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 0x2000 | 10}}, wire.EtherTypeIPv4, ipv4(ipA, ipB, wire.ProtoUDP, l4(wire.ProtoUDP, 53, 5353, 4))), Continue, func(t *testing.T, f *Frame) {
			if f.Tags != 1 || f.OuterTPID != wire.EtherTypeVLAN || f.TagVID != 10 || f.L3 != VnetHdrLen+18 {
				t.Errorf("got tags %d tpid %#x vid %d l3 %d", f.Tags, f.OuterTPID, f.TagVID, f.L3)
			}
			if !f.HasPorts || f.SPort != 53 || f.DPort != 5353 {
				t.Errorf("got ports %v %d>%d", f.HasPorts, f.SPort, f.DPort)
			}
		}},
		{"qinq", ethFrame(mB, mA, []tag{{wire.EtherTypeQinQ, 100}, {wire.EtherTypeVLAN, 10}}, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)), Continue, func(t *testing.T, f *Frame) {
			if f.Tags != 2 || f.OuterTPID != wire.EtherTypeQinQ || f.TagVID != 100 || !f.ARP {
				t.Errorf("got tags %d tpid %#x vid %d arp %v", f.Tags, f.OuterTPID, f.TagVID, f.ARP)
			}
		}},
		{"three tags", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 1}, {wire.EtherTypeVLAN, 2}, {wire.EtherTypeVLAN, 3}}, wire.EtherTypeIPv4, nil), Continue, func(t *testing.T, f *Frame) {
			if f.Tags != 3 {
				t.Errorf("got tags %d, want 3", f.Tags)
			}
		}},
		{"later fragment has no ports", ethFrame(mB, mA, nil, wire.EtherTypeIPv4, frag), Continue, func(t *testing.T, f *Frame) {
			if !f.IPv4 || f.HasPorts {
				t.Errorf("got ipv4 %v ports %v, want true false", f.IPv4, f.HasPorts)
			}
		}},
		{"ipv4 longer than the frame", ethFrame(mB, mA, nil, wire.EtherTypeIPv4, shortIP), Continue, func(t *testing.T, f *Frame) {
			if f.IPv4 {
				t.Error("got IPv4 for a header whose total length is beyond the frame")
			}
		}},
		{"arp", ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)), Continue, func(t *testing.T, f *Frame) {
			if !f.ARP || f.ARPOp != 1 || f.ARPSenderMAC != mA || f.ARPSenderIP != ipA || f.ARPTargetIP != ipB {
				t.Errorf("got arp %v op %d %v %v > %v", f.ARP, f.ARPOp, f.ARPSenderMAC, f.ARPSenderIP, f.ARPTargetIP)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame("a", tt.raw)
			if got := (parseStage{}).Process(f); got != tt.want {
				t.Fatalf("verdict: got %d, want %d", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func TestSecurityStage(t *testing.T) {
	pfx := func(ips ...[4]byte) []netip.Addr {
		var out []netip.Addr
		for _, ip := range ips {
			out = append(out, netip.AddrFrom4(ip))
		}
		return out
	}
	secure := PortConfig{MAC: mA, IPs: pfx(ipA)}
	r := newStageRig(t, Config{},
		sp{"sec", secure},
		sp{"open", PortConfig{}},
		sp{"spoofok", PortConfig{MAC: mA, IPs: pfx(ipA), AllowSpoof: true}},
		sp{"gw", PortConfig{MAC: mG, IPs: pfx(ipG), Gateway: true}},
		sp{"trunk", PortConfig{MAC: mA, IPs: pfx(ipA), Trunk: []uint16{10}}},
	)
	brokenARP := ethFrame(bcast, mA, nil, wire.EtherTypeARP, []byte{0, 1, 8, 0, 6})
	tests := []struct {
		name, port string
		raw        []byte
		want       Verdict
	}{
		{"own mac and ip", "sec", tcp4(mB, mA, ipA, ipB, 1, 2), Continue},
		{"forged source mac", "sec", tcp4(mB, mC, ipA, ipB, 1, 2), DropSpoofed},
		{"forged ip", "sec", tcp4(mB, mA, ipB, ipA, 1, 2), DropSpoofed},
		{"dhcp from 0.0.0.0", "sec", ethFrame(bcast, mA, nil, wire.EtherTypeIPv4, ipv4(zero4, [4]byte{255, 255, 255, 255}, wire.ProtoUDP, l4(wire.ProtoUDP, 68, 67, 0))), Continue},
		{"arp own", "sec", ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)), Continue},
		{"arp probe", "sec", ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(1, mA, zero4, fdb.MAC{}, ipA)), Continue},
		{"arp poisoning the gateway's ip", "sec", ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(2, mA, ipG, mB, ipB)), DropSpoofed},
		{"arp with another sender mac", "sec", ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(2, mB, ipA, mB, ipB)), DropSpoofed},
		{"unreadable arp", "sec", brokenARP, DropSpoofed},
		{"unreadable ipv4", "sec", ethFrame(mB, mA, nil, wire.EtherTypeIPv4, []byte{0x45}), DropSpoofed},
		{"other ethertype, own mac", "sec", ethFrame(mB, mA, nil, 0x88b5, nil), Continue},
		{"tag on access port still checks ip", "sec", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipB, ipA, wire.ProtoUDP, l4(wire.ProtoUDP, 1, 2, 0))), DropSpoofed},
		{"no security", "open", tcp4(mB, mC, ipX, ipB, 1, 2), Continue},
		{"allow spoof", "spoofok", tcp4(mB, mC, ipX, ipB, 1, 2), Continue},
		{"gateway routes any ip", "gw", tcp4(mA, mG, ipX, ipA, 1, 2), Continue},
		{"gateway arp for any ip", "gw", ethFrame(bcast, mG, nil, wire.EtherTypeARP, arp(1, mG, ipX, fdb.MAC{}, ipA)), Continue},
		{"gateway mac checked", "gw", tcp4(mA, mB, ipX, ipA, 1, 2), DropSpoofed},
		{"gateway arp sender mac checked", "gw", ethFrame(bcast, mG, nil, wire.EtherTypeARP, arp(1, mB, ipG, fdb.MAC{}, ipA)), DropSpoofed},
		{"trunk native checks ip", "trunk", tcp4(mB, mA, ipX, ipB, 1, 2), DropSpoofed},
		{"trunk tagged checks mac only", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipX, ipB, wire.ProtoUDP, l4(wire.ProtoUDP, 1, 2, 0))), Continue},
		{"trunk tagged forged mac", "trunk", ethFrame(mB, mC, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipX, ipB, wire.ProtoUDP, l4(wire.ProtoUDP, 1, 2, 0))), DropSpoofed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame(tt.port, tt.raw)
			if got := run(f, parseStage{}, securityStage{}); got != tt.want {
				t.Fatalf("got verdict %d, want %d", got, tt.want)
			}
		})
	}
}

func TestVLANStage(t *testing.T) {
	r := newStageRig(t, Config{},
		sp{"acc", PortConfig{VLAN: 10}},
		sp{"trunk", PortConfig{VLAN: 5, Trunk: []uint16{10, 20}}},
	)
	payload := []byte{1, 2, 3, 4}
	untagged := ethFrame(mB, mA, nil, 0x88b5, payload)
	tests := []struct {
		name, port string
		raw        []byte
		want       Verdict
		vlan       uint16
	}{
		{"access untagged", "acc", untagged, Continue, 10},
		{"access tagged", "acc", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, 0x88b5, payload), DropVLAN, 0},
		{"access priority tag", "acc", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 0}}, 0x88b5, payload), DropVLAN, 0},
		{"trunk native", "trunk", untagged, Continue, 5},
		{"trunk carried", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 0xe000 | 20}}, 0x88b5, payload), Continue, 20},
		{"trunk priority tag is native", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 0x2000}}, 0x88b5, payload), Continue, 5},
		{"trunk not carried", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 30}}, 0x88b5, payload), DropVLAN, 0},
		{"trunk native tagged", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 5}}, 0x88b5, payload), DropVLAN, 0},
		{"trunk 802.1ad", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeQinQ, 10}}, 0x88b5, payload), DropVLAN, 0},
		{"trunk tag cut short", "trunk", ethFrame(mB, mA, nil, wire.EtherTypeVLAN, nil)[:VnetHdrLen+14], DropVLAN, 0},
		{"trunk two tags", "trunk", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}, {wire.EtherTypeVLAN, 20}}, 0x88b5, payload), DropVLAN, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame(tt.port, tt.raw)
			got := run(f, parseStage{}, vlanStage{})
			if got != tt.want {
				t.Fatalf("got verdict %d, want %d", got, tt.want)
			}
			if got != Continue {
				return
			}
			if f.VLAN != tt.vlan {
				t.Errorf("got vlan %d, want %d", f.VLAN, tt.vlan)
			}
			// Inside the switch the frame is untagged.
			if !bytes.Equal(f.Data[:len(untagged)], untagged) || f.L3 != VnetHdrLen+14 || f.Tags != 0 {
				t.Errorf("got frame %x (l3 %d, tags %d), want %x", f.Data, f.L3, f.Tags, untagged)
			}
		})
	}
}

// TestTagOffsetsGSO checks that stripping and inserting a tag move the
// virtio_net_hdr's csum_start and hdr_len with the headers.
func TestTagOffsetsGSO(t *testing.T) {
	r := newStageRig(t, Config{}, sp{"trunk", PortConfig{Trunk: []uint16{10}}})
	raw := ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipA, ipB, wire.ProtoTCP, l4(wire.ProtoTCP, 1, 2, 3000)))
	gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 18 + 20 + 20, GSOSize: 1448, CsumStart: 18 + 20, CsumOffset: 16}.Put(raw)
	f := r.frame("trunk", raw)
	if v := run(f, parseStage{}, vlanStage{}); v != Continue {
		t.Fatalf("verdict %d", v)
	}
	h := gso.ParseHdr(f.Data)
	if h.CsumStart != 14+20 || h.HdrLen != 14+20+20 || h.GSOSize != 1448 {
		t.Fatalf("after strip: got csum_start %d hdr_len %d gso_size %d, want 34 54 1448", h.CsumStart, h.HdrLen, h.GSOSize)
	}
	before := slices.Clone(f.Data)
	o := f.insertTag(10)
	if got := f.buf[o:]; !bytes.Equal(got, raw) {
		t.Fatalf("tagged again: got\n%x\nwant\n%x", got[:64], raw[:64])
	}
	f.restoreTag()
	if !bytes.Equal(f.Data, before) {
		t.Fatalf("restored: got\n%x\nwant\n%x", f.Data[:64], before[:64])
	}
}

func TestForwardStage(t *testing.T) {
	r := newStageRig(t, Config{},
		sp{"a", PortConfig{VLAN: 10}},
		sp{"b", PortConfig{VLAN: 10}},
		sp{"c", PortConfig{VLAN: 20}},
		sp{"t", PortConfig{Trunk: []uint16{10, 20}}},
	)
	learn := func(mac fdb.MAC, vlan uint16, port string) {
		if res := r.s.fdb.Learn(fdb.Key{MAC: mac, VLAN: vlan}, r.port[port].id, 1e12); res != fdb.Learned {
			t.Fatalf("learn %v: %v", mac, res)
		}
	}
	learn(mB, 10, "b")
	learn(mC, 20, "c")
	learn(mA, 10, "a")
	if err := r.s.fdb.AddStatic(fdb.Key{MAC: mG, VLAN: 10}, r.port["c"].id); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		from string
		dst  fdb.MAC
		want Verdict
		outs []string
	}{
		{"known unicast", "a", mB, Continue, []string{"b"}},
		{"known in another vlan floods", "a", mC, Continue, []string{"b", "t"}},
		{"broadcast stays in the vlan", "a", bcast, Continue, []string{"b", "t"}},
		{"same port filtered", "a", mA, DropFiltered, nil},
		{"static entry on a port outside the vlan floods", "a", mG, Continue, []string{"b", "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame(tt.from, ethFrame(tt.dst, fdb.MAC{2, 9, 9, 9, 9, 9}, nil, 0x88b5, nil))
			got := run(f, parseStage{}, vlanStage{}, forwardStage{})
			if got != tt.want {
				t.Fatalf("got verdict %d, want %d", got, tt.want)
			}
			if got == Continue && !slices.Equal(r.outs(f), tt.outs) {
				t.Errorf("got outputs %v, want %v", r.outs(f), tt.outs)
			}
		})
	}
}

func TestOutputStage(t *testing.T) {
	r := newStageRig(t, Config{},
		sp{"a", PortConfig{VLAN: 10}},
		sp{"b", PortConfig{VLAN: 10}},
		sp{"t", PortConfig{VLAN: 5, Trunk: []uint16{10}}},
		sp{"u", PortConfig{VLAN: 10, Trunk: []uint16{20}}},
	)
	payload := []byte{0xde, 0xad}
	untagged := ethFrame(bcast, mA, nil, 0x88b5, payload)
	tagged := ethFrame(bcast, mA, []tag{{wire.EtherTypeVLAN, 10}}, 0x88b5, payload)
	tagged = tagged[:len(untagged)+4] // the same padding as untagged, plus the tag
	f := r.frame("a", untagged)
	if v := run(f, LearningStages()[0].Stage, vlanStage{}, forwardStage{}, outputStage{}); v != Continue {
		t.Fatalf("verdict %d", v)
	}
	got, frames := r.received()
	if !slices.Equal(got, []string{"b", "t", "u"}) {
		t.Fatalf("got frames on %v, want b, t, u", got)
	}
	for name, want := range map[string][]byte{"b": untagged, "t": tagged, "u": untagged} {
		if !bytes.Equal(frames[name][0], want) {
			t.Errorf("port %s: got\n%x\nwant\n%x", name, frames[name][0], want)
		}
	}
	if !bytes.Equal(f.Data, untagged) {
		t.Errorf("frame not restored after a tagged write: got %x", f.Data)
	}
}

func TestLearnStage(t *testing.T) {
	r := newStageRig(t, Config{},
		sp{"a", PortConfig{VLAN: 10}},
		sp{"t", PortConfig{Trunk: []uint16{20}}},
	)
	tests := []struct {
		name string
		from string
		raw  []byte
		key  fdb.Key
	}{
		{"access port: its VLAN", "a", ethFrame(bcast, mA, nil, 0x88b5, nil), fdb.Key{MAC: mA, VLAN: 10}},
		{"trunk: the tag's VLAN", "t", ethFrame(bcast, mB, []tag{{wire.EtherTypeVLAN, 20}}, 0x88b5, nil), fdb.Key{MAC: mB, VLAN: 20}},
		{"trunk: native VLAN untagged", "t", ethFrame(bcast, mC, nil, 0x88b5, nil), fdb.Key{MAC: mC, VLAN: DefaultVLAN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := r.frame(tt.from, tt.raw)
			if v := run(f, parseStage{}, vlanStage{}, learnStage{}); v != Continue {
				t.Fatalf("verdict %d", v)
			}
			id, ok := r.s.fdb.Lookup(tt.key, f.Now())
			if !ok || id != r.port[tt.from].id {
				t.Errorf("lookup %v: got port %d (%v), want %d", tt.key, id, ok, r.port[tt.from].id)
			}
			if n := len(r.s.fdb.Entries(f.Now())); n != 1 {
				t.Errorf("got %d FDB entries, want 1", n)
			}
			r.s.fdb.FlushPort(r.port[tt.from].id)
		})
	}
}

func TestHubStage(t *testing.T) {
	r := newStageRig(t, Config{Mode: ModeHub},
		sp{"a", PortConfig{}}, sp{"b", PortConfig{VLAN: 10}}, sp{"c", PortConfig{Trunk: []uint16{20}}})
	f := r.frame("a", ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 20}}, 0x88b5, nil))
	if v := run(f, HubStages()[0].Stage, hubStage{}); v != Continue {
		t.Fatalf("verdict %d", v)
	}
	if got := r.outs(f); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("got outputs %v, want every other port", got)
	}
}
