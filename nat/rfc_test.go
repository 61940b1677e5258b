package nat

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

func udp(src, dst string) []byte {
	return build(spec{proto: UDP, src: src, dst: dst, payload: []byte("hello, world")})
}

func tcp(src, dst string, flags uint8) []byte {
	return build(spec{proto: TCP, src: src, dst: dst, flags: flags, payload: []byte("GET / HTTP/1.0\r\n\r\n")})
}

func echo(typ uint8, src, dst string, id uint16) []byte {
	return build(spec{proto: ICMP, src: src, dst: dst, icmpType: typ, id: id, payload: []byte("0123456789abcdef")})
}

// out sends a packet from a container and returns its translated source,
// which must be the external address of its family.
func out(t *testing.T, tb *Table, pkt []byte, now int64) Endpoint {
	t.Helper()
	r := tb.FromInternal(pkt, false, now)
	want(t, "outbound", r, ToExternal, pkt)
	s, _ := hdr(pkt)
	ext := ep(extIP).Addr
	if s.Addr.Is6() {
		ext = ep(extIP6).Addr
	}
	if s.Addr != ext {
		t.Fatalf("outbound source %s, want the external address %s", s, ext)
	}
	return s
}

// TestRFC4787_REQ1_EndpointIndependentMapping: one internal endpoint keeps its
// external port whatever the destination (also RFC 5382 REQ-1 for TCP).
func TestRFC4787_REQ1_EndpointIndependentMapping(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			tb := newTable(t, nil)
			mk := func(dst string) []byte {
				if proto == TCP {
					return tcp(c1+":40000", dst, wire.TCPFlagSYN)
				}
				return udp(c1+":40000", dst)
			}
			a := out(t, tb, mk(remote+":53"), 0)
			b := out(t, tb, mk(remote2+":53"), 0)
			c := out(t, tb, mk(remote+":54"), 0)
			if a != b || a != c {
				t.Fatalf("mappings %s, %s, %s differ", a, b, c)
			}
			if got := tb.Stats().Mappings; got != 1 {
				t.Errorf("mappings = %d, want 1", got)
			}
		})
	}
}

// TestRFC5382_REQ1_TCPEndpointIndependentMapping: the TCP case by its own name.
func TestRFC5382_REQ1_TCPEndpointIndependentMapping(t *testing.T) {
	tb := newTable(t, nil)
	a := out(t, tb, tcp(c1+":5555", remote+":80", wire.TCPFlagSYN), 0)
	b := out(t, tb, tcp(c1+":5555", remote2+":443", wire.TCPFlagSYN), 0)
	if a != b {
		t.Fatalf("TCP mappings %s and %s differ", a, b)
	}
}

// TestRFC4787_REQ3_PortPreservation: the source port is kept when free, else
// one from the range, below 1024 only when the source was.
func TestRFC4787_REQ3_PortPreservation(t *testing.T) {
	tests := []struct {
		name         string
		min, max     uint16
		first, other string // two containers using the same source port
		check        func(Endpoint) bool
	}{
		{"kept then range", 20000, 20010, c1 + ":40000", c2 + ":40000",
			func(e Endpoint) bool { return e.Port >= 20000 && e.Port <= 20010 }},
		{"privileged stays privileged", 1, 65535, c1 + ":123", c2 + ":123",
			func(e Endpoint) bool { return e.Port >= 1 && e.Port < 1024 && e.Port != 123 }},
		{"unprivileged stays unprivileged", 1, 65535, c1 + ":50000", c2 + ":50000",
			func(e Endpoint) bool { return e.Port >= 1024 && e.Port != 50000 }},
		{"privileged with default range", 0, 0, c1 + ":123", c2 + ":123",
			func(e Endpoint) bool { return e.Port >= 1024 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(t, func(c *Config) { c.PortMin, c.PortMax = tt.min, tt.max })
			a := out(t, tb, udp(tt.first, remote+":53"), 0)
			if a.Port != ep(tt.first).Port {
				t.Fatalf("first mapping %s, want the port kept", a)
			}
			b := out(t, tb, udp(tt.other, remote+":53"), 0)
			if !tt.check(b) {
				t.Fatalf("second mapping %s out of the expected range", b)
			}
		})
	}
}

// TestRFC4787_REQ4_PortParity: a port from the range keeps the source
// port's parity while one is free.
func TestRFC4787_REQ4_PortParity(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.PortMin, c.PortMax = 20000, 20003 })
	out(t, tb, udp(c1+":40000", remote+":1"), 0)
	out(t, tb, udp(c1+":40001", remote+":1"), 0)
	for i, src := range []string{c2 + ":40000", c2 + ":40001", "10.90.0.4:40001", "10.90.0.4:40000"} {
		m := out(t, tb, udp(src, remote+":1"), 0)
		if m.Port < 20000 || m.Port > 20003 || m.Port%2 != ep(src).Port%2 {
			t.Fatalf("mapping %d of %s: port %d, want one of the same parity in 20000-20003", i, src, m.Port)
		}
	}
	// The range is full: the next one is refused, whatever its parity.
	wantDrop(t, "full range", tb.FromInternal(udp("10.90.0.5:40000", remote+":1"), false, 0), DropNoPort)
}

// TestRFC4787_REQ3a_NoPortOverloading: an external port belongs to one internal
// endpoint; when the range is exhausted new endpoints are refused.
func TestRFC4787_REQ3a_NoPortOverloading(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.PortMin, c.PortMax = 30000, 30001 })
	seen := map[uint16]bool{}
	for i, src := range []string{c1 + ":30000", c2 + ":30000", "10.90.0.4:30000"} {
		pkt := udp(src, remote+":53")
		r := tb.FromInternal(pkt, false, 0)
		if i == 2 {
			wantDrop(t, "third endpoint", r, DropNoPort)
			break
		}
		want(t, src, r, ToExternal, pkt)
		s, _ := hdr(pkt)
		if seen[s.Port] {
			t.Fatalf("port %d given twice", s.Port)
		}
		seen[s.Port] = true
	}
	if got := tb.Stats().Drops[DropNoPort]; got != 1 {
		t.Errorf("no-port drops = %d, want 1", got)
	}
}

// TestRFC4787_REQ8_Filtering: address and port dependent by default,
// endpoint independent with the option; for IPv4 and, on a dual-stack
// table, for NAT66.
func TestRFC4787_REQ8_Filtering(t *testing.T) {
	for _, fam := range []struct {
		name                         string
		newTable                     func(testing.TB, func(*Config)) *Table
		client, remote, remote2, ext string
	}{
		{"ipv4", newTable, c1, remote, remote2, extIP},
		{"ipv6", newTable6, c16, remote6, remote26, extIP6},
	} {
		for _, eif := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/eif=%v", fam.name, eif), func(t *testing.T) {
				tb := fam.newTable(t, func(c *Config) { c.EndpointIndependentFiltering = eif })
				client := ap(fam.client, 40000)
				m := out(t, tb, udp(client, ap(fam.remote, 3478)), 0)
				// The reply from the destination always passes.
				pkt := udp(ap(fam.remote, 3478), m.String())
				want(t, "reply", tb.FromExternal(pkt, false, sec), ToInternal, pkt)
				wantHdr(t, "reply", pkt, ap(fam.remote, 3478), client)
				for _, src := range []string{ap(fam.remote, 3479), ap(fam.remote2, 3478)} {
					pkt := udp(src, m.String())
					r := tb.FromExternal(pkt, false, sec)
					if !eif {
						wantDrop(t, src, r, DropFiltered)
						continue
					}
					want(t, src, r, ToInternal, pkt)
					wantHdr(t, src, pkt, src, client)
					// The container's answer goes out from the same mapping.
					back := udp(client, src)
					want(t, "answer", tb.FromInternal(back, false, sec), ToExternal, back)
					wantHdr(t, "answer", back, m.String(), src)
				}
				// No mapping at all: nothing passes.
				pkt = udp(ap(fam.remote, 3478), ap(fam.ext, 40001))
				wantDrop(t, "unmapped port", tb.FromExternal(pkt, false, sec), DropNoFlow)
			})
		}
	}
}

// TestRFC4787_REQ5_UDPTimeouts: 30 s unreplied, 120 s after traffic both
// ways; traffic in either direction refreshes (REQ-6).
func TestRFC4787_REQ5_UDPTimeouts(t *testing.T) {
	tb := newTable(t, nil)
	out(t, tb, udp(c1+":1000", remote+":53"), 0)
	if n := tb.Expire(30 * sec); n != 0 {
		t.Fatalf("expired %d at 30 s, want 0", n)
	}
	if n := tb.Expire(31 * sec); n != 1 {
		t.Fatalf("unreplied: expired %d at 31 s, want 1", n)
	}
	m := out(t, tb, udp(c1+":1000", remote+":53"), 100*sec)
	pkt := udp(remote+":53", m.String())
	want(t, "reply", tb.FromExternal(pkt, false, 110*sec), ToInternal, pkt)
	if n := tb.Expire(110*sec + 120*sec); n != 0 {
		t.Fatalf("replied: expired %d at 120 s idle, want 0", n)
	}
	// An inbound packet refreshes.
	pkt = udp(remote+":53", m.String())
	want(t, "inbound refresh", tb.FromExternal(pkt, false, 200*sec), ToInternal, pkt)
	if n := tb.Expire(200*sec + 120*sec); n != 0 {
		t.Fatalf("expired %d right after an inbound refresh", n)
	}
	if n := tb.Expire(200*sec + 121*sec); n != 1 {
		t.Fatalf("replied: expired %d after 121 s idle, want 1", n)
	}
	if s := tb.Stats(); s.Expired != 2 || s.EntriesTotal() != 0 || s.Mappings != 0 {
		t.Errorf("stats after expiry: %+v", s)
	}
}

// TestRFC5382_REQ5_TCPTimeouts: established 2 h 4 min, transitory 4 min
// (partially open, FIN or RST seen).
func TestRFC5382_REQ5_TCPTimeouts(t *testing.T) {
	const est, trans = 124 * 60, 4 * 60
	tests := []struct {
		name  string
		after []uint8 // packets after the SYN: even index from outside, odd from the container
		tmo   int64
		state string
	}{
		{"syn sent", nil, trans, "SYN_SENT"},
		{"syn received", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK}, trans, "SYN_RECV"},
		{"established", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK}, est, "ESTABLISHED"},
		{"fin from outside", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK, wire.TCPFlagFIN | wire.TCPFlagACK}, trans, "CLOSE_WAIT"},
		{"fin both ways", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK, wire.TCPFlagFIN | wire.TCPFlagACK, wire.TCPFlagFIN | wire.TCPFlagACK}, trans, "TIME_WAIT"},
		{"rst", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK, wire.TCPFlagRST}, trans, "CLOSE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(t, nil)
			m := out(t, tb, tcp(c1+":40000", remote+":80", wire.TCPFlagSYN), 0)
			for i, fl := range tt.after {
				if i%2 == 0 {
					pkt := tcp(remote+":80", m.String(), fl)
					want(t, "inbound", tb.FromExternal(pkt, false, 0), ToInternal, pkt)
				} else {
					pkt := tcp(c1+":40000", remote+":80", fl)
					want(t, "outbound", tb.FromInternal(pkt, false, 0), ToExternal, pkt)
				}
			}
			e := tb.Entries(0)
			if len(e) != 1 || e[0].State != tt.state || e[0].Timeout != time.Duration(tt.tmo)*time.Second {
				t.Fatalf("entries %v, want one in %s with %d s left", e, tt.state, tt.tmo)
			}
			if n := tb.Expire(tt.tmo * sec); n != 0 {
				t.Fatalf("expired at exactly the timeout")
			}
			if n := tb.Expire(tt.tmo*sec + 1); n != 1 {
				t.Fatalf("not expired after the timeout")
			}
		})
	}
}

// TestRFC5382_REQ5_TCPReopen: a SYN reusing the tuple of a closed
// connection starts its state over, so the new connection gets the
// established timeout again.
func TestRFC5382_REQ5_TCPReopen(t *testing.T) {
	tb := newTable(t, nil)
	var m Endpoint
	handshake := func(now int64) {
		m = out(t, tb, tcp(c1+":40000", remote+":80", wire.TCPFlagSYN), now)
		for i, fl := range []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK} {
			if i%2 == 0 {
				tb.FromExternal(tcp(remote+":80", m.String(), fl), false, now)
			} else {
				tb.FromInternal(tcp(c1+":40000", remote+":80", fl), false, now)
			}
		}
	}
	handshake(0)
	tb.FromInternal(tcp(c1+":40000", remote+":80", wire.TCPFlagFIN|wire.TCPFlagACK), false, 0)
	tb.FromExternal(tcp(remote+":80", m.String(), wire.TCPFlagFIN|wire.TCPFlagACK), false, 0)
	if e := tb.Entries(0); e[0].State != "TIME_WAIT" {
		t.Fatalf("state %s, want TIME_WAIT", e[0].State)
	}
	handshake(sec)
	if e := tb.Entries(sec); len(e) != 1 || e[0].State != "ESTABLISHED" || e[0].Timeout != DefaultTCPEstablished {
		t.Fatalf("after reopening: %v", e)
	}
}

// TestRFC5382_TCPNeedsSyn: a TCP packet of no connection does not open one.
func TestRFC5382_TCPNeedsSyn(t *testing.T) {
	tb := newTable(t, nil)
	for _, fl := range []uint8{wire.TCPFlagACK, wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagRST, wire.TCPFlagFIN, wire.TCPFlagSYN | wire.TCPFlagRST} {
		wantDrop(t, "flags", tb.FromInternal(tcp(c1+":1", remote+":80", fl), false, 0), DropTCPNoSyn)
	}
}

// TestRFC5508_REQ1_ICMPQuery: echo identifiers are mapped like ports and the
// query lives 60 s; ICMPv6 echo through NAT66 the same.
func TestRFC5508_REQ1_ICMPQuery(t *testing.T) {
	for _, f := range []struct {
		name           string
		icmp           Proto
		a, b, rem, ext string
		mk             func(uint8, string, string, uint16) []byte
	}{
		{"icmp", ICMP, c1, c2, remote, extIP, echo},
		{"icmpv6", ICMPv6, c16, c26, remote6, extIP6, echo6},
	} {
		t.Run(f.name, func(t *testing.T) {
			tb := newTable6(t, nil)
			a := out(t, tb, f.mk(echoRequest(f.icmp), f.a, f.rem, 7), 0)
			b := out(t, tb, f.mk(echoRequest(f.icmp), f.b, f.rem, 7), 0)
			if a.Port != 7 || b.Port == 7 {
				t.Fatalf("identifiers %d and %d: want 7 kept for the first, another for the second", a.Port, b.Port)
			}
			for _, tc := range []struct {
				id uint16
				to string
			}{{a.Port, f.a}, {b.Port, f.b}} {
				pkt := f.mk(echoReply(f.icmp), f.rem, f.ext, tc.id)
				want(t, "echo reply", tb.FromExternal(pkt, false, 10*sec), ToInternal, pkt)
				wantHdr(t, "echo reply", pkt, ap(f.rem, 7), tc.to)
			}
			// An echo request from outside is not for the containers.
			wantDrop(t, "echo from outside", tb.FromExternal(f.mk(echoRequest(f.icmp), f.rem, f.ext, a.Port), false, 0), DropICMPType)
			if e := tb.Entries(10 * sec); len(e) != 2 || e[0].Proto != f.icmp {
				t.Fatalf("entries %v, want 2 of %v", e, f.icmp)
			}
			if n := tb.Expire(70 * sec); n != 0 {
				t.Fatalf("expired %d within 60 s of the reply", n)
			}
			if n := tb.Expire(71 * sec); n != 2 {
				t.Fatalf("expired %d after 60 s, want 2", n)
			}
		})
	}
}

// TestRFC5508_REQ3_ErrorFromOutside: errors about outbound flows, from the
// destination or a router, quoting 8 bytes or the whole packet; the same
// for ICMPv6 errors through NAT66 (destination unreachable, packet too big,
// time exceeded).
func TestRFC5508_REQ3_ErrorFromOutside(t *testing.T) {
	tests := []struct {
		name      string
		orig      []byte
		origSrc   string
		from      string
		typ, code uint8
		n         int
	}{
		{"udp port unreachable", udp(c1+":40000", remote+":9"), c1 + ":40000", remote, 3, 3, 0},
		{"udp time exceeded from router", udp(c1+":40001", remote+":9"), c1 + ":40001", router, 11, 0, 28},
		{"tcp frag needed 8 bytes", tcp(c1+":40002", remote+":80", wire.TCPFlagSYN), c1 + ":40002", router, 3, 4, 28},
		{"tcp unreachable whole", tcp(c1+":40003", remote+":80", wire.TCPFlagSYN), c1 + ":40003", remote, 3, 1, 0},
		{"echo time exceeded", echo(wire.ICMPEchoRequest, c1, remote, 99), c1 + ":99", router, 11, 0, 0},
		{"ipv6 udp port unreachable", udp(ap(c16, 40000), ap(remote6, 9)), ap(c16, 40000), remote6, wire.ICMPv6Unreachable, 4, 0},
		{"ipv6 udp time exceeded from router", udp(ap(c16, 40001), ap(remote6, 9)), ap(c16, 40001), router6, wire.ICMPv6TimeExceeded, 0, 48},
		{"ipv6 tcp packet too big 8 bytes", tcp(ap(c16, 40002), ap(remote6, 80), wire.TCPFlagSYN), ap(c16, 40002), router6, wire.ICMPv6PacketTooBig, 0, 48},
		{"ipv6 tcp packet too big whole", tcp(ap(c16, 40003), ap(remote6, 80), wire.TCPFlagSYN), ap(c16, 40003), router6, wire.ICMPv6PacketTooBig, 0, 0},
		{"ipv6 echo unreachable", echo6(wire.ICMPv6EchoRequest, c16, remote6, 99), ap(c16, 99), router6, wire.ICMPv6Unreachable, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable6(t, nil)
			pkt := tt.orig
			tb.FromInternal(pkt, false, 0)
			sent := append([]byte(nil), pkt...)
			// The family's addresses and where the ICMP header is.
			ext, rem, c, at := extIP, remote, c1, 20
			if ep(tt.origSrc).Addr.Is6() {
				ext, rem, c, at = extIP6, remote6, c16, 40
			}
			e := icmpErr(tt.typ, tt.code, tt.from, ext, sent, tt.n)
			if at == 40 && tt.typ == wire.ICMPv6PacketTooBig {
				put16(e[at+6:], 1280) // the MTU, in the rest of the header
				fixChecksums(e, false)
			}
			rest := get16(e[at+6:])
			want(t, "error", tb.FromExternal(e, false, sec), ToInternal, e)
			s, d := hdr(e)
			if s.Addr != ep(tt.from).Addr || d.Addr != ep(c).Addr {
				t.Fatalf("outer %s -> %s, want %s -> %s", s, d, tt.from, c)
			}
			is, id := hdr(inner(e))
			if is != ep(tt.origSrc) || id.Addr != ep(rem).Addr {
				t.Fatalf("embedded %s -> %s, want %s -> %s", is, id, tt.origSrc, rem)
			}
			if e[at] != tt.typ || e[at+1] != tt.code || get16(e[at+6:]) != rest {
				t.Fatalf("type/code/rest changed to %d/%d/%d", e[at], e[at+1], get16(e[at+6:]))
			}
			if tb.Stats().ICMPErrors != 1 {
				t.Errorf("icmp errors not counted")
			}
		})
	}
}

// TestRFC5508_REQ3_BadChecksum: an error with a wrong ICMP checksum is
// dropped, as is one quoting nothing tracked.
func TestRFC5508_REQ3_BadChecksum(t *testing.T) {
	tb := newTable(t, nil)
	pkt := udp(c1+":40000", remote+":9")
	tb.FromInternal(pkt, false, 0)
	e := icmpErr(3, 3, remote, extIP, pkt, 0)
	e[len(e)-1] ^= 0xff
	wantDrop(t, "bad checksum", tb.FromExternal(e, false, 0), DropBadChecksum)
	other := udp(extIP+":40001", remote+":9")
	e = icmpErr(3, 3, remote, extIP, other, 0)
	wantDrop(t, "untracked", tb.FromExternal(e, false, 0), DropICMPErrorNoFlow)
	// An error about an error is not translated.
	e2 := icmpErr(3, 3, remote, extIP, icmpErr(3, 3, extIP, remote, pkt, 0), 0)
	wantDrop(t, "error about error", tb.FromExternal(e2, false, 0), DropICMPErrorNoFlow)
}

// TestRFC5508_REQ4_ErrorFromInside: a container's error about a connection
// from outside leaves from the external address, quoting what the client
// sent.
func TestRFC5508_REQ4_ErrorFromInside(t *testing.T) {
	tb := newTable(t, nil)
	mustPublish(t, tb, "8053:53/udp", c1)
	pkt := udp(remote+":5000", extIP+":8053")
	want(t, "to published", tb.FromExternal(pkt, false, 0), ToInternal, pkt)
	// c1 has nothing on port 53: port unreachable.
	e := icmpErr(3, 3, c1, remote, pkt, 0)
	want(t, "error", tb.FromInternal(e, false, sec), ToExternal, e)
	wantHdr(t, "outer", e, extIP, remote)
	wantHdr(t, "embedded", inner(e), remote+":5000", extIP+":8053")

	// And about a reply to an outbound flow (a late answer to a closed port).
	m := out(t, tb, udp(c1+":41000", remote+":53"), 0)
	in := udp(remote+":53", m.String())
	want(t, "reply", tb.FromExternal(in, false, 0), ToInternal, in)
	e = icmpErr(3, 3, c1, remote, in, 0)
	want(t, "error on reply", tb.FromInternal(e, false, sec), ToExternal, e)
	wantHdr(t, "outer", e, extIP, remote)
	wantHdr(t, "embedded", inner(e), remote+":53", m.String())
}

func mustPublish(t *testing.T, tb *Table, s, target string) Publish {
	t.Helper()
	p, err := ParsePublish(s)
	if err != nil {
		t.Fatal(err)
	}
	p.Target = netip.MustParseAddr(target)
	p.Owner = "c"
	if err := tb.AddPublish(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRFC4787_REQ9_Hairpin (and RFC 5382 REQ-8 for TCP): a container reaches
// another through a published port of the external address; the target sees
// the sender's external endpoint and its replies come back translated.
func TestRFC4787_REQ9_Hairpin(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		t.Run(proto.String(), func(t *testing.T) {
			tb := newTable(t, nil)
			mustPublish(t, tb, "8080:80/"+proto.String(), c2)
			mk := func(src, dst string, fl uint8) []byte {
				if proto == TCP {
					return tcp(src, dst, fl)
				}
				return udp(src, dst)
			}
			// c1's mapping, from an earlier outbound flow.
			m := out(t, tb, mk(c1+":45000", remote+":80", wire.TCPFlagSYN), 0)
			pkt := mk(c1+":45000", extIP+":8080", wire.TCPFlagSYN)
			want(t, "hairpin", tb.FromInternal(pkt, false, 0), ToInternal, pkt)
			wantHdr(t, "hairpin", pkt, m.String(), c2+":80")
			back := mk(c2+":80", m.String(), wire.TCPFlagSYN|wire.TCPFlagACK)
			want(t, "hairpin reply", tb.FromInternal(back, false, 0), ToInternal, back)
			wantHdr(t, "hairpin reply", back, extIP+":8080", c1+":45000")
		})
	}
}

// TestRFC5382_REQ8_HairpinTCP names the TCP hairpin requirement.
func TestRFC5382_REQ8_HairpinTCP(t *testing.T) {
	tb := newTable(t, nil)
	mustPublish(t, tb, "8443:443", c2)
	pkt := tcp(c1+":45001", extIP+":8443", wire.TCPFlagSYN)
	want(t, "hairpin", tb.FromInternal(pkt, false, 0), ToInternal, pkt)
	wantHdr(t, "hairpin", pkt, extIP+":45001", c2+":443")
	// Nothing published there: dropped.
	wantDrop(t, "unpublished", tb.FromInternal(tcp(c1+":45002", extIP+":9999", wire.TCPFlagSYN), false, 0), DropNoFlow)
}

// TestRFC5508_REQ7_HairpinError: the target's ICMP error on a hairpinned
// flow reaches the sender from the external address.
func TestRFC5508_REQ7_HairpinError(t *testing.T) {
	tb := newTable(t, nil)
	mustPublish(t, tb, "8053:53/udp", c2)
	pkt := udp(c1+":45000", extIP+":8053")
	want(t, "hairpin", tb.FromInternal(pkt, false, 0), ToInternal, pkt)
	e := icmpErr(3, 3, c2, extIP, pkt, 0)
	want(t, "error", tb.FromInternal(e, false, 0), ToInternal, e)
	wantHdr(t, "outer", e, extIP, c1)
	wantHdr(t, "embedded", inner(e), c1+":45000", extIP+":8053")
}

// TestRFC4787_REQ9_HairpinDynamicMapping: with endpoint-independent
// filtering, containers reach each other's mappings through the external
// address.
func TestRFC4787_REQ9_HairpinDynamicMapping(t *testing.T) {
	for _, eif := range []bool{false, true} {
		tb := newTable(t, func(c *Config) { c.EndpointIndependentFiltering = eif })
		m2 := out(t, tb, udp(c2+":6000", remote+":3478"), 0)
		m1 := out(t, tb, udp(c1+":6001", remote+":3478"), 0)
		pkt := udp(c1+":6001", m2.String())
		r := tb.FromInternal(pkt, false, 0)
		if !eif {
			wantDrop(t, "apdf hairpin", r, DropFiltered)
			continue
		}
		want(t, "eif hairpin", r, ToInternal, pkt)
		wantHdr(t, "eif hairpin", pkt, m1.String(), c2+":6000")
		back := udp(c2+":6000", m1.String())
		want(t, "back", tb.FromInternal(back, false, 0), ToInternal, back)
		wantHdr(t, "back", back, m2.String(), c1+":6001")
	}
}
