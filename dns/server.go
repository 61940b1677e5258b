package dns

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultDomain    = "tapswitch"
	DefaultTimeout   = 2500 * time.Millisecond
	DefaultCacheSize = 4096
	DefaultRate      = 50000
	// maxInFlight bounds the forwarded queries waiting for upstreams;
	// more are answered SERVFAIL at once.
	maxInFlight = 512
	// maxClients bounds the rate limiter's table.
	maxClients = 4096
)

// ErrInvalidConfig is returned by New when Config cannot describe a
// server; the error wrapping it says which field is wrong.
var ErrInvalidConfig = errors.New("invalid dns config")

// Config configures a Server. Zero values select the documented defaults.
type Config struct {
	// Addr is the gateway's address, where the server listens; Subnet
	// the containers' subnet, whose reverse zone is local.
	Addr   netip.Addr
	Subnet netip.Prefix
	// Addr6 and Subnet6, both set or both zero, are the gateway's
	// global IPv6 address and the containers' IPv6 subnet (run --ipv6):
	// the server answers there too, and the subnet's reverse zone
	// (ip6.arpa) is local.
	Addr6   netip.Addr
	Subnet6 netip.Prefix
	// MTU is the gateway's MTU, the netstack NIC's.
	MTU int
	// Domain is the containers' domain, "tapswitch" when empty.
	Domain string
	// Upstreams are the resolvers to forward to; empty means those of
	// ResolvConf.
	Upstreams []netip.AddrPort
	// ResolvConf is read for upstreams when Upstreams is empty;
	// DefaultResolvConf when "".
	ResolvConf string
	// HostLoopback makes host.tapswitch.internal and
	// host.containers.internal name the gateway (run --host-loopback).
	HostLoopback bool
	// Isolate is --icc=false: a client sees only its own names.
	Isolate bool
	// Timeout bounds the forwarding of one query, all upstreams
	// included; DefaultTimeout when 0. After it the answer is SERVFAIL.
	Timeout time.Duration
	// CacheSize bounds the cache in entries; DefaultCacheSize when 0.
	CacheSize int
	// Rate is the queries per second each client may send, with a burst
	// of as many; DefaultRate when 0. Queries over it are dropped.
	Rate int
	// Now is the clock of the cache and the rate limiter; nil means
	// time.Now.
	Now func() time.Time
}

// Server is the embedded DNS server. Its methods are safe for concurrent
// use.
type Server struct {
	cfg   Config
	now   func() time.Time
	zone  atomic.Pointer[zone]
	cache *cache
	// packed keeps UDP answers in wire format (packed.go); gens numbers
	// the zones SetHosts makes, whose answers it keeps apart.
	packed *packedCache
	gens   atomic.Uint64
	ups    *upstreams
	limit  *limiter
	stats  counters

	inFlight atomic.Int32
	stack    atomic.Pointer[netStack] // nil until Start and after Close
}

// New validates cfg and returns a Server that is not serving yet (Start).
func New(cfg Config) (*Server, error) {
	if !cfg.Addr.Is4() || !cfg.Subnet.IsValid() || !cfg.Subnet.Contains(cfg.Addr) {
		return nil, fmt.Errorf("address %s not an IPv4 address of subnet %s: %w", cfg.Addr, cfg.Subnet, ErrInvalidConfig)
	}
	if cfg.Addr6.IsValid() || cfg.Subnet6.IsValid() {
		if !cfg.Addr6.Is6() || cfg.Addr6.Is4In6() || cfg.Addr6.Zone() != "" || !cfg.Subnet6.IsValid() || !cfg.Subnet6.Contains(cfg.Addr6) {
			return nil, fmt.Errorf("address %s not an IPv6 address of subnet %s: %w", cfg.Addr6, cfg.Subnet6, ErrInvalidConfig)
		}
	}
	cfg.Domain = cmp.Or(cfg.Domain, DefaultDomain)
	d, err := CheckDomain(cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalidConfig)
	}
	cfg.Domain = d
	cfg.ResolvConf = cmp.Or(cfg.ResolvConf, DefaultResolvConf)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.CacheSize = cmp.Or(cfg.CacheSize, DefaultCacheSize)
	cfg.Rate = cmp.Or(cfg.Rate, DefaultRate)
	cfg.MTU = cmp.Or(cfg.MTU, 1500)
	if cfg.Timeout < 0 || cfg.CacheSize < 0 || cfg.Rate < 0 || cfg.MTU < 576 {
		return nil, fmt.Errorf("negative Timeout, CacheSize or Rate, or MTU under 576: %w", ErrInvalidConfig)
	}
	s := &Server{cfg: cfg, now: cfg.Now, cache: newCache(cfg.CacheSize), packed: newPackedCache(cfg.CacheSize),
		ups: newUpstreams(cfg.Upstreams, cfg.ResolvConf)}
	if s.now == nil {
		s.now = time.Now
	}
	s.limit = newLimiter(cfg.Rate)
	s.zone.Store(newZone(&s.cfg, nil, 0))
	return s, nil
}

// CheckDomain checks that d is a DNS name of labels (no trailing dot
// needed) and returns it lower case and fully qualified.
func CheckDomain(d string) (string, error) {
	fq := dns.Fqdn(strings.ToLower(d))
	if _, ok := dns.IsDomainName(fq); !ok || fq == "." || strings.Contains(fq, "..") {
		return "", fmt.Errorf("dns domain %q is not a domain name", d)
	}
	return fq, nil
}

// Domain returns the containers' domain without its trailing dot, for
// resolv.conf's search line.
func (s *Server) Domain() string { return strings.TrimSuffix(s.cfg.Domain, ".") }

// Addr returns the address the server answers on.
func (s *Server) Addr() netip.Addr { return s.cfg.Addr }

// Addr6 returns the IPv6 address the server answers on; zero without
// IPv6.
func (s *Server) Addr6() netip.Addr { return s.cfg.Addr6 }

// SetHosts replaces the local names with those of hosts. Queries answered
// after it returns see the new names.
func (s *Server) SetHosts(hosts []Host) {
	s.zone.Store(newZone(&s.cfg, hosts, s.gens.Add(1)))
	s.packed.clear()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	st.CacheEntries = uint64(s.cache.len())
	return st
}

// handle answers the query msg (wire format) from client, over TCP when
// tcp is set. It returns the answer in wire format, or nil to drop the
// query. It blocks while the query is forwarded (at most Config.Timeout).
func (s *Server) handle(msg []byte, client netip.Addr, tcp bool) []byte {
	var dst []byte
	if !tcp {
		dst = make([]byte, s.cfg.MTU)
	}
	out, fwd := s.answerFast(msg, client, tcp, dst)
	if fwd != nil {
		return s.answerForwarded(fwd, client, tcp)
	}
	return out
}

// answerFast answers msg without waiting: from the packed answers (into
// dst, a UDP query only), the local names, the cache, or with an error.
// When the query must go upstream it returns it parsed instead, for
// answerForwarded, and has counted it in flight.
func (s *Server) answerFast(msg []byte, client netip.Addr, tcp bool, dst []byte) ([]byte, *dns.Msg) {
	now := s.now()
	if !s.limit.allow(client, now) {
		s.stats.limited.Add(1)
		s.stats.result(-1)
		return nil, nil
	}
	z := s.zone.Load()
	c := z.client(client)
	var q query
	packable := !tcp && parseQuery(msg, &q)
	if packable {
		q.setClient(c)
		if n, e := s.packed.answer(msg, &q, z.gen, now, dst); e != nil {
			s.stats.packedHit(q.qtype, e)
			return dst[:n], nil
		}
	}
	req := new(dns.Msg)
	if err := req.Unpack(msg); err != nil {
		return s.formErr(msg), nil
	}
	if req.Response || len(req.Question) != 1 || len(req.Answer) > 0 || len(req.Ns) > 0 {
		return s.formErr(msg), nil
	}
	qn := req.Question[0]
	s.stats.query(qn.Qtype)
	resp := new(dns.Msg)
	var keep *packedEntry // how to keep the answer in the packed cache
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.SetRcode(req, dns.RcodeNotImplemented)
	case qn.Qtype == dns.TypeAXFR || qn.Qtype == dns.TypeIXFR:
		resp.SetRcode(req, dns.RcodeRefused)
	default:
		rrs, rcode, ok := z.localAnswer(qn, strings.ToLower(qn.Name), c)
		if !ok {
			if m, e := s.cache.get(keyOf(req), now); m != nil {
				s.stats.hits.Add(1)
				resp = s.reply(req, m)
				keep = &packedEntry{stored: e.stored, expires: e.expires, age0: int64(now.Sub(e.stored) / time.Second)}
				break
			}
			if s.inFlight.Add(1) > maxInFlight {
				s.inFlight.Add(-1)
				resp.SetRcode(req, dns.RcodeServerFailure)
				break
			}
			return nil, req
		}
		s.stats.local.Add(1)
		resp.SetRcode(req, rcode)
		resp.Authoritative = true
		resp.RecursionAvailable = true
		resp.Answer = rrs
		if len(rrs) == 0 {
			resp.Ns = []dns.RR{z.apexSOA(qn.Name)}
		}
		keep = &packedEntry{local: true}
	}
	out := s.finish(req, resp, client, tcp)
	if packable && keep != nil && len(out) >= headerSize {
		if rcode := int(out[3] & 0xf); rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError {
			keep.gen, keep.rcode, keep.truncated = z.gen, rcode, out[2]&0x02 != 0
			s.packed.put(msg, &q, out, keep)
		}
	}
	return out, nil
}

// answerForwarded answers req, which answerFast handed over, from
// upstream (or the cache, filled meanwhile).
func (s *Server) answerForwarded(req *dns.Msg, client netip.Addr, tcp bool) []byte {
	defer s.inFlight.Add(-1)
	return s.finish(req, s.forward(req), client, tcp)
}

// finish sets the EDNS0 OPT of a local answer, cuts a UDP answer to the
// client's size and what the MTU leaves after the IP and UDP headers to
// client (RFC 6891 7; TC set, RFC 2181 9) and packs it.
func (s *Server) finish(req, resp *dns.Msg, client netip.Addr, tcp bool) []byte {
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		size = max(int(o.UDPSize()), dns.MinMsgSize)
		if resp.IsEdns0() == nil {
			resp.SetEdns0(dns.DefaultMsgSize, o.Do())
		}
	} else {
		// An OPT the client did not ask for must not be sent (RFC 6891 7).
		resp.Extra = dropOPT(resp.Extra)
	}
	// Never more than fits in the MTU unfragmented (RFC 8085 3.2; what
	// the 2020 DNS flag day asks of large buffers too).
	size = min(size, s.cfg.MTU-udpHeaderLen(client))
	if tcp {
		size = dns.MaxMsgSize
	}
	if resp.Len() > size {
		resp.Truncate(size)
		s.stats.truncated.Add(1)
	}
	out, err := resp.Pack()
	if err != nil {
		fail := new(dns.Msg)
		fail.SetRcode(req, dns.RcodeServerFailure)
		out, _ = fail.Pack()
		resp = fail
	}
	s.stats.result(resp.Rcode)
	return out
}

func dropOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// formErr answers a query that could not be parsed with FORMERR, echoing
// its ID, when at least its header could be read and it is not itself a
// response; otherwise the query is dropped. Both are counted.
func (s *Server) formErr(msg []byte) []byte {
	s.stats.malformed.Add(1)
	if len(msg) < 12 || msg[2]&0x80 != 0 {
		s.stats.result(-1)
		return nil
	}
	m := new(dns.Msg)
	m.Id = uint16(msg[0])<<8 | uint16(msg[1])
	m.Response = true
	m.Opcode = int(msg[2]>>3) & 0xf
	m.Rcode = dns.RcodeFormatError
	out, _ := m.Pack()
	s.stats.result(dns.RcodeFormatError)
	return out
}

// limiter is a token bucket per client address. A query takes the table's
// read lock and its client's bucket lock, never an exclusive lock all
// clients share: clients are answered on their own ports' goroutines.
type limiter struct {
	rate float64

	mu      sync.RWMutex // guards the map buckets (each bucket has its own lock)
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   time.Time
}

func newLimiter(rate int) *limiter {
	return &limiter{rate: float64(rate), buckets: make(map[netip.Addr]*bucket)}
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.RLock()
	b := l.buckets[a]
	l.mu.RUnlock()
	if b == nil {
		l.mu.Lock()
		if b = l.buckets[a]; b == nil {
			if len(l.buckets) >= maxClients {
				clear(l.buckets)
			}
			b = &bucket{tokens: l.rate, last: now}
			l.buckets[a] = b
		}
		l.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
