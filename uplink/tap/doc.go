// Package tap implements the routed TAP uplink of tapswitch: the switch
// owns a TAP device in another network namespace (a "lan" playing the
// outside world in tests and labs) and is a host on that link, with its own
// MAC and IPv4 address, and with Config.Addr6 an IPv6 address too (nd.go:
// neighbor discovery for its addresses and next hops; NAT66 in front).
//
// As a host on the link, a TAP uplink
//
//   - answers ARP requests for its address (RFC 826) and learns the sender
//     of every ARP packet from its link;
//   - resolves the next hop of each packet it sends (the configured gateway,
//     or the destination itself when it is on the link) with ARP, holding
//     packets in a small bounded queue while it resolves (like the kernel's
//     unres_qlen), and refreshing an entry in use before it expires so that
//     steady traffic never waits;
//   - hands every IPv4 datagram addressed to its MAC and its address to the
//     handler given to Start (the gateway, which runs NAT), and ignores the
//     rest, counting it.
//
// The namespace side of the link (the interface named Config.IfName) is the
// namespace's own: tapswitch creates it up, without an address, and the
// owner of the namespace configures it (an address in the uplink's prefix,
// or a bridge), as one plugs a cable into a network.
//
// Sending a packet of a resolved next hop allocates nothing: the caller
// leaves Headroom bytes in front of the packet for the virtio_net_hdr and
// the Ethernet header.
package tap
