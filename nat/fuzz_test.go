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

// fuzzTable returns a table with a few connections of every kind, for the
// packet fuzzers to hit.
func fuzzTable(t testing.TB, eif bool) *Table {
	tb := newTable(t, func(c *Config) { c.EndpointIndependentFiltering = eif; c.MaxEntries = 64 })
	pub := func(s, target string) {
		p, err := ParsePublish(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Target = ep(target).AddrPort().Addr()
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
	frag := len(pkt) >= 20 && binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0
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
		if s.Addr != tb.ext {
			t.Fatalf("to external from %s", s)
		}
	case ToInternal:
		if !tb.isInternal(d.Addr) {
			t.Fatalf("to internal for %s", d)
		}
	}
}

func FuzzFromInternal(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s, false, false, false)
		f.Add(s, true, true, true)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, partial, fix, eif bool) {
		fuzzPacket(t, fuzzTable(t, eif), true, pkt, partial, fix)
	})
}

func FuzzFromExternal(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s, false, false, false)
		f.Add(s, true, true, true)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, partial, fix, eif bool) {
		fuzzPacket(t, fuzzTable(t, eif), false, pkt, partial, fix)
	})
}

// FuzzRoundTrip builds a valid outbound packet from the fuzzer's fields,
// translates it, answers it from outside, and checks that the answer
// reaches the sender with every checksum valid; then it sends an ICMP error
// about the translated packet and checks that too.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(17), uint16(40000), uint16(53), uint16(7), []byte("x"), false, false, uint8(0))
	f.Add(uint8(6), uint16(1), uint16(65535), uint16(0), []byte{}, true, false, uint8(28))
	f.Add(uint8(1), uint16(0), uint16(0), uint16(0xffff), []byte("ping"), false, true, uint8(255))
	f.Fuzz(func(t *testing.T, proto uint8, sport, dport, id uint16, payload []byte, partial, noCsum bool, quote uint8) {
		if len(payload) > 2000 {
			payload = payload[:2000]
		}
		tb := newTable(t, func(c *Config) { c.PortMin, c.PortMax = 30000, 30009 })
		// Take the source's own port so the mapping has to change it.
		tb.FromInternal(build(spec{proto: UDP, src: c2 + ":" + itoa(sport), dst: remote + ":1"}), false, 0)
		tb.FromInternal(build(spec{proto: TCP, src: c2 + ":" + itoa(sport), dst: remote + ":1", flags: wire.TCPFlagSYN}), false, 0)
		tb.FromInternal(build(spec{proto: ICMP, src: c2, dst: remote, icmpType: 8, id: id}), false, 0)
		s := spec{src: c1 + ":" + itoa(sport), dst: remote + ":" + itoa(dport), payload: payload, noCsum: noCsum}
		switch proto % 3 {
		case 0:
			s.proto, s.flags = TCP, wire.TCPFlagSYN
		case 1:
			s.proto = UDP
		case 2:
			s.proto, s.icmpType, s.id, s.src, s.dst = ICMP, 8, id, c1, remote
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
		sent := append([]byte(nil), pkt...)
		rs := spec{proto: s.proto, src: remote + ":" + itoa(dport), dst: m.String(), payload: payload, flags: wire.TCPFlagSYN | wire.TCPFlagACK, noCsum: noCsum}
		if s.proto == ICMP {
			rs.src, rs.dst, rs.icmpType, rs.id = remote, extIP, 0, m.Port
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
		if s.proto == ICMP {
			osrc.Port = id
			rdst.Port = rsrc.Port
		}
		if rdst != osrc {
			t.Fatalf("reply to %s, want %s", rdst, osrc)
		}
		e := icmpErr(3, 3, router, extIP, sent, int(quote))
		if len(sent) < 28 || (quote != 0 && int(quote) < 28) {
			return
		}
		r = tb.FromExternal(e, false, 3)
		if r.Action != ToInternal {
			t.Fatalf("icmp error: %v %v", r.Action, r.Reason)
		}
		if err := checkChecksums(e); err != nil {
			t.Fatalf("icmp error: %v", err)
		}
		if is, _ := hdr(inner(e)); is.Addr != osrc.Addr || (s.proto != ICMP && is.Port != osrc.Port) {
			t.Fatalf("embedded source %s, want %s", is, osrc)
		}
	})
}

func itoa(v uint16) string { return Endpoint{Port: v}.AddrPort().String()[len("0.0.0.0:"):] }

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
