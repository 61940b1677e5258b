// Package nat implements tapswitch's network address translation: connection
// tracking and in-place rewriting of IPv4 and IPv6 packets for outbound
// masquerade (SNAT to the uplink address; NAT66 to its IPv6 address, what
// `ip6tables -t nat -j MASQUERADE` does), published ports (DNAT that keeps
// the client's address; IPv4 only), hairpinning, and the translation of ICMP
// and ICMPv6 errors. It does what
// `iptables -t nat -A POSTROUTING -s SUBNET -j MASQUERADE` plus Docker's `-p`
// DNAT rules do in the kernel (net/netfilter/nf_nat_core.c and
// nf_conntrack_core.c), as pure functions over byte slices: no I/O, no
// goroutines, no clock (every call that depends on time takes now, nanoseconds
// on a monotonic clock of the caller's choosing).
//
// # Packets
//
// [Table.FromInternal] takes a packet a container sent to the gateway whose
// destination is outside the containers' subnet; [Table.FromExternal] takes a
// packet that arrived at the uplink address. Both take an IPv4 or IPv6
// packet (header first, no Ethernet header), rewrite it in place and return a [Result] that
// says where it goes next ([ToExternal], [ToInternal]) or why it is dropped
// ([Drop] and a [DropReason], counted in [Stats]). The caller owns the
// packet; the table never keeps it after the call returns.
//
// Checksums are updated incrementally (RFC 1624 equation 3): the IPv4 header
// checksum and the TCP, UDP or ICMP checksum change only by the words that
// were rewritten, so a translation costs the same for a 64-byte and a
// 64-KiB packet, and a first fragment, whose L4 checksum covers data the
// table never sees, is translated correctly. A zero UDP checksum (none, RFC
// 768) stays zero; a computed zero is sent as 0xffff. When csumPartial is
// true the L4 checksum field holds only the folded pseudo-header sum, not
// inverted (virtio VIRTIO_NET_HDR_F_NEEDS_CSUM, Linux CHECKSUM_PARTIAL): then
// only the address changes are folded into it, because the device sums the
// rewritten ports itself when it completes the checksum.
//
// # IPv6 (NAT66)
//
// With [Config.External6] and [Config.Internal6] the table translates IPv6
// the same way, in the same table (one MaxEntries, one set of timeouts): a
// container's source becomes External6 and its port, chosen as for IPv4
// (port preservation, parity, endpoint-independent mapping) in a port space
// of its own; ICMPv6 echo is tracked with the identifier as the port;
// ICMPv6 errors (destination unreachable, packet too big, time exceeded,
// parameter problem) about tracked flows are translated with their quoted
// packet. IPv6 has no header checksum: the TCP, UDP and ICMPv6 checksums,
// whose pseudo-header covers the addresses, take the delta of the eight
// address words. IPv6 tuples are keyed in a map of their own (40-byte
// keys), so IPv4 keys stay 16 bytes. IPv6 fragments, UDP without a
// checksum (RFC 8200 8.1) and ICMP (not ICMPv6) are dropped, as is all
// IPv6 without External6.
//
// # Connection tracking
//
// A connection is an entry with two [Tuple]s, as in Linux conntrack: the
// original tuple (the first packet as it arrived) and the reply tuple (what a
// reply arrives as). A packet of the original direction is rewritten into the
// inverse of the reply tuple and a reply into the inverse of the original
// tuple. Entries are kept in a map keyed by a fixed-size byte array (the
// tuple plus the side it arrives on), so a lookup allocates nothing; the
// translation of a packet of a known connection holds only the read side of
// a sync.RWMutex, updates the entry's counters and state with atomics and
// allocates nothing. Creating an entry takes the write lock.
//
// Timeouts follow the RFC floors and are configurable ([Timeouts]): TCP
// established 2 h 4 min and transitory (partially open, FIN or RST seen)
// 4 min (RFC 5382 REQ-5); UDP 120 s once traffic was seen both ways (RFC 4787
// REQ-5), 30 s before; ICMP query 60 s (RFC 5508 REQ-1). Packets in both
// directions refresh an entry (RFC 4787 REQ-6 requires outbound refresh and
// allows inbound). An entry lives until [Table.Expire], which the owner runs
// periodically, finds it idle for longer than its timeout; until then it
// still translates. TCP state is tracked only as far as timeouts need it: a
// new TCP connection must start with a SYN (without ACK or RST), other TCP
// packets without an entry are dropped ([DropTCPNoSyn]), so a conntrack flush
// ends the connections it removes. A SYN that reuses the tuple of a closing
// connection (TIME_WAIT) starts its state over. An unsolicited SYN from
// outside is dropped silently (RFC 5382 REQ-4 allows no answer; the ICMP
// port unreachable it recommends after 6 s is not sent).
//
// The table holds at most [Config.MaxEntries] entries (65 536 by default).
// When it is full, a new connection first evicts an entry that is closing
// (TCP FIN or RST seen), else the oldest entry not yet established (TCP: the
// handshake is not complete; UDP, ICMP: no reply seen); when there is none,
// the new connection is refused and its packet dropped ([DropTableFull]).
// Both are O(1) amortized. Established connections are never evicted, so a
// flood of new flows cannot break them. [Stats] counts evictions and
// refusals. At about 300 bytes of heap per entry (measured with 200 000),
// the default table takes about 20 MB when full.
//
// # Mappings (RFC 4787, RFC 5382)
//
// Mapping is endpoint independent (RFC 4787 REQ-1, RFC 5382 REQ-1): every
// connection from one internal address and port (ICMP: identifier) uses the
// same external port, whatever the destination. The external port is the
// internal one where it is free (port preservation, RFC 4787 REQ-3's
// recommendation), else the first free port from [Config.PortMin] to
// [Config.PortMax] after a start derived from the internal endpoint; ports
// below 1024 are kept below 1024 when the range allows it, others at or
// above 1024 (RFC 4787 REQ-3), and a port of the internal port's parity is
// taken while one is free (port parity preservation, RFC 4787 REQ-4).
// There is no port overloading (RFC 4787 REQ-3 a): an external port belongs
// to one internal endpoint at a time, and when the range is exhausted the new
// connection is dropped ([DropNoPort]). There is one external address, so
// address pooling is "paired" (REQ-2) trivially. A mapping lives as long as
// a connection uses it. Published host ports are never used for mappings.
//
// Filtering is address and port dependent by default (RFC 4787 REQ-8 allows
// it; it is what Linux MASQUERADE does): a packet from outside reaches a
// container only as a reply of a connection the container opened, or on a
// published port. With [Config.EndpointIndependentFiltering], a packet from
// any address and port to the external port of a live mapping is let in and
// creates a connection to the mapped internal endpoint (RFC 4787 REQ-8's
// recommendation for transparency). With that option set, containers can also
// reach each other's mappings through the external address (hairpinning of
// dynamic mappings).
//
// # Published ports
//
// A [Publish] (Docker's `-p [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/PROTO]`,
// parsed by [ParsePublish]) makes a packet from outside to the external
// address and a host port create a connection to the container's port: the
// destination is rewritten, the source is kept, so the container sees the
// real client address. A container reaching the external address and a
// published port is hairpinned (RFC 4787 REQ-9, RFC 5382 REQ-8): the
// destination is rewritten to the target container and the source to the
// external address and the sender's mapped port, so the target's replies come
// back through the table; ICMP errors on hairpinned connections are
// hairpinned too (RFC 5508 REQ-7).
//
// # ICMP
//
// ICMP echo request and reply are tracked with the identifier as the port
// (the request's source port and the reply's destination port in a [Tuple]);
// the identifier is mapped like a port. ICMP errors (destination unreachable,
// including fragmentation needed, time exceeded, parameter problem) that quote
// a packet of a tracked connection are translated (RFC 5508 REQ-3, REQ-4):
// the embedded IP and TCP, UDP or ICMP header are reverted to what the other
// side sent, the embedded IP header checksum and (when quoted) the embedded
// L4 checksum are updated, the outer destination becomes the embedded
// source; an error from a container leaves with the external address as its
// outer source. The ICMP checksum of an error is verified first (an invalid
// one is dropped, [DropBadChecksum]) and computed again after the rewrite.
// Errors that quote no tracked connection, and ICMP errors about ICMP errors,
// are dropped.
//
// # Fragments
//
// IPv4 fragments are not reassembled. A first fragment (offset 0, more
// fragments set) carries the L4 header and is translated and tracked like
// any packet; the incremental checksum update is exact although the table
// sees only part of the datagram. The table remembers for 30 s (Linux's
// ipfrag_time) what the first fragment's addresses became, per datagram
// (side, protocol, addresses, IP identification), in a fixed array of 1024
// slots, and gives the later fragments of that datagram the same addresses.
// A later fragment that arrives before its first fragment, or after 30 s,
// or whose slot was taken by a newer datagram, is dropped and counted
// ([DropFragment]); translated ones are counted in [Stats].Fragments.
// Fragmented datagrams therefore pass when their first fragment comes first,
// which is the order in which Linux sends them; RFC 4787 REQ-14 (out of
// order fragments MUST be handled, which means buffering them) is not met.
// Fragmenting a packet that exceeds the uplink MTU (REQ-13) is the caller's
// job, as is answering fragmentation needed when DF is set.
//
// # Concurrency
//
// A [Table] is safe for concurrent use. FromInternal and FromExternal are
// called from several goroutines at once; the control-plane methods
// (publishes, listings, flushes, Expire) may run at the same time.
package nat
