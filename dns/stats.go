package dns

import (
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// QueryTypes are the query types counted on their own in Stats.Queries;
// the others are counted as "other".
var QueryTypes = []string{"A", "AAAA", "PTR", "SRV", "TXT", "MX", "CNAME", "NS", "SOA", "HTTPS", "ANY", "other"}

// Results are the outcomes counted in Stats.Results: the rcodes the server
// answers with, and "dropped" for queries not answered (rate limited,
// unparseable).
var Results = []string{"NOERROR", "NXDOMAIN", "SERVFAIL", "FORMERR", "REFUSED", "NOTIMP", "other", "dropped"}

// LatencyBuckets are the upper bounds of the upstream latency histogram
// (Stats.UpstreamLatency), the last one +Inf.
var LatencyBuckets = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 1<<63 - 1,
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Queries counts queries by type, in the order of QueryTypes.
	Queries []uint64
	// Results counts answers by rcode, in the order of Results.
	Results []uint64
	// Local counts queries answered from the local names.
	Local uint64
	// CacheHits and CacheMisses count forwarded names found or not in
	// the cache; CacheEntries is its size now.
	CacheHits, CacheMisses, CacheEntries uint64
	// Upstream counts queries sent upstream (a TCP retry is one more);
	// UpstreamErrors those that failed or timed out; TCPRetries the
	// retries over TCP of truncated answers.
	Upstream, UpstreamErrors, TCPRetries uint64
	// UpstreamLatency counts upstream answers by latency, per
	// LatencyBuckets (not cumulative); UpstreamLatencySum is their sum.
	UpstreamLatency    []uint64
	UpstreamLatencySum time.Duration
	// Malformed counts queries that could not be parsed or were not a
	// single question (answered FORMERR when the header could be read,
	// dropped otherwise); RateLimited those dropped by the per-client
	// limit; Truncated UDP answers cut to the client's size.
	Malformed, RateLimited, Truncated uint64
}

type counters struct {
	queries            [12]atomic.Uint64
	results            [8]atomic.Uint64
	local              atomic.Uint64
	hits, misses       atomic.Uint64
	upstream, upErrors atomic.Uint64
	tcpRetries         atomic.Uint64
	latency            [12]atomic.Uint64
	latencySum         atomic.Int64
	malformed, limited atomic.Uint64
	truncated          atomic.Uint64
}

// queryTypeCodes are the type codes of QueryTypes but "other", in order.
var queryTypeCodes = func() []uint16 {
	codes := make([]uint16, len(QueryTypes)-1)
	for i, name := range QueryTypes[:len(codes)] {
		codes[i] = dns.StringToType[name]
	}
	return codes
}()

func (c *counters) query(qtype uint16) {
	i := len(QueryTypes) - 1
	for j, code := range queryTypeCodes {
		if code == qtype {
			i = j
			break
		}
	}
	c.queries[i].Add(1)
}

// packedHit counts a query of qtype answered with the packed answer e, as
// the slow path counted the query that built it.
func (c *counters) packedHit(qtype uint16, e *packedEntry) {
	c.query(qtype)
	if e.local {
		c.local.Add(1)
	} else {
		c.hits.Add(1)
	}
	if e.truncated {
		c.truncated.Add(1)
	}
	c.result(e.rcode)
}

// resultRcodes are the rcodes of the first entries of Results, in order.
var resultRcodes = [...]int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure,
	dns.RcodeFormatError, dns.RcodeRefused, dns.RcodeNotImplemented}

// result counts an answer with rcode, or -1 for a dropped query.
func (c *counters) result(rcode int) {
	i := len(resultRcodes) // other
	if rcode == -1 {
		i++ // dropped
	}
	for j, r := range resultRcodes {
		if r == rcode {
			i = j
		}
	}
	c.results[i].Add(1)
}

func (c *counters) observe(d time.Duration) {
	for i, b := range LatencyBuckets {
		if d <= b {
			c.latency[i].Add(1)
			break
		}
	}
	c.latencySum.Add(int64(d))
}

func load(a []atomic.Uint64) []uint64 {
	out := make([]uint64, len(a))
	for i := range a {
		out[i] = a[i].Load()
	}
	return out
}

func (c *counters) snapshot() Stats {
	return Stats{
		Queries:            load(c.queries[:]),
		Results:            load(c.results[:]),
		Local:              c.local.Load(),
		CacheHits:          c.hits.Load(),
		CacheMisses:        c.misses.Load(),
		Upstream:           c.upstream.Load(),
		UpstreamErrors:     c.upErrors.Load(),
		TCPRetries:         c.tcpRetries.Load(),
		UpstreamLatency:    load(c.latency[:]),
		UpstreamLatencySum: time.Duration(c.latencySum.Load()),
		Malformed:          c.malformed.Load(),
		RateLimited:        c.limited.Load(),
		Truncated:          c.truncated.Load(),
	}
}
