package vswitch

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/fdb"
)

// lastPort counts the frames written to it and keeps the last one
// (Ethernet, without the virtio_net_hdr), in a buffer it reuses.
type lastPort struct {
	*sinkPort
	mu   sync.Mutex
	last []byte
}

func newLast(name string) *lastPort { return &lastPort{sinkPort: newSink(name)} }

func (p *lastPort) Write(buf []byte, off int) (int, error) {
	p.mu.Lock()
	p.last = append(p.last[:0], buf[off+VnetHdrLen:]...)
	p.mu.Unlock()
	return p.sinkPort.Write(buf, off)
}

// suppPort is a NeighSuppressor: a lastPort with a table of addresses.
type suppPort struct {
	*lastPort
	on         bool
	mu         sync.RWMutex
	neigh      map[[16]byte]fdb.MAC
	arp, nd    atomic.Uint64
	learnCalls atomic.Uint64
}

func (p *suppPort) SuppressNeigh() bool { return p.on }
func (p *suppPort) LookupNeigh(ip [16]byte, now int64) (fdb.MAC, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	m, ok := p.neigh[ip]
	return m, ok
}
func (p *suppPort) LearnNeigh(ip [16]byte, mac fdb.MAC, now int64) {
	p.learnCalls.Add(1)
	p.mu.Lock()
	p.neigh[ip] = mac
	p.mu.Unlock()
}
func (p *suppPort) Suppressed(nd bool) {
	if nd {
		p.nd.Add(1)
	} else {
		p.arp.Add(1)
	}
}

var (
	sMacA = fdb.MAC{2, 0, 0, 0, 0, 0xa}
	sMacB = fdb.MAC{2, 0, 0, 0, 0, 0xb}
	sMacG = fdb.MAC{2, 0, 0, 0, 0, 0x1}
	sMacR = fdb.MAC{2, 0, 0, 0, 0, 0x99} // behind the tunnel
)

// putFrame serializes layers after Headroom in buf, with a zero
// virtio_net_hdr, and returns the length with the header.
func putFrame(t testing.TB, buf []byte, ls ...gopacket.SerializableLayer) int {
	t.Helper()
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	clear(buf[Headroom : Headroom+VnetHdrLen])
	return VnetHdrLen + copy(buf[Headroom+VnetHdrLen:], sb.Bytes())
}

func arpFrame(t testing.TB, buf []byte, dst, src fdb.MAC, op uint16, sha fdb.MAC, sip, tip string) int {
	eth := &layers.Ethernet{DstMAC: net.HardwareAddr(dst[:]), SrcMAC: net.HardwareAddr(src[:]), EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: sha[:], SourceProtAddress: netip.MustParseAddr(sip).AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: netip.MustParseAddr(tip).AsSlice()}
	return putFrame(t, buf, eth, a)
}

// ndFrame builds an NS (typ 135) or NA (136) for target from src; an NS
// carries a source link-layer option (unless from :: or for a target
// fd00::aX), an NA a target one.
func ndFrame(t testing.TB, buf []byte, dst, srcMAC fdb.MAC, typ uint8, src, dstIP, target string) int {
	eth := &layers.Ethernet{DstMAC: net.HardwareAddr(dst[:]), SrcMAC: net.HardwareAddr(srcMAC[:]), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dstIP).AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	var body gopacket.SerializableLayer
	if typ == layers.ICMPv6TypeNeighborSolicitation {
		ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: netip.MustParseAddr(target).AsSlice()}
		if src != "::" && !strings.HasPrefix(target, "fd00::a") {
			ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: srcMAC[:]}}
		}
		body = ns
	} else {
		body = &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: netip.MustParseAddr(target).AsSlice(),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: srcMAC[:]}}}
	}
	return putFrame(t, buf, eth, ip, icmp, body)
}

func mapped(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// suppRig is a switch with containers a and b, the gateway g and a
// suppressing tunnel port tun (on: whether suppression is on).
type suppRig struct {
	s          *Switch
	a, b, g    *lastPort
	tun        *suppPort
	pa, pb, pt *port
}

func newSuppRig(t testing.TB, on bool) *suppRig {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &suppRig{s: s, a: newLast("a"), b: newLast("b"), g: newLast("g")}
	r.tun = &suppPort{lastPort: newLast("tun"), on: on, neigh: map[[16]byte]fdb.MAC{}}
	add := func(p Port, pc PortConfig) *port {
		id, err := s.AddPortConfig(p, pc)
		if err != nil {
			t.Fatal(err)
		}
		return s.ports.Load().byID[id]
	}
	ips := func(ss ...string) (out []netip.Addr) {
		for _, x := range ss {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	r.pa = add(r.a, PortConfig{MAC: sMacA, IPs: ips("10.0.0.2", "fd00::2")})
	r.pb = add(r.b, PortConfig{MAC: sMacB, IPs: ips("10.0.0.3", "fd00::3")})
	add(r.g, PortConfig{MAC: sMacG, Gateway: true, IPs: ips("10.0.0.1", "fd00::1")})
	r.pt = add(r.tun, PortConfig{})
	return r
}

// counts returns the frames written to a, b, g and tun so far.
func (r *suppRig) counts() [4]uint64 {
	return [4]uint64{r.a.frames.Load(), r.b.frames.Load(), r.g.frames.Load(), r.tun.frames.Load()}
}

// TestSuppress: with a suppressing port in the VLAN, a broadcast ARP
// request or a multicast NS for an address the switch knows (a local
// port's, or one learned from the tunnel) is answered to the asker and
// sent nowhere else; the gateway's address goes to the gateway alone;
// probes, gratuitous ARP, unicast refreshes and unknown addresses are
// forwarded as without suppression; a remote cannot teach the switch a
// local port's address.
func TestSuppress(t *testing.T) {
	r := newSuppRig(t, true)
	buf := make([]byte, BufSize)
	// Learning from the tunnel: an ARP reply from R (10.0.0.9), an NA
	// for fd00::9, and a remote claiming b's addresses.
	r.s.forward(r.pt, buf, Headroom, arpFrame(t, buf, sMacA, sMacR, 2, sMacR, "10.0.0.9", "10.0.0.2"))
	r.s.forward(r.pt, buf, Headroom, ndFrame(t, buf, sMacA, sMacR, 136, "fd00::9", "fd00::2", "fd00::9"))
	r.s.forward(r.pt, buf, Headroom, arpFrame(t, buf, bcast, sMacR, 1, sMacR, "10.0.0.3", "10.0.0.2"))
	r.s.forward(r.pt, buf, Headroom, ndFrame(t, buf, sMacA, sMacR, 136, "fd00::3", "fd00::2", "fd00::3"))
	if m, ok := r.tun.LookupNeigh(mapped("10.0.0.9"), 0); !ok || m != sMacR {
		t.Fatalf("10.0.0.9 from the tunnel's ARP reply: %v %v, want %s", m, ok, sMacR)
	}
	r.tun.neigh[mapped("fd00::a9")] = sMacR // for an NS without a source option
	if m, ok := r.tun.LookupNeigh(mapped("fd00::9"), 0); !ok || m != sMacR {
		t.Fatalf("fd00::9 from the tunnel's NA: %v %v, want %s", m, ok, sMacR)
	}
	for _, ip := range []string{"10.0.0.3", "fd00::3"} {
		if _, ok := r.tun.LookupNeigh(mapped(ip), 0); ok {
			t.Errorf("the tunnel learned %s, b's address", ip)
		}
	}
	sol := func(ip string) string {
		a := netip.MustParseAddr(ip).As16()
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}).String()
	}
	smac := func(ip string) fdb.MAC {
		a := netip.MustParseAddr(sol(ip)).As16()
		return fdb.MAC{0x33, 0x33, a[12], a[13], a[14], a[15]}
	}
	for _, tc := range []struct {
		name  string
		frame func() int
		want  [4]uint64 // frames to a, b, g, tun
		// answer, if set, is the MAC a's answer must give.
		answer fdb.MAC
		nd     bool
	}{
		{name: "arp remote", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.9") },
			want: [4]uint64{1, 0, 0, 0}, answer: sMacR},
		{name: "arp local", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.3") },
			want: [4]uint64{1, 0, 0, 0}, answer: sMacB},
		{name: "arp gateway", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.1") },
			want: [4]uint64{0, 0, 1, 0}},
		{name: "arp unknown", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.50") },
			want: [4]uint64{0, 1, 1, 1}},
		{name: "arp probe", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "0.0.0.0", "10.0.0.9") },
			want: [4]uint64{0, 1, 1, 1}},
		{name: "gratuitous arp", frame: func() int { return arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.2") },
			want: [4]uint64{0, 1, 1, 1}},
		{name: "unicast arp refresh", frame: func() int { return arpFrame(t, buf, sMacR, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.9") },
			want: [4]uint64{0, 0, 0, 1}},
		{name: "ns remote", frame: func() int { return ndFrame(t, buf, smac("fd00::9"), sMacA, 135, "fd00::2", sol("fd00::9"), "fd00::9") },
			want: [4]uint64{1, 0, 0, 0}, answer: sMacR, nd: true},
		{name: "ns without option", frame: func() int {
			return ndFrame(t, buf, smac("fd00::a9"), sMacA, 135, "fd00::2", sol("fd00::a9"), "fd00::a9")
		},
			want: [4]uint64{1, 0, 0, 0}, answer: sMacR, nd: true},
		{name: "ns local", frame: func() int { return ndFrame(t, buf, smac("fd00::3"), sMacA, 135, "fd00::2", sol("fd00::3"), "fd00::3") },
			want: [4]uint64{1, 0, 0, 0}, answer: sMacB, nd: true},
		{name: "ns gateway", frame: func() int { return ndFrame(t, buf, smac("fd00::1"), sMacA, 135, "fd00::2", sol("fd00::1"), "fd00::1") },
			want: [4]uint64{0, 0, 1, 0}},
		{name: "dad probe", frame: func() int { return ndFrame(t, buf, smac("fd00::9"), sMacA, 135, "::", sol("fd00::9"), "fd00::9") },
			want: [4]uint64{0, 1, 1, 1}},
		{name: "ns unknown", frame: func() int {
			return ndFrame(t, buf, smac("fd00::50"), sMacA, 135, "fd00::2", sol("fd00::50"), "fd00::50")
		},
			want: [4]uint64{0, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, arp, nd := r.counts(), r.tun.arp.Load(), r.tun.nd.Load()
			r.s.forward(r.pa, buf, Headroom, tc.frame())
			after := r.counts()
			var got [4]uint64
			for i := range after {
				got[i] = after[i] - before[i]
			}
			if got != tc.want {
				t.Fatalf("frames to a, b, g, tun: %v, want %v", got, tc.want)
			}
			answered := tc.answer != fdb.MAC{}
			if d := r.tun.arp.Load() - arp + r.tun.nd.Load() - nd; answered != (d == 1) {
				t.Errorf("suppressed counted %d times", d)
			}
			if !answered {
				return
			}
			checkAnswer(t, r.a.last, tc.answer, tc.nd)
		})
	}
}

// checkAnswer decodes the answer a got with gopacket: an ARP reply or a
// solicited NA with the override flag from mac, to a.
func checkAnswer(t *testing.T, frame []byte, mac fdb.MAC, nd bool) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || fdb.MAC(eth.SrcMAC) != mac || fdb.MAC(eth.DstMAC) != sMacA {
		t.Fatalf("answer %x: want an Ethernet frame %s -> %s", frame, mac, sMacA)
	}
	if !nd {
		a, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		if a == nil || a.Operation != layers.ARPReply || fdb.MAC(a.SourceHwAddress) != mac || fdb.MAC(a.DstHwAddress) != sMacA ||
			netip.AddrFrom4([4]byte(a.DstProtAddress)) != netip.MustParseAddr("10.0.0.2") {
			t.Fatalf("answer %x: want an ARP reply from %s to a", frame, mac)
		}
		return
	}
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if icmp == nil || na == nil || ip == nil || p.ErrorLayer() != nil {
		t.Fatalf("answer %x: not an NA (%v)", frame, p.ErrorLayer())
	}
	if !na.Solicited() || !na.Override() || na.Router() || ip.HopLimit != 255 || netip.AddrFrom16([16]byte(ip.DstIP)) != netip.MustParseAddr("fd00::2") {
		t.Errorf("NA flags S %v O %v R %v, hop limit %d, to %s: want S, O, 255, to fd00::2", na.Solicited(), na.Override(), na.Router(), ip.HopLimit, ip.DstIP)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || fdb.MAC(na.Options[0].Data) != mac {
		t.Errorf("NA options %v: want the target's link-layer address %s", na.Options, mac)
	}
	// The checksum: serialize again with it computed, and compare.
	sb := gopacket.NewSerializeBuffer()
	icmp.SetNetworkLayerForChecksum(ip)
	want := icmp.Checksum
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, gopacket.Payload(icmp.Payload)); err != nil {
		t.Fatal(err)
	}
	if got := uint16(sb.Bytes()[2])<<8 | uint16(sb.Bytes()[3]); got != want {
		t.Errorf("NA checksum %#04x, want %#04x", want, got)
	}
}

// TestSuppressOff: a tunnel with suppression off is an ordinary port:
// requests are flooded and nothing is learned from it.
func TestSuppressOff(t *testing.T) {
	r := newSuppRig(t, false)
	buf := make([]byte, BufSize)
	r.s.forward(r.pt, buf, Headroom, arpFrame(t, buf, sMacA, sMacR, 2, sMacR, "10.0.0.9", "10.0.0.2"))
	if n := r.tun.learnCalls.Load(); n != 0 {
		t.Errorf("LearnNeigh called %d times with suppression off", n)
	}
	r.tun.neigh[mapped("10.0.0.9")] = sMacR
	before := r.counts()
	r.s.forward(r.pa, buf, Headroom, arpFrame(t, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.3"))
	after := r.counts()
	if after[1]-before[1] != 1 || after[3]-before[3] != 1 || after[0] != before[0] {
		t.Errorf("frames to a, b, g, tun before %v after %v: want the request flooded", before, after)
	}
}

// TestSuppressAllocs: answering a request, and learning from the tunnel,
// allocate nothing.
func TestSuppressAllocs(t *testing.T) {
	r := newSuppRig(t, true)
	buf := make([]byte, BufSize)
	learn := arpFrame(t, buf, sMacA, sMacR, 2, sMacR, "10.0.0.9", "10.0.0.2")
	req := make([]byte, BufSize)
	n := arpFrame(t, req, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.9")
	nsBuf := make([]byte, BufSize)
	r.s.forward(r.pt, buf, Headroom, learn)
	r.s.forward(r.pt, buf, Headroom, ndFrame(t, buf, sMacA, sMacR, 136, "fd00::9", "fd00::2", "fd00::9"))
	nsN := ndFrame(t, nsBuf, fdb.MAC{0x33, 0x33, 0xff, 0, 0, 9}, sMacA, 135, "fd00::2", "ff02::1:ff00:9", "fd00::9")
	naBuf := make([]byte, BufSize)
	naN := ndFrame(t, naBuf, sMacA, sMacR, 136, "fd00::9", "fd00::2", "fd00::9")
	work := make([]byte, BufSize)
	for _, tc := range []struct {
		name string
		in   *port
		src  []byte
		n    int
	}{
		{"arp answer", r.pa, req, n},
		{"ns answer", r.pa, nsBuf, nsN},
		{"learn arp", r.pt, buf, learn},
		{"learn na", r.pt, naBuf, naN},
	} {
		before := r.tun.arp.Load() + r.tun.nd.Load()
		allocs := testing.AllocsPerRun(200, func() {
			copy(work, tc.src[:Headroom+tc.n])
			r.s.forward(tc.in, work, Headroom, tc.n)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per frame, want 0", tc.name, allocs)
		}
		if tc.in == r.pa && r.tun.arp.Load()+r.tun.nd.Load()-before != 201 {
			t.Errorf("%s: %d answers to 201 requests", tc.name, r.tun.arp.Load()+r.tun.nd.Load()-before)
		}
	}
}

// FuzzSuppress runs arbitrary frames through a switch with a suppressing
// port, from a container (with its source MAC, so that port security lets
// them in) or from the suppressing port: nothing panics, and whatever the
// container gets back is a well-formed ARP reply or NA from the MAC of
// the address it asked for.
func FuzzSuppress(f *testing.F) {
	buf := make([]byte, BufSize)
	seed := func(n int) []byte { return append([]byte(nil), buf[Headroom:Headroom+n]...) }
	f.Add(false, seed(arpFrame(f, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.9")))
	f.Add(false, seed(ndFrame(f, buf, fdb.MAC{0x33, 0x33, 0xff, 0, 0, 9}, sMacA, 135, "fd00::2", "ff02::1:ff00:9", "fd00::9")))
	f.Add(true, seed(ndFrame(f, buf, sMacA, sMacR, 136, "fd00::9", "fd00::2", "fd00::9")))
	f.Add(true, seed(arpFrame(f, buf, sMacA, sMacR, 2, sMacR, "10.0.0.9", "10.0.0.2")))
	r := newSuppRig(f, true)
	r.tun.neigh[mapped("10.0.0.9")] = sMacR
	r.tun.neigh[mapped("fd00::9")] = sMacR
	f.Fuzz(func(t *testing.T, fromTun bool, b []byte) {
		if len(b) > BufSize-Headroom {
			return
		}
		in := r.pa
		if fromTun {
			in = r.pt
		} else if len(b) >= VnetHdrLen+12 {
			copy(b[VnetHdrLen+6:], sMacA[:])
		}
		work := make([]byte, BufSize)
		n := copy(work[Headroom:], b)
		before := r.a.frames.Load()
		r.s.forward(in, work, Headroom, n)
		if fromTun || r.a.frames.Load() == before {
			return
		}
		r.a.mu.Lock()
		ans := append([]byte(nil), r.a.last...)
		r.a.mu.Unlock()
		p := gopacket.NewPacket(ans, layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
			if a.Operation != layers.ARPReply || fdb.MAC(a.SourceHwAddress) != sMacR && fdb.MAC(a.SourceHwAddress) != sMacB {
				t.Fatalf("answer %x to %x", ans, b)
			}
			return
		}
		na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if na == nil || p.ErrorLayer() != nil {
			t.Fatalf("answer %x to %x is neither an ARP reply nor an NA", ans, b)
		}
	})
}

// BenchmarkSuppress is the cost of answering an ARP request or an NS on
// the spot: parse, the lookups, the answer built over the request and
// written back.
func BenchmarkSuppress(b *testing.B) {
	r := newSuppRig(b, true)
	r.tun.neigh[mapped("10.0.0.9")] = sMacR
	r.tun.neigh[mapped("fd00::9")] = sMacR
	for _, bc := range []struct {
		name  string
		frame func(buf []byte) int
	}{
		{"arp", func(buf []byte) int { return arpFrame(b, buf, bcast, sMacA, 1, sMacA, "10.0.0.2", "10.0.0.9") }},
		{"ns", func(buf []byte) int {
			return ndFrame(b, buf, fdb.MAC{0x33, 0x33, 0xff, 0, 0, 9}, sMacA, 135, "fd00::2", "ff02::1:ff00:9", "fd00::9")
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src, work := make([]byte, BufSize), make([]byte, BufSize)
			n := bc.frame(src)
			b.ReportAllocs()
			for b.Loop() {
				copy(work[Headroom:], src[Headroom:Headroom+n])
				r.s.forward(r.pa, work, Headroom, n)
			}
		})
	}
}
