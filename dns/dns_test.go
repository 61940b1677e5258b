package dns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	gw     = netip.MustParseAddr("10.90.0.1")
	subnet = netip.MustParsePrefix("10.90.0.0/16")
	webIP  = netip.MustParseAddr("10.90.0.2")
	cliIP  = netip.MustParseAddr("10.90.0.3")
	v20IP  = netip.MustParseAddr("10.90.0.4")
	trIP   = netip.MustParseAddr("10.90.0.5")
)

var testHosts = []Host{
	{Name: "web", Aliases: []string{"www", "Shared"}, IPv4: webIP, IPv6: netip.MustParseAddr("fd00::2"), VLANs: []uint16{1}},
	{Name: "cli", IPv4: cliIP, VLANs: []uint16{1}},
	{Name: "v20", Aliases: []string{"shared"}, IPv4: v20IP, VLANs: []uint16{20}},
	{Name: "tr", IPv4: trIP, VLANs: []uint16{1, 20}},
}

// testUpstream is a DNS server on loopback answering every A query with
// 192.0.2.99 (TTL 60) and everything else NXDOMAIN with an SOA.
type testUpstream struct {
	addr    netip.AddrPort
	queries atomic.Int64
}

func startTestUpstream(t testing.TB) *testUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 99)}}
		} else {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300}, Ns: "ns.test.", Mbox: "h.test.", Minttl: 10}}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return u
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestServer(t testing.TB, mod func(*Config)) (*Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := Config{Addr: gw, Subnet: subnet, HostLoopback: true, Now: clk.now, Timeout: 200 * time.Millisecond,
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHosts(testHosts)
	return s, clk
}

// ask sends a query for name and qtype from client and returns the answer.
func ask(t testing.TB, s *Server, client netip.Addr, name string, qtype uint16, tcp bool) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := s.handle(b, client, tcp)
	if out == nil {
		t.Fatalf("%s %s: dropped", name, dns.TypeToString[qtype])
	}
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("%s: answer does not parse: %v", name, err)
	}
	if m.Id != q.Id || !m.Response {
		t.Fatalf("%s: answer id %d response %v, want %d true", name, m.Id, m.Response, q.Id)
	}
	return m
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	return out
}

func TestLocalNames(t *testing.T) {
	s, _ := newTestServer(t, nil)
	for _, tc := range []struct {
		name   string
		client netip.Addr
		q      string
		qtype  uint16
		rcode  int
		want   string
	}{
		{"name", cliIP, "web.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2"},
		{"case", cliIP, "WEB.TapSwitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2"},
		{"alias", cliIP, "www.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2"},
		{"bare", cliIP, "web.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2"},
		{"aaaa", cliIP, "web.tapswitch.", dns.TypeAAAA, dns.RcodeSuccess, "fd00::2"},
		{"nodata", cliIP, "cli.tapswitch.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"ptr", cliIP, "2.0.90.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "web.tapswitch."},
		{"ptr gateway", cliIP, "1.0.90.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "gateway.tapswitch."},
		{"ptr unknown", cliIP, "9.9.90.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, ""},
		{"nxdomain", cliIP, "nope.tapswitch.", dns.TypeA, dns.RcodeNameError, ""},
		{"gateway", cliIP, "gateway.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.1"},
		{"host loopback", cliIP, "host.containers.internal.", dns.TypeA, dns.RcodeSuccess, "10.90.0.1"},
		{"host loopback 2", cliIP, "host.tapswitch.internal.", dns.TypeA, dns.RcodeSuccess, "10.90.0.1"},
		{"other vlan", cliIP, "v20.tapswitch.", dns.TypeA, dns.RcodeNameError, ""},
		{"other vlan ptr", cliIP, "4.0.90.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, ""},
		{"trunk sees both", trIP, "v20.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.4"},
		{"shared alias, one vlan", cliIP, "shared.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2"},
		{"shared alias, both", trIP, "shared.tapswitch.", dns.TypeA, dns.RcodeSuccess, "10.90.0.2 10.90.0.4"},
		{"not a port", netip.MustParseAddr("10.90.9.9"), "web.tapswitch.", dns.TypeA, dns.RcodeNameError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ask(t, s, tc.client, tc.q, tc.qtype, false)
			if m.Rcode != tc.rcode || strings.Join(answers(m), " ") != tc.want {
				t.Errorf("got %s %q, want %s %q", dns.RcodeToString[m.Rcode], answers(m), dns.RcodeToString[tc.rcode], tc.want)
			}
			if len(m.Answer) == 0 && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("negative answer without the zone's SOA: %v", m.Ns)
			}
			if len(m.Answer) > 0 && m.Answer[0].Header().Name != tc.q {
				t.Errorf("answer named %q, want the question's %q", m.Answer[0].Header().Name, tc.q)
			}
		})
	}
	// Names follow SetHosts at once.
	s.SetHosts(testHosts[1:])
	if m := ask(t, s, cliIP, "web.tapswitch.", dns.TypeA, false); m.Rcode != dns.RcodeNameError {
		t.Errorf("after web left: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}

func TestIsolate(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.Isolate = true })
	if m := ask(t, s, cliIP, "cli.tapswitch.", dns.TypeA, false); strings.Join(answers(m), "") != cliIP.String() {
		t.Errorf("own name under isolation: %v, want %s", answers(m), cliIP)
	}
	if m := ask(t, s, cliIP, "web.tapswitch.", dns.TypeA, false); m.Rcode != dns.RcodeNameError {
		t.Errorf("another's name under isolation: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}

func TestMalformed(t *testing.T) {
	s, _ := newTestServer(t, nil)
	two := new(dns.Msg)
	two.Question = []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	twoB, _ := two.Pack()
	q := new(dns.Msg)
	q.SetQuestion("web.tapswitch.", dns.TypeA)
	full, _ := q.Pack()
	resp := new(dns.Msg)
	resp.SetQuestion("web.tapswitch.", dns.TypeA)
	resp.Response = true
	respB, _ := resp.Pack()
	for _, tc := range []struct {
		name string
		in   []byte
		want int // rcode, -1 dropped
	}{
		{"empty", nil, -1},
		{"short header", full[:5], -1},
		{"truncated question", full[:len(full)-3], dns.RcodeFormatError},
		{"two questions", twoB, dns.RcodeFormatError},
		{"a response", respB, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := s.handle(tc.in, cliIP, false)
			if tc.want == -1 {
				if out != nil {
					t.Errorf("answered %x, want dropped", out)
				}
				return
			}
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil || m.Rcode != tc.want {
				t.Errorf("answer %v (%v), want rcode %d", m, err, tc.want)
			}
		})
	}
	if st := s.Stats(); st.Malformed != 5 {
		t.Errorf("Malformed = %d, want 5", st.Malformed)
	}
}

func TestTruncateUDP(t *testing.T) {
	hosts := []Host{{Name: "cli", IPv4: cliIP, VLANs: []uint16{1}}}
	for i := range 60 {
		hosts = append(hosts, Host{Name: "many", IPv4: netip.AddrFrom4([4]byte{10, 90, 1, byte(i)}), VLANs: []uint16{1}})
	}
	s, _ := newTestServer(t, nil)
	s.SetHosts(hosts)
	m := ask(t, s, cliIP, "many.tapswitch.", dns.TypeA, false)
	m.Compress = true // as it was sent
	if !m.Truncated || m.Len() > dns.MinMsgSize {
		t.Errorf("60 A records over UDP without EDNS0: TC %v, %d bytes; want TC and at most 512", m.Truncated, m.Len())
	}
	if m := ask(t, s, cliIP, "many.tapswitch.", dns.TypeA, true); m.Truncated || len(m.Answer) != 60 {
		t.Errorf("over TCP: TC %v, %d answers; want all 60", m.Truncated, len(m.Answer))
	}
}

func TestForwardCache(t *testing.T) {
	up := startTestUpstream(t)
	s, clk := newTestServer(t, func(c *Config) { c.Upstreams = []netip.AddrPort{up.addr}; c.Timeout = 2 * time.Second })
	m := ask(t, s, cliIP, "example.test.", dns.TypeA, false)
	if strings.Join(answers(m), "") != "192.0.2.99" || m.Answer[0].Header().Ttl != 60 {
		t.Fatalf("forwarded: %v", m)
	}
	clk.t = clk.t.Add(25 * time.Second)
	m = ask(t, s, cliIP, "EXAMPLE.test.", dns.TypeA, false)
	if got := m.Answer[0].Header().Ttl; got != 35 || up.queries.Load() != 1 {
		t.Errorf("cached after 25 s: TTL %d, upstream asked %d times; want 35, once", got, up.queries.Load())
	}
	if m.Question[0].Name != "EXAMPLE.test." {
		t.Errorf("question %q, want the client's spelling", m.Question[0].Name)
	}
	clk.t = clk.t.Add(35 * time.Second)
	ask(t, s, cliIP, "example.test.", dns.TypeA, false)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("after the TTL: upstream asked %d times, want 2", n)
	}
	// Negative: min(SOA TTL 300, minimum 10) = 10 s (RFC 2308 5).
	ask(t, s, cliIP, "gone.test.", dns.TypeTXT, false)
	clk.t = clk.t.Add(9 * time.Second)
	if m := ask(t, s, cliIP, "gone.test.", dns.TypeTXT, false); m.Rcode != dns.RcodeNameError || up.queries.Load() != 3 {
		t.Errorf("negative within 10 s: %s, upstream %d; want NXDOMAIN from the cache, 3", dns.RcodeToString[m.Rcode], up.queries.Load())
	}
	clk.t = clk.t.Add(time.Second)
	ask(t, s, cliIP, "gone.test.", dns.TypeTXT, false)
	if n := up.queries.Load(); n != 4 {
		t.Errorf("negative after 10 s: upstream asked %d times, want 4", n)
	}
	st := s.Stats()
	if st.CacheHits != 2 || st.CacheMisses != 4 || st.Upstream != 4 {
		t.Errorf("stats %+v: want 2 hits, 4 misses, 4 upstream queries", st)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	// A socket that never answers, on loopback.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, _ := newTestServer(t, func(c *Config) {
		c.Upstreams = []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}
		c.Now = nil
	})
	if m := ask(t, s, cliIP, "example.test.", dns.TypeA, false); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("silent upstream: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
}

func TestRateLimit(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.Rate = 3 })
	q := new(dns.Msg)
	q.SetQuestion("web.tapswitch.", dns.TypeA)
	b, _ := q.Pack()
	answered := 0
	for range 10 {
		if s.handle(b, cliIP, false) != nil {
			answered++
		}
	}
	if answered != 3 || s.Stats().RateLimited != 7 {
		t.Errorf("10 queries at once with a rate of 3: %d answered, %d limited; want 3, 7", answered, s.Stats().RateLimited)
	}
	if s.handle(b, webIP, false) == nil {
		t.Errorf("another client was limited too")
	}
}

func TestCacheBound(t *testing.T) {
	c := newCache(4)
	now := time.Unix(1e9, 0)
	for i := range 10 {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(string(rune('a'+i))), dns.TypeA)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(1, 2, 3, 4)}}
		c.put(keyOf(m), m, now)
	}
	if n := c.len(); n != 4 {
		t.Errorf("cache of 4 after 10 puts: %d entries", n)
	}
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.53", "192.0.2.53:53"},
		{"192.0.2.53:5353", "192.0.2.53:5353"},
		{"[2001:db8::1]:54", "[2001:db8::1]:54"},
		{"2001:db8::1", "[2001:db8::1]:53"},
		{"dns.example", ""},
		{"192.0.2.53:0", ""},
	} {
		got, err := ParseUpstream(tc.in)
		if (err != nil) != (tc.want == "") || (err == nil && got.String() != tc.want) {
			t.Errorf("ParseUpstream(%q) = %v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nameserver 192.0.2.10\nnameserver 192.0.2.11\nsearch x\n")
	u := newUpstreams(nil, path)
	now := time.Unix(1e9, 0)
	if got, err := u.list(now); err != nil || strings.Join(got, ",") != "192.0.2.10:53,192.0.2.11:53" {
		t.Fatalf("list = %v, %v", got, err)
	}
	// Changed: read again once resolvRecheck has passed.
	write("# new\nnameserver 192.0.2.12\n")
	if got, _ := u.list(now.Add(resolvRecheck)); strings.Join(got, ",") != "192.0.2.12:53" {
		t.Errorf("after a change: %v, want 192.0.2.12:53", got)
	}
	write("search only\n")
	if _, err := u.list(now.Add(3 * resolvRecheck)); err == nil {
		t.Errorf("resolv.conf without nameservers: no error")
	}
}

// TestResolvConfStub follows systemd-resolved's stub to its upstreams, and
// keeps the stub when they are not exposed.
func TestResolvConfStub(t *testing.T) {
	dir := t.TempDir()
	stub, sd := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "sd.conf")
	old := systemdResolvConf
	systemdResolvConf = sd
	t.Cleanup(func() { systemdResolvConf = old })
	os.WriteFile(stub, []byte("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"), 0o644)
	if got, err := readResolvConf(stub); err != nil || strings.Join(got, ",") != "127.0.0.53:53" {
		t.Errorf("stub without systemd's file: %v, %v; want the stub", got, err)
	}
	os.WriteFile(sd, []byte("nameserver 192.0.2.1\nnameserver 2001:db8::1\n"), 0o644)
	if got, err := readResolvConf(stub); err != nil || strings.Join(got, ",") != "192.0.2.1:53,[2001:db8::1]:53" {
		t.Errorf("stub with systemd's file: %v, %v; want its upstreams", got, err)
	}
}

func TestCheckDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tapswitch", "tapswitch."},
		{"Lab.Example.", "lab.example."},
		{"", ""},
		{".", ""},
		{"a..b", ""},
	} {
		got, err := CheckDomain(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("CheckDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
