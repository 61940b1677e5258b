package dns

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// packedPair returns a server with the packed cache and one without, on
// the same clock and upstream, to check that the first answers what the
// second builds with miekg/dns.
func packedPair(t testing.TB, up *testUpstream) (fast, slow *Server, clk *clock) {
	t.Helper()
	clk = &clock{t: time.Unix(1e9, 0)}
	mod := func(c *Config) {
		c.Now = clk.now
		c.Rate = 1 << 30
		c.Timeout = 10 * time.Second // a slow upstream must not make the two differ
		if up != nil {
			c.Upstreams = []netip.AddrPort{up.addr}
		}
	}
	fast, _ = newTestServer(t, mod)
	slow, _ = newTestServer(t, mod)
	slow.packed = newPackedCache(0)
	return fast, slow, clk
}

// packQuery packs a query for name and qtype with the given ID; edns
// adds an OPT with a 1232-byte buffer, do its DO bit, cookie a client
// cookie option.
func packQuery(t testing.TB, id uint16, name string, qtype uint16, edns, do, cookie bool) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	if edns {
		m.SetEdns0(1232, do)
		if cookie {
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPackedMatchesSlow asks both servers the same queries several times,
// in several spellings, as time passes: the packed answers are those
// miekg/dns builds, byte for byte (TTLs of forwarded answers lowered by
// their age included).
func TestPackedMatchesSlow(t *testing.T) {
	up := startTestUpstream(t)
	fast, slow, clk := packedPair(t, up)
	many := []Host{{Name: "cli", IPv4: cliIP, VLANs: []uint16{1}}}
	for i := range 60 {
		many = append(many, Host{Name: "many", IPv4: netip.AddrFrom4([4]byte{10, 90, 1, byte(i)}), VLANs: []uint16{1}})
	}
	for _, tc := range []struct {
		name        string
		client      netip.Addr
		q           string
		qtype       uint16
		edns, do, c bool
	}{
		{"local", cliIP, "web.tapswitch.", dns.TypeA, false, false, false},
		{"local, other case", cliIP, "WeB.TAPSWITCH.", dns.TypeA, false, false, false},
		{"bare", cliIP, "web.", dns.TypeA, false, false, false},
		{"aaaa edns do", cliIP, "web.tapswitch.", dns.TypeAAAA, true, true, false},
		{"any with cookie", trIP, "shared.tapswitch.", dns.TypeANY, true, false, true},
		{"ptr", cliIP, "2.0.90.10.in-addr.arpa.", dns.TypePTR, false, false, false},
		{"nxdomain", cliIP, "nope.tapswitch.", dns.TypeA, false, false, false},
		{"apex SOA", cliIP, "tapswitch.", dns.TypeSOA, false, false, false},
		{"apex SOA, other case", cliIP, "TAPswitch.", dns.TypeSOA, false, false, false},
		{"apex NODATA", cliIP, "TapSwitch.", dns.TypeA, true, false, false},
		{"other vlan", cliIP, "v20.tapswitch.", dns.TypeA, false, false, false},
		{"trunk", trIP, "v20.tapswitch.", dns.TypeA, false, false, false},
		{"not a port", netip.MustParseAddr("10.90.9.9"), "web.tapswitch.", dns.TypeA, false, false, false},
		{"forwarded", cliIP, "example.test.", dns.TypeA, false, false, false},
		{"forwarded, other case", cliIP, "Example.TEST.", dns.TypeA, true, false, false},
		{"forwarded negative", cliIP, "gone.test.", dns.TypeTXT, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 4 {
				q := packQuery(t, uint16(100+i), tc.q, tc.qtype, tc.edns, tc.do, tc.c)
				want, got := slow.handle(q, tc.client, false), fast.handle(q, tc.client, false)
				if !bytes.Equal(got, want) {
					t.Fatalf("ask %d: packed\n%x\nwant\n%x", i, got, want)
				}
				clk.t = clk.t.Add(3 * time.Second) // TTLs go down
			}
		})
	}
	if fast.packed.len() == 0 {
		t.Fatal("nothing kept in the packed cache")
	}
	// Truncated answers, and a zone change: the new names at once.
	fast.SetHosts(many)
	slow.SetHosts(many)
	for i := range 3 {
		q := packQuery(t, uint16(i), "many.tapswitch.", dns.TypeA, false, false, false)
		if got, want := fast.handle(q, cliIP, false), slow.handle(q, cliIP, false); !bytes.Equal(got, want) {
			t.Fatalf("truncated, ask %d: packed\n%x\nwant\n%x", i, got, want)
		}
	}
	q := packQuery(t, 7, "web.tapswitch.", dns.TypeA, false, false, false)
	if m := new(dns.Msg); m.Unpack(fast.handle(q, cliIP, false)) != nil || m.Rcode != dns.RcodeNameError {
		t.Errorf("web after SetHosts without it: %v, want NXDOMAIN", m)
	}
	slow.handle(q, cliIP, false)
	if fs, ss := fast.Stats(), slow.Stats(); !equalStats(fs, ss) {
		t.Errorf("stats differ:\npacked %+v\nslow   %+v", fs, ss)
	}
}

func equalStats(a, b Stats) bool {
	a.CacheEntries, b.CacheEntries = 0, 0
	a.UpstreamLatency, b.UpstreamLatency = nil, nil
	a.UpstreamLatencySum, b.UpstreamLatencySum = 0, 0
	return reflect.DeepEqual(a, b)
}

// TestPackedExpiry: a forwarded answer is not served from the packed cache
// past its TTL, and local answers follow the client's VLANs.
func TestPackedExpiry(t *testing.T) {
	up := startTestUpstream(t)
	fast, _, clk := packedPair(t, up)
	q := packQuery(t, 1, "example.test.", dns.TypeA, false, false, false)
	for range 3 {
		fast.handle(q, cliIP, false)
	}
	if n := up.queries.Load(); n != 1 {
		t.Fatalf("upstream asked %d times, want once", n)
	}
	clk.t = clk.t.Add(60 * time.Second)
	fast.handle(q, cliIP, false)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("after the TTL: upstream asked %d times, want 2", n)
	}
	v := packQuery(t, 2, "v20.tapswitch.", dns.TypeA, false, false, false)
	fast.handle(v, trIP, false)
	fast.handle(v, trIP, false)
	if m := new(dns.Msg); m.Unpack(fast.handle(v, cliIP, false)) != nil || m.Rcode != dns.RcodeNameError {
		t.Errorf("v20 asked from VLAN 1 after the trunk: %v, want NXDOMAIN", m)
	}
}

// TestPackedAllocs: a UDP query answered from the packed cache, local or
// forwarded, allocates nothing from Deliver to the send function.
func TestPackedAllocs(t *testing.T) {
	up := startTestUpstream(t)
	s, _, _ := packedPair(t, up)
	sent := 0
	if err := s.Start(func([]byte) { sent++ }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, name := range []string{"web.tapswitch.", "example.test."} {
		q := udpQuery(t, name)
		for range 3 {
			if out := s.handle(q[headerLen:], cliIP, false); out == nil {
				t.Fatalf("%s: no answer", name)
			}
		}
		before := sent
		if n := testing.AllocsPerRun(100, func() { s.Deliver(q, nil) }); n != 0 {
			t.Errorf("%s: %.1f allocations a query, want 0", name, n)
		}
		if sent-before != 101 {
			t.Errorf("%s: %d answers sent for 101 queries", name, sent-before)
		}
		// Answered into the gateway's buffer instead (WriteAnswer).
		ans := make([]byte, 1500)
		if n := testing.AllocsPerRun(100, func() { s.Deliver(q, ans) }); n != 0 {
			t.Errorf("%s, into a buffer: %.1f allocations a query, want 0", name, n)
		}
		n := s.Deliver(q, ans)
		if m := checkAnswer(t, ans[:n]); len(m.Answer) != 1 || sent-before != 101 {
			t.Errorf("%s, into a buffer: %v (and %d sent)", name, m, sent-before-101)
		}
	}
}

// TestParseQuery: what the packed cache takes, and what it leaves to the
// slow path.
func TestParseQuery(t *testing.T) {
	plain := packQuery(t, 1, "Web.tapswitch.", dns.TypeA, false, false, false)
	cookie := packQuery(t, 1, "web.tapswitch.", dns.TypeA, true, true, true)
	withOpt := func(o dns.EDNS0) []byte {
		m := new(dns.Msg)
		m.SetQuestion("web.tapswitch.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, o)
		b, _ := m.Pack()
		return b
	}
	resp := append([]byte(nil), plain...)
	resp[2] |= 0x80
	notify := append([]byte(nil), plain...)
	notify[2] |= dns.OpcodeNotify << 3
	pointer := append(append([]byte(nil), plain[:headerSize]...), 0xc0, 12, 0, 1, 0, 1)
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"plain", plain, true},
		{"edns with cookie", cookie, true},
		{"subnet option", withOpt(&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}}), false},
		{"response", resp, false},
		{"notify", notify, false},
		{"compressed name", pointer, false},
		{"trailing byte", append(append([]byte(nil), plain...), 0), false},
		{"cut", plain[:len(plain)-1], false},
		{"header only", plain[:headerSize], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q query
			if got := parseQuery(tc.in, &q); got != tc.want {
				t.Errorf("parseQuery = %v, want %v", got, tc.want)
			}
		})
	}
	var a, b query
	parseQuery(plain, &a)
	parseQuery(packQuery(t, 9, "wEB.TAPSWITCH.", dns.TypeA, false, false, false), &b)
	if string(a.key[:a.keyLen]) != string(b.key[:b.keyLen]) {
		t.Errorf("keys of two spellings differ: %x, %x", a.key[:a.keyLen], b.key[:b.keyLen])
	}
	a.setClient(1)
	if string(a.key[:a.keyLen]) == string(b.key[:b.keyLen]) {
		t.Errorf("keys of two clients are the same")
	}
}

// FuzzPacked: whatever a client sends, twice, the server with the packed
// cache answers what the one without it answers.
func FuzzPacked(f *testing.F) {
	for _, q := range [][]byte{
		packQuery(f, 1, "web.tapswitch.", dns.TypeA, false, false, false),
		packQuery(f, 2, "WEB.tapswitch.", dns.TypeANY, true, true, true),
		packQuery(f, 3, "2.0.90.10.in-addr.arpa.", dns.TypePTR, true, false, false),
		packQuery(f, 4, "nope.tapswitch.", dns.TypeAAAA, false, false, false),
		packQuery(f, 5, "example.test.", dns.TypeA, true, false, true),
		packQuery(f, 6, "TapSwitch.", dns.TypeSOA, false, false, false),
		packQuery(f, 7, "tapswitch.", dns.TypeA, true, false, false),
	} {
		f.Add(q)
	}
	up := startTestUpstream(f)
	fast, slow, _ := packedPair(f, up)
	f.Fuzz(func(t *testing.T, in []byte) {
		for i := range 2 {
			got, want := fast.handle(in, cliIP, false), slow.handle(in, cliIP, false)
			if !bytes.Equal(got, want) {
				t.Fatalf("ask %d of %x: packed\n%x\nwant\n%x", i, in, got, want)
			}
		}
	})
}

// TestPackedConcurrent asks from several goroutines while the names
// change: every answer is whole and has its query's ID (and -race sees
// the packed cache's sharing).
func TestPackedConcurrent(t *testing.T) {
	s, _, _ := packedPair(t, nil)
	names := []string{"web.tapswitch.", "WWW.tapswitch.", "cli.", "nope.tapswitch.", "gateway.tapswitch."}
	stop := make(chan struct{})
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				s.SetHosts(testHosts[i%2:])
			}
		}
	}()
	var askers sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		askers.Add(1)
		go func() {
			defer askers.Done()
			ans := make([]byte, 1500)
			for i := range 500 {
				id := uint16(w<<12 | i)
				q := packQuery(t, id, names[i%len(names)], dns.TypeA, i%3 == 0, false, false)
				out, fwd := s.answerFast(q, cliIP, false, ans)
				m := new(dns.Msg)
				if err := m.Unpack(out); fwd != nil || err != nil || m.Id != id || len(m.Question) != 1 {
					errs <- fmt.Errorf("answer %x to query %d: %v", out, id, err)
					return
				}
			}
		}()
	}
	askers.Wait()
	close(stop)
	<-changed
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkAnswer measures the DNS work of one UDP query for a local name
// and a cached forwarded one: from the packed cache, and built with
// miekg/dns (the server without it).
func BenchmarkAnswer(b *testing.B) {
	up := startTestUpstream(b)
	fast, slow, _ := packedPair(b, up)
	for _, name := range []string{"web.tapswitch.", "example.test."} {
		q := packQuery(b, 1, name, dns.TypeA, false, false, false)
		for _, s := range []struct {
			kind string
			srv  *Server
		}{{"packed", fast}, {"miekg", slow}} {
			b.Run(s.kind+"/"+name, func(b *testing.B) {
				ans := make([]byte, 1500)
				for range 3 {
					s.srv.handle(q, cliIP, false)
				}
				b.ReportAllocs()
				for b.Loop() {
					if out, _ := s.srv.answerFast(q, cliIP, false, ans); out == nil {
						b.Fatal("no answer")
					}
				}
			})
		}
	}
}
