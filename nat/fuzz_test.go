package nat

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/wire"
)

// Crashers found by these fuzzers are kept as seeds in testdata/fuzz:
//   - FuzzFromInternal and FuzzFromExternal 880b4c0c77a31a68: a 20-byte
//     packet whose total length exceeds the slice crashed the test's own
//     checksum verifier (not the table); the verifier now checks lengths.
//   - FuzzTableOps 2bf9418eddaf59c5: a container hairpinned to its own
//     mapping (endpoint-independent filtering) made a connection whose
//     original and reply tuples are equal; the table now refuses it.

// fuzzTable returns a dual-stack table with a few connections of every
// kind, for the packet fuzzers to hit.
func fuzzTable(t testing.TB, eif bool) *Table {
	tb := newTable6(t, func(c *Config) { c.EndpointIndependentFiltering = eif; c.MaxEntries = 64 })
	pub := func(s, target string) {
		p, err := ParsePublish(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Target = ep(target).AddrPort().Addr()
		if target == c2 {
			p.Target6 = ep(c26).Addr // published over IPv6 too
		}
		if err := tb.AddPublish(p); err != nil {
			t.Fatal(err)
		}
	}
	pub("8080:80", c2)
	pub("9000-9009:7000-7009/udp", c2)
	for _, p := range [][]byte{
		udp(c1+":40000", remote+":53"),
		tcp(c1+":40001", remote+":80", wire.TCPFlagSYN),
		echo(8, c1, remote, 7),
		tcp(c1+":45000", extIP+":8080", wire.TCPFlagSYN),
		udp(ap(c16, 40000), ap(remote6, 53)),
		tcp(ap(c16, 40001), ap(remote6, 80), wire.TCPFlagSYN),
		echo6(wire.ICMPv6EchoRequest, c16, remote6, 7),
		udp(ap(c26, 3478), ap(remote6, 3478)),
	} {
		tb.FromInternal(p, false, 0)
	}
	// The first fragment of a datagram whose later fragments are seeds.
	tb.FromInternal(fuzzFragments()[0], false, 0)
	for _, p := range [][]byte{
		udp(remote+":53", extIP+":40000"),
		tcp(remote+":80", extIP+":40001", wire.TCPFlagSYN|wire.TCPFlagACK),
		tcp(remote+":5000", extIP+":8080", wire.TCPFlagSYN),
		udp(remote+":5001", extIP+":9003"),
		udp(ap(remote6, 53), ap(extIP6, 40000)),
		tcp(ap(remote6, 80), ap(extIP6, 40001), wire.TCPFlagSYN|wire.TCPFlagACK),
	} {
		tb.FromExternal(p, false, 0)
	}
	return tb
}

func fuzzFragments() [][]byte {
	whole := build(spec{proto: UDP, src: c1 + ":40000", dst: remote + ":53", payload: make([]byte, 100), ipID: 500})
	return fragmentsOf(whole, 48)
}

// seeds are valid packets of both directions, including ICMP errors, for
// the packet fuzzers.
func seeds() [][]byte {
	o := udp(extIP+":40000", remote+":53")
	return [][]byte{
		fuzzFragments()[1],
		fuzzFragments()[2],
		udp(c1+":40000", remote+":53"),
		udp(c1+":40002", remote+":53"),
		tcp(c1+":40001", remote+":80", wire.TCPFlagACK),
		tcp(c1+":40003", remote+":80", wire.TCPFlagSYN),
		echo(8, c1, remote, 7),
		echo(8, c2, remote, 7),
		tcp(c1+":45000", extIP+":8080", wire.TCPFlagACK),
		udp(c1+":45001", extIP+":9001"),
		tcp(c2+":80", extIP+":45000", wire.TCPFlagSYN|wire.TCPFlagACK),
		tcp(c2+":80", remote+":5000", wire.TCPFlagSYN|wire.TCPFlagACK),
		udp(c2+":7003", remote+":5001"),
		build(spec{proto: UDP, src: c1 + ":40000", dst: remote + ":53", noCsum: true}),
		icmpErr(3, 3, c2, remote, udp(remote+":5001", c2+":7003"), 0),
		icmpErr(3, 3, c1, remote, udp(remote+":53", c1+":40000"), 28),
		udp(remote+":53", extIP+":40000"),
		tcp(remote+":80", extIP+":40001", wire.TCPFlagACK|wire.TCPFlagFIN),
		tcp(remote+":5002", extIP+":8080", wire.TCPFlagSYN),
		udp(remote+":5003", extIP+":9009"),
		echo(0, remote, extIP, 7),
		icmpErr(3, 3, remote, extIP, o, 0),
		icmpErr(11, 0, router, extIP, tcp(extIP+":40001", remote+":80", wire.TCPFlagACK), 28),
		icmpErr(3, 4, router, extIP, echo(8, extIP, remote, 7), 0),
		icmpErr(3, 3, remote, extIP, tcp(extIP+":8080", remote+":5000", wire.TCPFlagSYN|wire.TCPFlagACK), 0),
		udp(ap(c16, 40000), ap(remote6, 53)),
		tcp(ap(c16, 40001), ap(remote6, 80), wire.TCPFlagACK),
		tcp(ap(c26, 40005), ap(remote6, 80), wire.TCPFlagSYN),
		echo6(wire.ICMPv6EchoRequest, c26, remote6, 9),
		udp(ap(c16, 5000), ap(extIP6, 3478)),
		udp(ap(remote6, 53), ap(extIP6, 40000)),
		tcp(ap(remote6, 80), ap(extIP6, 40001), wire.TCPFlagACK),
		echo6(wire.ICMPv6EchoReply, remote6, extIP6, 7),
		udp(ap(remote26, 9), ap(extIP6, 3478)),
		tcp(ap(remote6, 5002), ap(extIP6, 8080), wire.TCPFlagSYN),
		tcp(ap(c26, 80), ap(remote6, 5002), wire.TCPFlagSYN|wire.TCPFlagACK),
		tcp(ap(c16, 45000), ap(extIP6, 8080), wire.TCPFlagSYN),
		icmpErr(wire.ICMPv6PacketTooBig, 0, router6, extIP6, tcp(ap(extIP6, 40001), ap(remote6, 80), wire.TCPFlagACK), 0),
		icmpErr(wire.ICMPv6Unreachable, 4, remote6, extIP6, udp(ap(extIP6, 40000), ap(remote6, 53)), 48),
		icmpErr(wire.ICMPv6TimeExceeded, 0, router6, extIP6, echo6(wire.ICMPv6EchoRequest, extIP6, remote6, 7), 0),
		icmpErr(wire.ICMPv6Unreachable, 4, c16, remote6, udp(ap(remote6, 53), ap(c16, 40000)), 0),
	}
}

// fuzzPacket is the body of FuzzFromInternal and FuzzFromExternal: any input
// must not panic; a dropped packet is left as it was; a translated packet
// whose checksums were valid has valid checksums (also after a device
// completes a partial one), the same length, and the addresses its action
// promises.
func fuzzPacket(t *testing.T, tb *Table, fromInternal bool, pkt []byte, partial, fix bool) {
	if fix {
		fixChecksums(pkt, true)
	}
	valid := checkChecksums(pkt) == nil
	frag := len(pkt) >= 20 && pkt[0]>>4 == 4 && binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0
	if partial && valid && !frag {
		makePartial(pkt)
	}
	before := append([]byte(nil), pkt...)
	var r Result
	if fromInternal {
		r = tb.FromInternal(pkt, partial, 1)
	} else {
		r = tb.FromExternal(pkt, partial, 1)
	}
	if r.Action == Drop {
		if !bytes.Equal(before, pkt) {
			t.Fatalf("dropped (%v) but changed:\n%x\n%x", r.Reason, before, pkt)
		}
		return
	}
	if r.Reason != DropNone {
		t.Fatalf("action %v with reason %v", r.Action, r.Reason)
	}
	if partial && valid && !frag {
		completePartial(pkt)
	}
	if valid {
		if err := checkChecksums(pkt); err != nil {
			t.Fatalf("%v after translation (%v, partial %v):\nin  %x\nout %x", err, r.Action, partial, before, pkt)
		}
	}
	s, d := hdr(pkt)
	switch r.Action {
	case ToExternal:
		if s.Addr != tb.ext && s.Addr != tb.ext6 {
			t.Fatalf("to external from %s", s)
		}
	case ToInternal:
		if !tb.isInternal(d.Addr) {
			t.Fatalf("to internal for %s", d)
		}
	}
}

func FuzzFromInternal(f *testing.F) { fuzzDirection(f, true) }

func FuzzFromExternal(f *testing.F) { fuzzDirection(f, false) }

// fuzzDirection feeds arbitrary packets to FromInternal (fromInternal) or
// FromExternal, seeded with seeds() both plain and with every option.
func fuzzDirection(f *testing.F, fromInternal bool) {
	for _, s := range seeds() {
		f.Add(s, false, false, false)
		f.Add(s, true, true, true)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, partial, fix, eif bool) {
		fuzzPacket(t, fuzzTable(t, eif), fromInternal, pkt, partial, fix)
	})
}

// FuzzRoundTrip builds a valid outbound packet (IPv4, or IPv6 through
// NAT66) from the fuzzer's fields, translates it, answers it from outside,
// and checks that the answer reaches the sender with every checksum valid;
// then it sends an ICMP error about the translated packet and checks that
// too.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(17), uint16(40000), uint16(53), uint16(7), []byte("x"), false, false, uint8(0), false)
	f.Add(uint8(6), uint16(1), uint16(65535), uint16(0), []byte{}, true, false, uint8(28), false)
	f.Add(uint8(1), uint16(0), uint16(0), uint16(0xffff), []byte("ping"), false, true, uint8(255), false)
	f.Add(uint8(17), uint16(40000), uint16(53), uint16(7), []byte("x"), false, false, uint8(0), true)
	f.Add(uint8(6), uint16(1), uint16(65535), uint16(0), []byte{}, true, false, uint8(48), true)
	f.Add(uint8(1), uint16(0), uint16(0), uint16(0xffff), []byte("ping"), true, false, uint8(255), true)
	f.Fuzz(func(t *testing.T, proto uint8, sport, dport, id uint16, payload []byte, partial, noCsum bool, quote uint8, v6 bool) {
		if len(payload) > 2000 {
			payload = payload[:2000]
		}
		// The family's addresses, its ICMP and the shortest quote of a
		// header and 8 bytes.
		a1, a2, rem, ext, rtr, icmp, minQuote := c1, c2, remote, extIP, router, ICMP, 28
		if v6 {
			a1, a2, rem, ext, rtr, icmp, minQuote = c16, c26, remote6, extIP6, router6, ICMPv6, 48
			noCsum = false // UDP over IPv6 must have one
		}
		tb := newTable6(t, func(c *Config) { c.PortMin, c.PortMax = 30000, 30009 })
		// Take the source's own port so the mapping has to change it.
		tb.FromInternal(build(spec{proto: UDP, src: ap(a2, sport), dst: ap(rem, 1)}), false, 0)
		tb.FromInternal(build(spec{proto: TCP, src: ap(a2, sport), dst: ap(rem, 1), flags: wire.TCPFlagSYN}), false, 0)
		tb.FromInternal(build(spec{proto: icmp, src: a2, dst: rem, icmpType: echoRequest(icmp), id: id}), false, 0)
		s := spec{src: ap(a1, sport), dst: ap(rem, dport), payload: payload, noCsum: noCsum}
		switch proto % 3 {
		case 0:
			s.proto, s.flags = TCP, wire.TCPFlagSYN
		case 1:
			s.proto = UDP
		case 2:
			s.proto, s.icmpType, s.id, s.src, s.dst = icmp, echoRequest(icmp), id, a1, rem
		}
		pkt := build(s)
		if partial {
			makePartial(pkt)
		}
		r := tb.FromInternal(pkt, partial, 1)
		if r.Action == Drop {
			if (s.proto == UDP || s.proto == TCP) && sport == 0 {
				return // port 0 may not be mapped (range or preserved)
			}
			t.Fatalf("outbound dropped: %v", r.Reason)
		}
		if partial {
			completePartial(pkt)
		}
		if err := checkChecksums(pkt); err != nil {
			t.Fatalf("outbound: %v", err)
		}
		m, _ := hdr(pkt)
		if m.Addr != ep(ext).Addr {
			t.Fatalf("outbound from %s, want %s", m, ext)
		}
		sent := append([]byte(nil), pkt...)
		rs := spec{proto: s.proto, src: ap(rem, dport), dst: m.String(), payload: payload, flags: wire.TCPFlagSYN | wire.TCPFlagACK, noCsum: noCsum}
		if s.proto == icmp {
			rs.src, rs.dst, rs.icmpType, rs.id = rem, ext, echoReply(icmp), m.Port
		}
		rep := build(rs)
		if partial {
			makePartial(rep)
		}
		r = tb.FromExternal(rep, partial, 2)
		if r.Action != ToInternal {
			t.Fatalf("reply: %v %v", r.Action, r.Reason)
		}
		if partial {
			completePartial(rep)
		}
		if err := checkChecksums(rep); err != nil {
			t.Fatalf("reply: %v", err)
		}
		rsrc, rdst := hdr(rep)
		osrc := ep(s.src)
		if s.proto == icmp {
			osrc.Port = id
			rdst.Port = rsrc.Port
		}
		if rdst != osrc {
			t.Fatalf("reply to %s, want %s", rdst, osrc)
		}
		typ, code := uint8(3), uint8(3)
		if v6 {
			typ, code = wire.ICMPv6Unreachable, 4
		}
		e := icmpErr(typ, code, rtr, ext, sent, int(quote))
		if len(sent) < minQuote || (quote != 0 && int(quote) < minQuote) {
			return
		}
		r = tb.FromExternal(e, false, 3)
		if r.Action != ToInternal {
			t.Fatalf("icmp error: %v %v", r.Action, r.Reason)
		}
		if err := checkChecksums(e); err != nil {
			t.Fatalf("icmp error: %v", err)
		}
		if is, _ := hdr(inner(e)); is.Addr != osrc.Addr || (s.proto != icmp && is.Port != osrc.Port) {
			t.Fatalf("embedded source %s, want %s", is, osrc)
		}
	})
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"8080:80", "1.2.3.4:1-5:6-10/udp", "0.0.0.0:80:80/TCP", ":80:80", "80", "a:b:c", "65535:65535/udp", "1-65535:1-65535",
		"[::1]:8080:80", "[2001:db8::5]:1-2:3-4/udp", "2001:db8::5:80:80", ":::80:80", "[::ffff:1.2.3.4]:1:2", "[fe80::1%eth0]:1:2", "[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePublish(s)
		if err != nil {
			return
		}
		if p.HostPort == 0 || p.HostPortEnd < p.HostPort || p.TargetPort == 0 || int(p.TargetPort)+int(p.HostPortEnd-p.HostPort) > 65535 {
			t.Fatalf("ParsePublish(%q) = %+v: bad ranges accepted", s, p)
		}
		if h := p.HostIP; h.IsValid() && (h.Zone() != "" || h.Is4In6()) {
			t.Fatalf("ParsePublish(%q) = %+v: host address with a zone or IPv4-mapped accepted", s, p)
		}
		q, err := ParsePublish(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip of %q via %q: %+v, %v; want %+v", s, p.String(), q, err, p)
		}
	})
}
