package dns

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandle feeds arbitrary bytes to the query path, as a container's UDP
// or TCP query: it must never panic, and what it answers must parse as a
// response with the query's ID that fits the client's buffer.
func FuzzHandle(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"web.tapswitch.", dns.TypeA, false},
		{"shared.", dns.TypeANY, true},
		{"2.0.90.10.in-addr.arpa.", dns.TypePTR, false},
		{"example.test.", dns.TypeA, true},
		{"tapswitch.", dns.TypeSOA, false},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(1232, true)
		}
		b, _ := m.Pack()
		f.Add(b, false)
		f.Add(b, true)
		f.Add(b[:len(b)-2], false)
	}
	f.Add([]byte{0, 1, 0x78, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false) // opcode 15, a question missing
	up := startTestUpstream(f)
	// A query the upstream leaves unanswered waits for Timeout: short, so
	// that no input runs for seconds (a worker still in one when -fuzztime
	// ends fails the run with "context deadline exceeded").
	s, _ := newTestServer(f, func(c *Config) {
		c.Upstreams = []netip.AddrPort{up.addr}
		c.Rate = 1 << 30
		c.Timeout = 100 * time.Millisecond
	})
	f.Fuzz(func(t *testing.T, in []byte, tcp bool) {
		out := s.handle(in, cliIP, tcp)
		if out == nil {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer to %x does not parse: %v", in, err)
		}
		if !m.Response || len(in) < 2 || m.Id != uint16(in[0])<<8|uint16(in[1]) {
			t.Fatalf("answer %v to %x: not a response with the query's ID", m, in)
		}
		limit := dns.MaxMsgSize
		if !tcp {
			limit = dns.MinMsgSize
			q := new(dns.Msg)
			if q.Unpack(in) == nil {
				if o := q.IsEdns0(); o != nil {
					limit = max(limit, int(o.UDPSize()))
				}
			}
		}
		if len(out) > limit {
			t.Fatalf("answer of %d bytes over UDP, the client takes %d", len(out), limit)
		}
	})
}
