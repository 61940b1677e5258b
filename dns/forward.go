package dns

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// forward sends req upstream, through the cache, and returns the answer
// with req's ID, or SERVFAIL when no upstream answered in time.
func (s *Server) forward(req *dns.Msg) *dns.Msg {
	k := keyOf(req)
	if m, _ := s.cache.get(k, s.now()); m != nil {
		s.stats.hits.Add(1) // another query filled it meanwhile
		return s.reply(req, m)
	}
	s.stats.misses.Add(1)
	m := s.exchange(req)
	if m == nil {
		fail := new(dns.Msg)
		fail.SetRcode(req, dns.RcodeServerFailure)
		return fail
	}
	s.cache.put(k, m, s.now())
	return s.reply(req, m.Copy())
}

// reply makes the upstream's answer m the answer to req: req's ID, and its
// question as the client spelt it (RFC 1035 7.3; 0x20 case randomisation).
func (s *Server) reply(req, m *dns.Msg) *dns.Msg {
	m.Id = req.Id
	m.Question = []dns.Question{req.Question[0]}
	return m
}

// exchange asks the upstreams in turn, within Config.Timeout in all, over
// UDP, and over TCP again when the answer is truncated (RFC 7766 5). It
// returns nil when none answered. The query keeps the client's EDNS0 OPT
// (its buffer size and DO bit) and gets an ID of its own.
func (s *Server) exchange(req *dns.Msg) *dns.Msg {
	ups, err := s.ups.list(s.now())
	if err != nil || len(ups) == 0 {
		s.stats.upErrors.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	q := req.Copy()
	q.Id = dns.Id()
	for i, up := range ups {
		// Each upstream gets an equal share of what is left.
		left := time.Until(deadlineOf(ctx))
		if left <= 0 {
			break
		}
		try := left / time.Duration(len(ups)-i)
		m := s.try(ctx, q, up, "udp", try)
		if m != nil && m.Truncated {
			s.stats.tcpRetries.Add(1)
			m = s.try(ctx, q, up, "tcp", time.Until(deadlineOf(ctx)))
		}
		if m != nil {
			return m
		}
	}
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// try sends q to up over network within timeout and returns a matching
// answer, or nil.
func (s *Server) try(ctx context.Context, q *dns.Msg, up, network string, timeout time.Duration) *dns.Msg {
	c := dns.Client{Net: network, Timeout: timeout, UDPSize: dns.MaxMsgSize}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.stats.upstream.Add(1)
	m, rtt, err := c.ExchangeContext(tctx, q, up)
	if err != nil || m == nil || m.Id != q.Id || len(m.Question) != 1 ||
		!equalFold(m.Question[0].Name, q.Question[0].Name) || m.Question[0].Qtype != q.Question[0].Qtype {
		s.stats.upErrors.Add(1)
		return nil
	}
	s.stats.observe(rtt)
	return m
}

// equalFold compares two DNS names without ASCII case (RFC 4343).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
