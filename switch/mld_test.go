package vswitch

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// mld builds an MLD message of type typ for group (RFC 2710 3: 24 bytes;
// an MLDv2 report's record count and records are left out).
func mld(typ uint8, group [16]byte) []byte {
	m := make([]byte, 24)
	m[0] = typ
	copy(m[8:], group[:])
	return m
}

// withRouterAlert puts a Hop-by-Hop header with the Router Alert option
// (RFC 2711), as hosts send MLD, in front of the ICMPv6 message m.
func withRouterAlert(src, dst [16]byte, m []byte) []byte {
	p := append([]byte{wire.ProtoICMPv6, 0, 5, 2, 0, 0, 1, 0}, m...)
	// The ICMPv6 checksum is left zero: no stage reads it.
	return ipv6Pkt(src, dst, wire.ProtoHopByHop, 1, p, 0, -1)
}

// groupMAC is the Ethernet address of the IPv6 multicast group g (RFC
// 2464 7).
func groupMAC(g [16]byte) fdb.MAC { return fdb.MAC{0x33, 0x33, g[12], g[13], g[14], g[15]} }

// TestRouterOnlyMulticast checks that the switch sends MLDv1 reports and
// done messages, like MLDv2 reports and router solicitations, to the
// gateway, AllowRA and unsecured ports only (RFC 4541 2.1.1), whatever
// group address they are sent to, and floods other IPv6 multicast, even to
// the group an MLDv1 report joins, allocating nothing.
func TestRouterOnlyMulticast(t *testing.T) {
	r := newStageRig(t, Config{},
		sp{"a", PortConfig{MAC: mA}},
		sp{"b", PortConfig{MAC: mB}},
		sp{"router", PortConfig{MAC: mC, AllowRA: true}},
		sp{"gw", PortConfig{MAC: mG, Gateway: true}},
		sp{"tunnel", PortConfig{}},
		sp{"trunk", PortConfig{MAC: fdb.MAC{2, 0, 0, 0, 0, 0xd}, Trunk: []uint16{10}}},
	)
	allMLDv2Routers := netip.MustParseAddr("ff02::16").As16()
	group := netip.MustParseAddr("ff02::fb").As16()
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 5353)
	binary.BigEndian.PutUint16(udp[2:], 5353)
	binary.BigEndian.PutUint16(udp[4:], 8)
	v6 := func(dst [16]byte, p []byte) []byte {
		return ethFrame(groupMAC(dst), mA, nil, wire.EtherTypeIPv6, p)
	}
	const routers, flood = "router gw tunnel", "b router gw tunnel trunk"
	tests := []struct {
		name string
		in   string // "a" if empty
		raw  []byte
		want string
	}{
		{"to ff02::16", "", ethFrame(fdb.MAC{0x33, 0x33, 0, 0, 0, 0x16}, mA, nil, wire.EtherTypeIPv6, nil), routers},
		{"to ff02::2", "", ethFrame(fdb.MAC{0x33, 0x33, 0, 0, 0, 0x02}, mA, nil, wire.EtherTypeIPv6, nil), routers},
		{"to ff02::1", "", ethFrame(fdb.MAC{0x33, 0x33, 0, 0, 0, 0x01}, mA, nil, wire.EtherTypeIPv6, nil), flood},
		{"to 33:33:ff:00:00:16", "", ethFrame(fdb.MAC{0x33, 0x33, 0xff, 0, 0, 0x16}, mA, nil, wire.EtherTypeIPv6, nil), flood},
		{"MLDv1 report", "", v6(group, withRouterAlert(llA, group, mld(wire.ICMPv6MLDReport, group))), routers},
		{"MLDv1 report without Router Alert", "", icmp6(mA, groupMAC(group), llA, group, mld(wire.ICMPv6MLDReport, group)), routers},
		{"MLDv1 report, priority-tagged on a trunk", "trunk", ethFrame(groupMAC(group), mA, []tag{{wire.EtherTypeVLAN, 0}}, wire.EtherTypeIPv6,
			withRouterAlert(llA, group, mld(wire.ICMPv6MLDReport, group))), routers},
		{"MLDv1 done", "", v6(wire.AllRouters, withRouterAlert(llA, wire.AllRouters, mld(wire.ICMPv6MLDDone, group))), routers},
		{"MLDv1 done to the group", "", v6(group, withRouterAlert(llA, group, mld(wire.ICMPv6MLDDone, group))), routers},
		{"MLDv2 report", "", v6(allMLDv2Routers, withRouterAlert(llA, allMLDv2Routers, mld(wire.ICMPv6MLDv2Report, group))), routers},
		{"UDP to the group", "", v6(group, ipv6Pkt(llA, group, wire.ProtoUDP, 255, udp, wire.ProtoUDP, 6)), flood},
		{"MLD query", "", v6(wire.AllNodes, withRouterAlert(llA, wire.AllNodes, mld(wire.ICMPv6MLDQuery, [16]byte{}))), flood},
		{"echo to the group", "", icmp6(mA, groupMAC(group), llA, group, []byte{wire.ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}), flood},
		{"report type in an IPv4 frame", "", ethFrame(groupMAC(group), mA, nil, wire.EtherTypeIPv4,
			ipv4(ipA, [4]byte{224, 0, 0, 251}, wire.ProtoICMP, mld(wire.ICMPv6MLDReport, group))), flood},
		{"cut short", "", ethFrame(groupMAC(group), mA, nil, wire.EtherTypeIPv6, []byte{0x60, 0, 0, 0, 0, 24, 0}), flood},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if in == "" {
				in = "a"
			}
			f := r.frame(in, tt.raw)
			if v := run(f, parseStage{}, vlanStage{}, forwardStage{}); v != Continue {
				t.Fatalf("verdict %d", v)
			}
			if got := strings.Join(r.outs(f), " "); got != tt.want {
				t.Errorf("to %q, want %q", got, tt.want)
			}
		})
	}

	f := r.frame("a", v6(group, withRouterAlert(llA, group, mld(wire.ICMPv6MLDReport, group))))
	run(f, parseStage{}, vlanStage{})
	if n := testing.AllocsPerRun(100, func() {
		f.out.reset(len(f.t.list))
		forwardStage{}.Process(f)
	}); n != 0 {
		t.Errorf("forward of an MLDv1 report: %v allocations, want 0", n)
	}
}

// FuzzIsMLDv1 checks that reading an MLD type from arbitrary bytes never
// panics, and that what it takes for MLDv1 is an IPv6 packet whose
// upper-layer header is an ICMPv6 report or done.
func FuzzIsMLDv1(f *testing.F) {
	group := netip.MustParseAddr("ff02::fb").As16()
	f.Add(withRouterAlert(llA, group, mld(wire.ICMPv6MLDReport, group)))
	f.Add(ipv6Pkt(llA, group, wire.ProtoICMPv6, 1, mld(wire.ICMPv6MLDDone, group), wire.ProtoICMPv6, 2))
	f.Add(ipv6Pkt(llA, group, wire.ProtoFragment, 1, append([]byte{wire.ProtoICMPv6, 0, 0, 0, 0, 0, 0, 1}, mld(131, group)...), 0, -1))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !isMLDv1(b) {
			return
		}
		ip, err := wire.ParseIPv6(b)
		if err != nil {
			t.Fatalf("MLDv1 in an unreadable packet: %v", err)
		}
		u, err := ip.Upper()
		if err != nil || u.Proto != wire.ProtoICMPv6 || u.FragOff != 0 || len(ip) < u.Offset+wire.ICMPLen {
			t.Fatalf("MLDv1 in %+v (%v)", u, err)
		}
		if typ := ip[u.Offset]; typ != wire.ICMPv6MLDReport && typ != wire.ICMPv6MLDDone {
			t.Fatalf("type %d taken for MLDv1", typ)
		}
	})
}
