package dns

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheTTL caps how long any answer is kept, whatever its TTL says.
const maxCacheTTL = 24 * time.Hour

// cacheKey names a cached answer: the question, and the EDNS0 DO and CD
// bits, which change what an upstream answers.
type cacheKey struct {
	name          string // lower case
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	msg     *dns.Msg // the upstream's answer; never modified
	stored  time.Time
	expires time.Time
}

// cache keeps upstream answers for their TTL (RFC 1035 7.4) and negative
// answers for the SOA's TTL or minimum, whichever is lower (RFC 2308 5),
// in at most max entries. A full cache evicts an expired entry if its
// random probe finds one, any entry otherwise. It is safe for concurrent
// use.
type cache struct {
	max int

	mu      sync.Mutex // guards entries
	entries map[cacheKey]cacheEntry
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]cacheEntry)}
}

func keyOf(req *dns.Msg) cacheKey {
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: req.CheckingDisabled}
	if o := req.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

// get returns a copy of the answer cached under k with its TTLs lowered by
// the time it has spent in the cache, and its entry; or nil.
func (c *cache) get(k cacheKey, now time.Time) (*dns.Msg, cacheEntry) {
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, cacheEntry{}
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m, e
}

// put caches m under k if it can be cached: NOERROR with answers (for the
// lowest TTL among them), or NXDOMAIN or NODATA with an SOA in the
// authority section (RFC 2308 5). Truncated answers and other rcodes are
// not cached.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok || ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{msg: m, stored: now, expires: now.Add(ttl)}
}

// evictLocked removes one entry: the first expired one of a few probed
// (map order is random), or the last probed. c.mu is held.
func (c *cache) evictLocked(now time.Time) {
	n := 0
	var last cacheKey
	for k, e := range c.entries {
		n++
		last = k
		if !now.Before(e.expires) || n == 8 {
			break
		}
	}
	if n > 0 {
		delete(c.entries, last)
	}
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheTTL returns how long m may be cached.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated {
		return 0, false
	}
	var ttl uint32
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl = ^uint32(0)
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		soa := negativeSOA(m)
		if soa == nil {
			return 0, false // RFC 2308 5: no SOA, no negative caching
		}
		ttl = min(soa.Hdr.Ttl, soa.Minttl)
	default:
		return 0, false
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL), true
}

func negativeSOA(m *dns.Msg) *dns.SOA {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}
