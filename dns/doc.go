// Package dns implements the switch's embedded DNS server: the names of
// the containers attached to it, and the rest forwarded to upstream
// resolvers through a cache. It is built on github.com/miekg/dns.
//
// The server is the gateway's local service (gateway.LocalService): the
// gateway hands it the datagrams containers send to port 53 of its
// address, and of its IPv6 address when the network has IPv6 (Config.Addr6),
// and its answers go back through the gateway. UDP queries are answered
// on the spot (udp.go): the answer is built as an IPv4 or IPv6 UDP
// packet, at most the MTU (larger ones are truncated, TC set), into the
// buffer the gateway gives (which the switch forwards on the querier's own
// goroutine: vswitch.Answerer), and a query that needs an upstream waits
// on a goroutine of its own. A question asked again is answered from the
// packed cache (packed.go): the answer as it was sent, with its ID, its
// question's spelling and its TTLs patched, without parsing or packing
// and without allocating. TCP (RFC 7766: truncated
// answers, large TXT) goes into a small gVisor netstack of the server's own
// (stack.go, as the host uplink uses one), whose gonet listener serves
// length-prefixed queries with miekg/dns's Conn. Nothing listens on a
// socket of the host: the uplink side never reaches the server, which is
// not an open resolver.
//
// Local names (zone.go): every port's name and aliases under the domain
// (default "tapswitch"), and the bare names too, answered A and AAAA (for
// ports with an IPv6 address: Host.IPv6), PTR in the reverse zones of the
// subnet (in-addr.arpa) and the IPv6 subnet (ip6.arpa), "gateway.DOMAIN",
// and host.tapswitch.internal and host.containers.internal
// for the gateway when the host loopback is on. Unknown names in the
// domain or the subnets' reverse zones get NXDOMAIN with the zone's SOA.
// Local answers have TTL 0: a name follows attach and detach at once.
//
// Scoping: a client sees the ports that share a VLAN with it (its access
// VLAN, or its trunk's). With Isolate (--icc=false) a client sees only its
// own names: it cannot reach the others, so naming them would only show
// the network's layout (Docker still resolves them; this is a choice).
//
// Forwarding (forward.go): other names go to the upstreams (Config or
// resolv.conf, re-read when it changes; a systemd-resolved stub at
// 127.0.0.53 is replaced by the upstreams it exposes in
// /run/systemd/resolve/resolv.conf) over ordinary sockets of the daemon's
// namespace, UDP first and TCP when the answer is truncated, with the
// client's EDNS0 OPT passed on. Answers are cached (cache.go) for their
// TTL, negative ones for the SOA's minimum (RFC 2308 5), in a bounded
// table. An upstream that does not answer in time yields SERVFAIL.
//
// Malformed queries are answered FORMERR or dropped, and counted; each
// client is rate limited (Config.Rate queries per second).
package dns
