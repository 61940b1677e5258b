package api

import (
	"context"
	"net/http"
	"net/url"
)

// Endpoints of the embedded DNS server:
//
//	PUT /v1/ports/{name}/aliases  Aliases -> Port
//
// Its counters are in Stats.DNS, its address in Info.DNS.

// DNSInfo is what a container needs to use the embedded DNS server.
type DNSInfo struct {
	// Nameserver is the server's address: the gateway's.
	Nameserver string `json:"nameserver"`
	// Nameserver6 is its IPv6 address, the gateway's, when the daemon
	// runs --ipv6.
	Nameserver6 string `json:"nameserver6,omitempty"`
	// Search is the search domain for bare names, e.g. "tapswitch".
	Search []string `json:"search"`
	// Upstreams are the forwarders given with --dns-upstream; empty
	// means those of the daemon's resolv.conf.
	Upstreams []string `json:"upstreams,omitempty"`
}

// Aliases is the body of PUT /v1/ports/{name}/aliases: the port's whole
// new list of aliases (empty removes them all).
type Aliases struct {
	Aliases []string `json:"aliases"`
}

// DNSStats are the embedded DNS server's counters (package dns, Stats).
type DNSStats struct {
	// Queries counts queries by type ("A", "AAAA", ..., "other").
	Queries map[string]uint64 `json:"queries"`
	// Results counts answers by rcode ("NOERROR", "NXDOMAIN", ...), and
	// "dropped" for queries not answered.
	Results map[string]uint64 `json:"results"`
	// Local counts queries answered from the containers' names.
	Local        uint64 `json:"local"`
	CacheHits    uint64 `json:"cache_hits"`
	CacheMisses  uint64 `json:"cache_misses"`
	CacheEntries uint64 `json:"cache_entries"`
	// Upstream counts queries sent upstream, UpstreamErrors those that
	// failed or timed out, TCPRetries truncated answers asked again
	// over TCP.
	Upstream       uint64 `json:"upstream"`
	UpstreamErrors uint64 `json:"upstream_errors"`
	TCPRetries     uint64 `json:"tcp_retries"`
	// UpstreamLatency counts upstream answers by latency bucket: the
	// keys are upper bounds in seconds ("0.001", ..., "+Inf"), not
	// cumulative; UpstreamLatencySum is their sum in seconds.
	UpstreamLatency    map[string]uint64 `json:"upstream_latency"`
	UpstreamLatencySum float64           `json:"upstream_latency_sum_seconds"`
	Malformed          uint64            `json:"malformed"`
	RateLimited        uint64            `json:"rate_limited"`
	Truncated          uint64            `json:"truncated"`
}

// SetAliases replaces the DNS aliases of the port called name.
func (c *Client) SetAliases(ctx context.Context, name string, aliases []string) (Port, error) {
	var p Port
	if aliases == nil {
		aliases = []string{}
	}
	err := c.do(ctx, http.MethodPut, "/v1/ports/"+url.PathEscape(name)+"/aliases", Aliases{Aliases: aliases}, &p)
	return p, err
}
