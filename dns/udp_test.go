package dns

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// udpQuery builds the IPv4 datagram of a query for name from cliIP:40000
// to the gateway's port 53, with a correct UDP checksum.
func udpQuery(t testing.TB, name string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, headerLen+len(q))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8], b[9] = 64, wire.ProtoUDP
	src, dst := cliIP.As4(), gw.As4()
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum.Checksum(b[:20], 0))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:2], 40000)
	binary.BigEndian.PutUint16(u[2:4], Port)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], q)
	binary.BigEndian.PutUint16(u[6:8], checksum.Checksum(u, checksum.PseudoHeaderIPv4(src, dst, wire.ProtoUDP, uint16(len(u)))))
	return b
}

// startCapture starts s with a send function that hands every datagram to
// the returned channel.
func startCapture(t testing.TB, s *Server) chan []byte {
	t.Helper()
	ch := make(chan []byte, 16)
	if err := s.Start(func(p []byte) { ch <- append([]byte(nil), p...) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ch
}

// checkAnswer checks the IPv4 and UDP headers of an answer to udpQuery and
// returns its DNS message.
func checkAnswer(t testing.TB, p []byte) *dns.Msg {
	t.Helper()
	if len(p) < headerLen || p[0] != 0x45 || int(binary.BigEndian.Uint16(p[2:4])) != len(p) || p[9] != wire.ProtoUDP ||
		checksum.Checksum(p[:20], 0) != 0 || netip.AddrFrom4([4]byte(p[12:16])) != gw || netip.AddrFrom4([4]byte(p[16:20])) != cliIP {
		t.Fatalf("bad IPv4 header in %x", p)
	}
	u := p[20:]
	if binary.BigEndian.Uint16(u[0:2]) != Port || binary.BigEndian.Uint16(u[2:4]) != 40000 || int(binary.BigEndian.Uint16(u[4:6])) != len(u) ||
		checksum.Checksum(u, checksum.PseudoHeaderIPv4(gw.As4(), cliIP.As4(), wire.ProtoUDP, uint16(len(u)))) != 0 {
		t.Fatalf("bad UDP header or checksum in %x", u)
	}
	m := new(dns.Msg)
	if err := m.Unpack(u[8:]); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDeliverUDP(t *testing.T) {
	up := startTestUpstream(t)
	s, _ := newTestServer(t, func(c *Config) { c.Upstreams = []netip.AddrPort{up.addr}; c.Timeout = 2 * time.Second })
	out := startCapture(t, s)

	if !s.Claims(17, 53) || !s.Claims(6, 53) || s.Claims(17, 54) || s.Claims(1, 53) {
		t.Errorf("Claims: want UDP and TCP port 53 only")
	}
	// A local name: answered at once, on the caller's goroutine.
	s.Deliver(udpQuery(t, "web.tapswitch."), nil)
	select {
	case p := <-out:
		if m := checkAnswer(t, p); len(answers(m)) != 1 || answers(m)[0] != webIP.String() {
			t.Errorf("web.tapswitch: %v", m)
		}
	default:
		t.Fatal("no answer sent for a local name before Deliver returned")
	}
	// A forwarded one: later, from another goroutine.
	s.Deliver(udpQuery(t, "example.test."), nil)
	select {
	case p := <-out:
		if m := checkAnswer(t, p); len(answers(m)) != 1 || answers(m)[0] != "192.0.2.99" {
			t.Errorf("example.test: %v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer for a forwarded name")
	}
	// A bad UDP checksum, a short UDP length: dropped and counted.
	bad := udpQuery(t, "web.tapswitch.")
	bad[len(bad)-1] ^= 0xff
	short := udpQuery(t, "web.tapswitch.")
	binary.BigEndian.PutUint16(short[24:26], 7)
	before := s.Stats().Malformed
	s.Deliver(bad, nil)
	s.Deliver(short, nil)
	if got := s.Stats().Malformed - before; got != 2 || len(out) != 0 {
		t.Errorf("bad datagrams: Malformed +%d, %d answers; want +2, none", got, len(out))
	}
}

// TestUDPAnswerFitsMTU: a client's large EDNS0 buffer does not make an
// answer the gateway would have to fragment: it is truncated to the MTU.
func TestUDPAnswerFitsMTU(t *testing.T) {
	hosts := []Host{{Name: "cli", IPv4: cliIP, VLANs: []uint16{1}}}
	for i := range 200 {
		hosts = append(hosts, Host{Name: "many", IPv4: netip.AddrFrom4([4]byte{10, 90, 1, byte(i)}), VLANs: []uint16{1}})
	}
	s, _ := newTestServer(t, func(c *Config) { c.MTU = 1500 })
	s.SetHosts(hosts)
	q := new(dns.Msg)
	q.SetQuestion("many.tapswitch.", dns.TypeA)
	q.SetEdns0(65000, false)
	b, _ := q.Pack()
	out := s.handle(b, cliIP, false)
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil || len(out) > 1500-headerLen || !m.Truncated {
		t.Errorf("200 A records, EDNS0 buffer 65000: %d bytes, TC %v (%v); want at most %d and TC", len(out), m.Truncated, err, 1500-headerLen)
	}
}

var (
	gw6     = netip.MustParseAddr("fd00::1")
	webIP6  = netip.MustParseAddr("fd00::2") // testHosts' web
	subnet6 = netip.MustParsePrefix("fd00::/64")
)

// udpQuery6 builds the IPv6 packet of a query for name and qtype from
// src:40000 to the server's IPv6 port 53, with a correct UDP checksum.
func udpQuery6(t testing.TB, src netip.Addr, name string, qtype uint16) []byte {
	t.Helper()
	q := packQuery(t, 6, name, qtype, false, false, false)
	b := make([]byte, headerLen6+len(q))
	h := wire.IPv6Header{PayloadLen: uint16(wire.UDPLen + len(q)), NextHeader: wire.ProtoUDP, HopLimit: 64, Src: src.As16(), Dst: gw6.As16()}
	h.Put(b)
	n := wire.UDPLen + len(q)
	copy(b[headerLen6:], q)
	wire.PutUDP(b[wire.IPv6Len:], n, 40000, Port, checksum.PseudoHeaderIPv6(src.As16(), gw6.As16(), wire.ProtoUDP, uint32(n)))
	return b
}

// TestDeliverUDP6: with IPv6 the server answers on the gateway's IPv6
// address, from it, and the IPv6 subnet's reverse zone is local.
func TestDeliverUDP6(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.Addr6, c.Subnet6 = gw6, subnet6 })
	out := startCapture(t, s)
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"cli.tapswitch.", dns.TypeA, cliIP.String()},
		{"web.tapswitch.", dns.TypeAAAA, webIP6.String()},
		{"gateway.tapswitch.", dns.TypeAAAA, gw6.String()},
		{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, "web.tapswitch."},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.D.F.IP6.ARPA.", dns.TypePTR, "gateway.tapswitch."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Deliver(udpQuery6(t, webIP6, tc.name, tc.qtype), nil)
			var p []byte
			select {
			case p = <-out:
			default:
				t.Fatal("no answer")
			}
			ip, err := wire.ParseIPv6(p)
			if err != nil || ip.NextHeader() != wire.ProtoUDP || ip.Src() != gw6.As16() || ip.Dst() != webIP6.As16() {
				t.Fatalf("answer %x: not UDP from %s to %s (%v)", p, gw6, webIP6, err)
			}
			u := wire.UDP(ip.Payload())
			if u.SrcPort() != Port || u.DstPort() != 40000 || checksum.Checksum(u, ip.PseudoSum(wire.ProtoUDP, len(u))) != 0 {
				t.Fatalf("bad UDP header or checksum in %x", u)
			}
			m := new(dns.Msg)
			if err := m.Unpack(u.Payload()); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(answers(m), " "); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// An address of the subnet no port has: NXDOMAIN, with the SOA.
	if m := ask(t, s, webIP6, "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, false); m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
		t.Errorf("PTR of an unknown address: %v, want NXDOMAIN and the SOA", m)
	}
	// A zero UDP checksum is invalid over IPv6.
	q := udpQuery6(t, webIP6, "web.tapswitch.", dns.TypeA)
	q[wire.IPv6Len+6], q[wire.IPv6Len+7] = 0, 0
	before := s.Stats().Malformed
	s.Deliver(q, nil)
	if got := s.Stats().Malformed - before; got != 1 || len(out) != 0 {
		t.Errorf("zero UDP checksum: Malformed +%d, %d answers; want +1, none", got, len(out))
	}
}

func TestReverseAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" for not a reverse name
	}{
		{"2.0.90.10.in-addr.arpa.", "10.90.0.2"},
		{"0.90.10.in-addr.arpa.", ""},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", "4321:0:1:2:3:4:567:89ab"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.ip6.arpa.", ""},   // 31 nibbles
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.g.ip6.arpa.", ""}, // not hex
		{"ba.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", ""},  // a two-nibble label
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "fd00::1"},
	} {
		a, ok := reverseAddr(tc.in)
		if got := ""; ok {
			got = a.String()
			if got != tc.want {
				t.Errorf("reverseAddr(%q) = %s, want %q", tc.in, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("reverseAddr(%q): not parsed, want %s", tc.in, tc.want)
		}
	}
}
