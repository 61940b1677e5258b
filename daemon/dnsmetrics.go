package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapswitch/tapswitch/dns"
)

var (
	mDNSQueries  = desc("dns_queries_total", "Queries to the embedded DNS server, by type.", "type")
	mDNSResults  = desc("dns_responses_total", "Answers of the embedded DNS server by rcode, and dropped queries (rate limited, unparseable).", "rcode")
	mDNSLocal    = desc("dns_local_answers_total", "Queries answered from the containers' names.")
	mDNSCache    = desc("dns_cache_lookups_total", "Forwarded queries looked up in the cache, by result: hit, miss.", "result")
	mDNSEntries  = desc("dns_cache_entries", "Answers in the DNS cache.")
	mDNSUpstream = desc("dns_upstream_queries_total", "Queries sent to upstream resolvers, by result: sent, error (failed or timed out), tcp_retry (truncated, asked again over TCP).", "result")
	mDNSDropped  = desc("dns_dropped_total", "Queries not answered normally, by reason: malformed, rate_limited, truncated (UDP answer cut to the client's size).", "reason")
	mDNSLatency  = desc("dns_upstream_latency_seconds", "Time upstream resolvers took to answer.")
)

var dnsDescs = []*prometheus.Desc{mDNSQueries, mDNSResults, mDNSLocal, mDNSCache, mDNSEntries, mDNSUpstream, mDNSDropped, mDNSLatency}

// collectDNS sends the DNS server's metrics, if it runs.
func (d *Daemon) collectDNS(ch metricSink) {
	if d.dns == nil {
		return
	}
	st := d.dns.Stats()
	for i, t := range dns.QueryTypes {
		ch.counter(mDNSQueries, st.Queries[i], t)
	}
	for i, r := range dns.Results {
		ch.counter(mDNSResults, st.Results[i], r)
	}
	ch.counter(mDNSLocal, st.Local)
	ch.counters(mDNSCache, []labelled{{"hit", st.CacheHits}, {"miss", st.CacheMisses}})
	ch.gauge(mDNSEntries, float64(st.CacheEntries))
	ch.counters(mDNSUpstream, []labelled{{"sent", st.Upstream}, {"error", st.UpstreamErrors}, {"tcp_retry", st.TCPRetries}})
	ch.counters(mDNSDropped, []labelled{{"malformed", st.Malformed}, {"rate_limited", st.RateLimited}, {"truncated", st.Truncated}})
	buckets := map[float64]uint64{}
	var n uint64
	for i, b := range dns.LatencyBuckets[:len(dns.LatencyBuckets)-1] {
		n += st.UpstreamLatency[i]
		buckets[b.Seconds()] = n
	}
	n += st.UpstreamLatency[len(st.UpstreamLatency)-1]
	ch <- prometheus.MustNewConstHistogram(mDNSLatency, n, st.UpstreamLatencySum.Seconds(), buckets)
}
