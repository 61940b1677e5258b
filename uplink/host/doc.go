// Package host implements tapswitch's host-socket uplink (`tapswitch run
// --uplink host`, the default): every connection that package nat tracks
// leaves through an ordinary socket of the host, so the switch needs no
// privilege, no TAP and no route in the host's namespace, as slirp4netns,
// pasta and gvproxy do.
//
// The gateway sends the uplink IPv4 datagrams already translated by NAT:
// their source is the uplink's address (Config.Addr, 192.0.0.8 by default,
// RFC 7600's IPv4 dummy address, which never appears on a wire) and a
// mapped port. The uplink carries them as follows.
//
//   - TCP is terminated in a gVisor netstack (promiscuous, spoofing, a TCP
//     forwarder): a SYN makes the uplink dial the real destination with a
//     host socket; a refused or unreachable host connect becomes a RST to
//     the container, a successful one completes the handshake and the two
//     connections are spliced both ways with half-close (FIN) and resets
//     mapped both ways.
//   - UDP uses one unconnected host socket per NAT mapping (the translated
//     source port): the socket sends to whatever destination the container
//     uses, and a datagram from any sender is handed back as a packet to
//     the mapping; NAT does the filtering (endpoint-independent mapping,
//     RFC 4787 REQ-1). ICMP errors about its datagrams (IP_RECVERR) are
//     handed back as ICMP errors quoting them, which NAT translates to
//     the container (RFC 5508). A socket idle for Config.UDPTimeout is
//     closed.
//   - ICMP echo uses unprivileged ICMP sockets (SOCK_DGRAM, IPPROTO_ICMP),
//     one per echo identifier mapping. When the kernel does not permit
//     them (net.ipv4.ping_group_range), the uplink logs one warning and
//     counts the echo requests it drops.
//
// Published ports are host listeners (Publish): a TCP connection or UDP
// datagram accepted on the host is delivered through NAT into the container
// with the client's real address and port as its source. The container's
// kernel would drop a loopback source (a martian), so a client on the
// host's loopback (127.0.0.0/8) appears as Config.Loopback (192.0.0.1 by
// default) instead.
//
// Config.Loopback is also how a container reaches the host's own loopback
// when Config.HostLoopback is set: a connection to Loopback:PORT is made to
// 127.0.0.1:PORT (the gateway rewrites its own address to Loopback, so a
// container uses the gateway's address, as slirp4netns's 10.0.2.2). Without
// HostLoopback, such connections and any destination in 127.0.0.0/8 are
// refused (a RST for TCP, dropped for UDP) and counted; no host socket is
// made for them.
//
// Other addresses of the host (those of its interfaces) are reachable as
// any outside address is, as with slirp4netns.
//
// UDP and ICMP datagrams that containers send fragmented are reassembled
// (the netstack reassembles TCP's); UDP replies and echo replies larger
// than the MTU are fragmented.
//
// IPv6 (uplink.Sender6, ipv6.go) comes untranslated: the gateway routes a
// container's packets here with its own address as their source, and the
// same three ways carry them over AF_INET6 sockets, keyed by the
// container's address and port (or echo identifier) instead of a NAT
// mapping; the netstack has a second NIC for IPv6, without GSO.
// Config.Loopback6 stands for ::1 as Loopback does for 127.0.0.1. Published
// ports listen on both families (publish6.go).
package host
