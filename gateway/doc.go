// Package gateway implements the containers' default router as a port of
// the switch (a vswitch.Port named "gateway").
//
// The gateway is the containers' L2/L3 endpoint. It
//
//   - answers ARP requests for its address (RFC 826) and learns the sender
//     of every valid ARP packet, and the source of every IPv4 datagram sent
//     to it, into a neighbour table of the hosts of its subnet;
//   - replies to ICMP echo requests to its address (RFC 792);
//   - hands TCP and UDP to its address for the ports its LocalService
//     claims (Config.Local, local.go: the DNS server) to that service,
//     whose answers SendLocal delivers; only containers reach it;
//   - answers other UDP to its address with ICMP port unreachable, TCP with a
//     reset as a host in the CLOSED state (RFC 9293 3.10.7.1), and other
//     protocols with ICMP protocol unreachable;
//   - with NAT and an uplink (Config.NAT, Config.Uplink), routes datagrams
//     to destinations outside its subnet (RFC 1812 5.3): TTL 1 is answered
//     with ICMP time exceeded, DF over the uplink's MTU with fragmentation
//     needed (RFC 1191), the TTL is decremented, NAT translates
//     (nat.Table.FromInternal) and the datagram goes out through the uplink,
//     fragmented if it has no DF and is over the MTU, or, hairpinned, to a
//     container; datagrams the uplink receives come in through FromUplink
//     (nat.Table.FromExternal; those with TTL 1 or larger than the
//     gateway's MTU are dropped and counted, without an ICMP error to the
//     outside); echo requests to the uplink's address are
//     answered (a host on that link does). A container's MAC comes from the neighbour
//     table; when it is unknown the gateway broadcasts an ARP request and
//     holds the datagrams in a small bounded queue (32 per host, 256 in all,
//     3 s) until the reply, counting what it drops;
//   - with IPv6 (Config.Addr6) and NAT66 (a NAT table with External6 and an
//     uplink.NAT66, nat6.go), routes IPv6 the same way: hop limit 1 gets
//     time exceeded, a packet over the uplink's MTU packet too big with
//     that MTU (routers do not fragment IPv6), NAT66 translates, and the
//     containers' MACs are learned from what they send, their NS and NA,
//     or asked with a neighbor solicitation (neigh6.go); TCP/IPv6
//     super-frames cross whole as TCP/IPv4 ones do (offload6.go); an
//     uplink that re-originates IPv6 itself (uplink.Sender6, the host
//     uplink) gets it untranslated instead (route6.go); on the link it
//     answers neighbor solicitations, router solicitations with router
//     advertisements, and echo requests (ipv6.go);
//   - without an uplink, answers datagrams for every other destination with
//     ICMP network unreachable;
//   - ignores (and counts) IPv6 when it has no IPv6 address, frames for
//     other MACs that are not ARP or neighbor discovery, and everything it
//     cannot parse.
//
// ICMP errors follow RFC 1812: at most 576 bytes quoting as much of the
// offending datagram as fits (4.3.2.3), never about an ICMP error, a
// non-first fragment, a broadcast or multicast, or a source that is not a
// single host (4.3.2.7), and rate limited by a token bucket like the
// kernel's icmp_ratelimit. TCP resets share that bucket.
//
// The gateway does not reassemble fragments: fragments addressed to it are
// dropped and counted. Offloads (offload.go) are on only with an uplink that
// takes TCP super-segments whole (uplink.GSOSender, the host uplink): then the
// gateway's port takes csum and tso4, forwards a container's TCP
// super-frame to the outside through NAT once, with its partial checksum
// updated, completes or segments in software the other frames that carry
// offloads, and FromUplinkGSO delivers the uplink's super-segments to
// containers as one frame with a GSO virtio_net_hdr. Otherwise the switch
// segments such frames before it delivers them to the gateway.
//
// Write parses every frame by hand, bounds-checking each offset, handles it
// synchronously and never blocks: replies are built in pooled buffers and
// wait in a bounded queue for Read, which copies them into the caller's
// buffer behind a zero virtio_net_hdr (or the super-segment's). A full queue drops the reply and
// counts it. Packets that NAT and the uplinks will later hand to the
// gateway for a container take the same way out, their destination MAC
// resolved through the neighbour table (Lookup).
package gateway
