package nat

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/tapswitch/tapswitch/wire"
)

// The RFC 4787, 5382 and 5508 requirements again for NAT66 (the same
// behaviour for IPv6, RFC 6296 section 1's NAPT66), on a dual-stack table.

func newTable6(t testing.TB, mod func(*Config)) *Table {
	t.Helper()
	return newTable(t, func(c *Config) {
		c.External6, c.Internal6 = netip.MustParseAddr(extIP6), netip.MustParsePrefix(subnet6)
		if mod != nil {
			mod(c)
		}
	})
}

func echo6(typ uint8, src, dst string, id uint16) []byte {
	return build(spec{proto: ICMPv6, src: src, dst: dst, icmpType: typ, id: id, payload: []byte("0123456789abcdef")})
}

// mk6 builds a TCP SYN or a UDP datagram.
func mk6(proto Proto, src, dst string) []byte {
	if proto == TCP {
		return tcp(src, dst, wire.TCPFlagSYN)
	}
	return udp(src, dst)
}

func TestNAT66_RFC4787_REQ1_EndpointIndependentMapping(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			tb := newTable6(t, nil)
			a := out(t, tb, mk6(proto, ap(c16, 40000), ap(remote6, 53)), 0)
			b := out(t, tb, mk6(proto, ap(c16, 40000), ap(remote26, 53)), 0)
			c := out(t, tb, mk6(proto, ap(c16, 40000), ap(remote6, 54)), 0)
			if a != b || a != c {
				t.Fatalf("mappings %s, %s, %s differ", a, b, c)
			}
			if a.Port != 40000 {
				t.Errorf("port %d not preserved (RFC 4787 REQ-3)", a.Port)
			}
			if got := tb.Stats().Entries6; got[protoIndex(proto)] != 3 {
				t.Errorf("IPv6 entries %v, want 3 of %v", got, proto)
			}
		})
	}
}

// TestNAT66_RFC4787_REQ3_PortPreservation: two containers with one source
// port; the second gets another port of the same parity (REQ-4), at or
// above 1024; the IPv4 and IPv6 port spaces are apart.
func TestNAT66_RFC4787_REQ3_PortPreservation(t *testing.T) {
	tb := newTable6(t, func(c *Config) { c.PortMin, c.PortMax = 20000, 20010 })
	a := out(t, tb, udp(ap(c16, 40000), ap(remote6, 53)), 0)
	b := out(t, tb, udp(ap(c26, 40000), ap(remote6, 53)), 0)
	if a.Port != 40000 || b.Port < 20000 || b.Port > 20010 || b.Port%2 != 0 {
		t.Fatalf("ports %d and %d: want 40000 kept, then an even one of 20000-20010", a.Port, b.Port)
	}
	v4 := out(t, tb, udp(c1+":40000", remote+":53"), 0)
	if v4.Port != 40000 {
		t.Fatalf("IPv4 port %d: the IPv6 mapping of 40000 took it", v4.Port)
	}
}

// TestNAT66_RFC5382_TCP: a TCP connection's handshake, data and close, both
// ways, with every checksum valid; a non-SYN opens nothing.
func TestNAT66_RFC5382_TCP(t *testing.T) {
	tb := newTable6(t, nil)
	wantDrop(t, "ack without connection", tb.FromInternal(tcp(ap(c16, 5555), ap(remote6, 80), wire.TCPFlagACK), false, 0), DropTCPNoSyn)
	m := out(t, tb, tcp(ap(c16, 5555), ap(remote6, 80), wire.TCPFlagSYN), 0)
	steps := []struct {
		in    bool
		flags uint8
	}{{true, wire.TCPFlagSYN | wire.TCPFlagACK}, {false, wire.TCPFlagACK}, {true, wire.TCPFlagACK | wire.TCPFlagFIN}, {false, wire.TCPFlagACK | wire.TCPFlagFIN}}
	for _, s := range steps {
		if s.in {
			pkt := tcp(ap(remote6, 80), m.String(), s.flags)
			want(t, "in", tb.FromExternal(pkt, false, sec), ToInternal, pkt)
			wantHdr(t, "in", pkt, ap(remote6, 80), ap(c16, 5555))
		} else {
			pkt := tcp(ap(c16, 5555), ap(remote6, 80), s.flags)
			want(t, "out", tb.FromInternal(pkt, false, sec), ToExternal, pkt)
			wantHdr(t, "out", pkt, m.String(), ap(remote6, 80))
		}
	}
	e := tb.Entries(sec)
	if len(e) != 1 || e[0].State != "TIME_WAIT" || !e[0].Orig.Is6() {
		t.Fatalf("entries %v, want one IPv6 TIME_WAIT", e)
	}
}

func TestNAT66_RFC5508_REQ3_BadChecksum(t *testing.T) {
	tb := newTable6(t, nil)
	pkt := udp(ap(c16, 40000), ap(remote6, 9))
	tb.FromInternal(pkt, false, 0)
	e := icmpErr(wire.ICMPv6Unreachable, 4, remote6, extIP6, pkt, 0)
	e[len(e)-1] ^= 0xff
	wantDrop(t, "bad checksum", tb.FromExternal(e, false, 0), DropBadChecksum)
	e = icmpErr(wire.ICMPv6Unreachable, 4, remote6, extIP6, udp(ap(extIP6, 40001), ap(remote6, 9)), 0)
	wantDrop(t, "untracked", tb.FromExternal(e, false, 0), DropICMPErrorNoFlow)
	e2 := icmpErr(wire.ICMPv6Unreachable, 4, remote6, extIP6, icmpErr(wire.ICMPv6Unreachable, 4, extIP6, remote6, pkt, 0), 0)
	wantDrop(t, "error about error", tb.FromExternal(e2, false, 0), DropICMPErrorNoFlow)
}

// TestNAT66_RFC5508_REQ4_ErrorFromInside: a container's ICMPv6 error about
// a reply leaves from the external address, quoting what the outside sent.
func TestNAT66_RFC5508_REQ4_ErrorFromInside(t *testing.T) {
	tb := newTable6(t, nil)
	m := out(t, tb, udp(ap(c16, 41000), ap(remote6, 53)), 0)
	in := udp(ap(remote6, 53), m.String())
	want(t, "reply", tb.FromExternal(in, false, 0), ToInternal, in)
	e := icmpErr(wire.ICMPv6Unreachable, 4, c16, remote6, in, 0)
	want(t, "error on reply", tb.FromInternal(e, false, sec), ToExternal, e)
	wantHdr(t, "outer", e, extIP6, remote6)
	wantHdr(t, "embedded", inner(e), ap(remote6, 53), m.String())
}

// TestNAT66_RFC4787_REQ9_Hairpin: with endpoint-independent filtering a
// container reaches another's mapping through the external IPv6 address
// and sees its external endpoint (RFC 5382 REQ-8 for TCP).
func TestNAT66_RFC4787_REQ9_Hairpin(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			tb := newTable6(t, func(c *Config) { c.EndpointIndependentFiltering = true })
			m2 := out(t, tb, mk6(proto, ap(c26, 3478), ap(remote6, 3478)), 0)
			pkt := mk6(proto, ap(c16, 5000), m2.String())
			want(t, "hairpin", tb.FromInternal(pkt, false, sec), ToInternal, pkt)
			wantHdr(t, "hairpin", pkt, ap(extIP6, 5000), ap(c26, 3478))
			back := udp(ap(c26, 3478), ap(extIP6, 5000))
			if proto == TCP {
				back = tcp(ap(c26, 3478), ap(extIP6, 5000), wire.TCPFlagSYN|wire.TCPFlagACK)
			}
			want(t, "hairpin reply", tb.FromInternal(back, false, sec), ToInternal, back)
			wantHdr(t, "hairpin reply", back, m2.String(), ap(c16, 5000))
		})
	}
}

// TestNAT66_Drops: IPv6 without NAT66 configured, fragments, zero UDP
// checksums, ICMP (v4) over IPv6 and the like are dropped unchanged.
func TestNAT66_Drops(t *testing.T) {
	frag := udp(ap(c16, 40000), ap(remote6, 53))
	frag = append(frag[:40:40], append([]byte{byte(UDP), 0, 0, 1, 0, 0, 0, 1}, frag[40:]...)...)
	frag[6] = 44 // a Fragment header (offset 0, more fragments)
	put16(frag[4:], uint16(len(frag)-40))
	icmp4 := build(spec{proto: ICMPv6, src: c16, dst: remote6, icmpType: wire.ICMPv6EchoRequest})
	icmp4[6] = byte(ICMP)
	tests := []struct {
		name     string
		v4only   bool
		internal bool
		pkt      []byte
		reason   DropReason
	}{
		{"ipv4-only table, from inside", true, true, udp(ap(c16, 40000), ap(remote6, 53)), DropNotInternal},
		{"ipv4-only table, from outside", true, false, udp(ap(remote6, 53), ap(extIP6, 40000)), DropNotExternal},
		{"fragment", false, true, frag, DropFragment},
		{"zero udp checksum", false, true, build(spec{proto: UDP, src: ap(c16, 1), dst: ap(remote6, 2), noCsum: true}), DropMalformed},
		{"icmp over ipv6", false, true, icmp4, DropProto},
		{"link-local destination", false, true, udp(ap(c16, 40000), ap("fe80::1", 53)), DropNotInternal},
		{"source outside the /64", false, true, udp(ap("fd42:2::2", 40000), ap(remote6, 53)), DropNotInternal},
		{"to the external address from inside the /64", false, false, udp(ap(c16, 53), ap(extIP6, 40000)), DropNotExternal},
		{"router solicitation", false, true, build(spec{proto: ICMPv6, src: c16, dst: remote6, icmpType: wire.ICMPv6RouterSolicitation}), DropICMPType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable6(t, nil)
			if tt.v4only {
				tb = newTable(t, nil)
			}
			before := append([]byte(nil), tt.pkt...)
			wantDrop(t, tt.name, translate(tb, tt.internal, tt.pkt), tt.reason)
			if string(before) != string(tt.pkt) {
				t.Fatalf("dropped packet changed")
			}
		})
	}
}

func TestNAT66Config(t *testing.T) {
	for _, tt := range []struct {
		name string
		ext  string
		in   string
	}{
		{"external without internal", extIP6, ""},
		{"internal without external", "", subnet6},
		{"ipv4 external", "203.0.113.9", subnet6},
		{"external inside", "fd42:1::99", subnet6},
		{"link-local external", "fe80::1", subnet6},
		{"ipv4 internal", extIP6, "10.0.0.0/8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.ext != "" {
				cfg.External6 = netip.MustParseAddr(tt.ext)
			}
			if tt.in != "" {
				cfg.Internal6 = netip.MustParsePrefix(tt.in)
			}
			if _, err := New(cfg); err == nil {
				t.Fatalf("New accepted %s %s", tt.ext, tt.in)
			}
		})
	}
}

// TestNAT66Partial: a partial checksum (virtio NEEDS_CSUM, a TSO
// super-frame's) is translated to the right pseudo-header sum: the
// device's completion gives a valid checksum.
func TestNAT66Partial(t *testing.T) {
	tb := newTable6(t, nil)
	pkt := tcp(ap(c16, 40000), ap(remote6, 80), wire.TCPFlagSYN)
	makePartial(pkt)
	want(t, "partial", tb.FromInternal(pkt, true, 0), ToExternal, nil)
	completePartial(pkt)
	if err := checkChecksums(pkt); err != nil {
		t.Fatal(err)
	}
}

// TestNAT66_Publish: a port published with Target6 takes IPv6 clients of
// the external IPv6 address to the container's IPv6 address, the client's
// address kept (DNAT66), and IPv4 ones to its IPv4 address; containers
// reach it hairpinned (RFC 4787 REQ-9, RFC 5382 REQ-8); the container's
// ICMPv6 error about it leaves from the external address (RFC 5508 REQ-4).
// Without Target6 the port is IPv4 only.
func TestNAT66_Publish(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			tb := newTable6(t, nil)
			p, err := ParsePublish("8080:80/" + proto.String())
			if err != nil {
				t.Fatal(err)
			}
			p.Target, p.Target6 = netip.MustParseAddr(c2), netip.MustParseAddr(c26)
			if err := tb.AddPublish(p); err != nil {
				t.Fatal(err)
			}
			mustPublish(t, tb, "9090:90/"+proto.String(), c1) // IPv4 only
			in := mk6(proto, ap(remote6, 5000), ap(extIP6, 8080))
			want(t, "to published", tb.FromExternal(in, false, 0), ToInternal, in)
			wantHdr(t, "to published", in, ap(remote6, 5000), ap(c26, 80))
			back := udp(ap(c26, 80), ap(remote6, 5000))
			if proto == TCP {
				back = tcp(ap(c26, 80), ap(remote6, 5000), wire.TCPFlagSYN|wire.TCPFlagACK)
			}
			want(t, "reply", tb.FromInternal(back, false, 0), ToExternal, back)
			wantHdr(t, "reply", back, ap(extIP6, 8080), ap(remote6, 5000))
			in4 := mk6(proto, remote+":5000", extIP+":8080")
			want(t, "ipv4 client", tb.FromExternal(in4, false, 0), ToInternal, in4)
			wantHdr(t, "ipv4 client", in4, remote+":5000", c2+":80")
			wantDrop(t, "ipv4-only publish", tb.FromExternal(mk6(proto, ap(remote6, 5001), ap(extIP6, 9090)), false, 0), DropNoFlow)

			hp := mk6(proto, ap(c16, 6000), ap(extIP6, 8080))
			want(t, "hairpin", tb.FromInternal(hp, false, sec), ToInternal, hp)
			wantHdr(t, "hairpin", hp, ap(extIP6, 6000), ap(c26, 80))
		})
	}
	tb := newTable6(t, nil)
	p, _ := ParsePublish("8053:53/udp")
	p.Target, p.Target6 = netip.MustParseAddr(c1), netip.MustParseAddr(c16)
	if err := tb.AddPublish(p); err != nil {
		t.Fatal(err)
	}
	in := udp(ap(remote6, 5000), ap(extIP6, 8053))
	want(t, "to published", tb.FromExternal(in, false, 0), ToInternal, in)
	e := icmpErr(wire.ICMPv6Unreachable, 4, c16, remote6, in, 0)
	want(t, "error", tb.FromInternal(e, false, sec), ToExternal, e)
	wantHdr(t, "outer", e, extIP6, remote6)
	wantHdr(t, "embedded", inner(e), ap(remote6, 5000), ap(extIP6, 8053))
	if removed := tb.RemovePublishesTo(netip.MustParseAddr(c16)); len(removed) != 1 {
		t.Errorf("RemovePublishesTo(the IPv6 target) removed %d, want 1", len(removed))
	}

	p.Target6 = netip.MustParseAddr("fd42:2::5")
	if err := tb.AddPublish(p); !errors.Is(err, ErrBadPublish) {
		t.Errorf("AddPublish with target6 outside the /64: %v, want ErrBadPublish", err)
	}
}
