package gateway

import "sync/atomic"

// counter indexes the gateway's atomic counters.
type counter int

const (
	cntNone counter = iota // not a counter: "no reason"

	cntARPRequests
	cntARPReplies
	cntARPOther
	cntARPConflicts
	cntEchoReplies
	cntICMPErrors
	cntTCPResets
	cntRateLimited
	cntQueueDrops
	cntNeighLearned
	cntNeighEvicted

	cntForwarded
	cntFragmentsSent
	cntUplinkIn
	cntToContainer
	cntNATDrops
	cntUplinkErrors
	cntTTLExceeded
	cntFragNeeded
	cntPendingQueued
	cntPendingDropped
	cntPendingExpired
	cntARPRequestsSent
	cntNeighAdverts
	cntRouterAdverts
	cntForwarded6
	cntToContainer6
	cntNeighSolicits

	cntLocalIn
	cntLocalOut

	cntOffload
	cntTooBig
	cntMalformed
	cntBadIPv4
	cntBadChecksum
	cntMartian
	cntFragments
	cntNotForUs
	cntIPv6
	cntOtherEtherType
	cntNoErrorAllowed
	cntIgnored

	numCounters
)

// counters is a set of atomic counters indexed by counter.
type counters [numCounters]atomic.Uint64

func (c *counters) inc(i counter) { c[i].Add(1) }

// Stats is a snapshot of the gateway's counters. Each counter is read
// atomically; the snapshot as a whole is not taken at a single instant.
type Stats struct {
	// ARPRequests counts ARP requests for the gateway's address received.
	ARPRequests uint64
	// ARPReplies counts ARP replies the gateway queued.
	ARPReplies uint64
	// ARPOther counts valid ARP packets that were not requests for the
	// gateway's address (replies, requests for other hosts): learned
	// from, not answered.
	ARPOther uint64
	// ARPConflicts counts ARP packets from another host whose sender
	// address is the gateway's own.
	ARPConflicts uint64
	// EchoReplies counts ICMP echo replies queued.
	EchoReplies uint64
	// ICMPErrors counts ICMP errors queued (destination unreachable,
	// time exceeded).
	ICMPErrors uint64
	// TCPResets counts TCP resets queued for segments to the gateway.
	TCPResets uint64
	// RateLimited counts ICMP errors and TCP resets not sent because the
	// token bucket was empty.
	RateLimited uint64
	// QueueDrops counts replies dropped because the Read queue was full.
	QueueDrops uint64
	// NeighLearned counts neighbours added to the table (not refreshes).
	NeighLearned uint64
	// NeighEvicted counts neighbours evicted to make room in a full table.
	NeighEvicted uint64

	// Routing through NAT and the uplink (zero without an uplink).

	// Forwarded counts datagrams sent through the uplink.
	Forwarded uint64
	// FragmentsSent counts fragments sent for datagrams over the
	// uplink's MTU without DF.
	FragmentsSent uint64
	// UplinkIn counts datagrams the uplink handed to the gateway.
	UplinkIn uint64
	// ToContainer counts translated datagrams delivered to a container
	// (from the uplink, or hairpinned).
	ToContainer uint64
	// NATDrops counts datagrams NAT dropped (its own counters say why).
	NATDrops uint64
	// UplinkErrors counts datagrams the uplink failed to send.
	UplinkErrors uint64
	// TTLExceeded counts datagrams whose TTL ran out at the gateway
	// (answered with ICMP time exceeded when they came from a container).
	TTLExceeded uint64
	// FragNeeded counts datagrams with DF over the uplink's MTU,
	// answered with ICMP fragmentation needed.
	FragNeeded uint64
	// PendingQueued, PendingDropped and PendingExpired count datagrams
	// for a container whose MAC was unknown: queued while the gateway
	// ARPed, refused by a full queue, dropped unanswered.
	PendingQueued, PendingDropped, PendingExpired uint64
	// ARPRequestsSent counts ARP requests the gateway sent.
	ARPRequestsSent uint64
	// NeighAdverts counts neighbor advertisements sent (RFC 4861 7.2.4,
	// unsolicited ones included); RouterAdverts router advertisements.
	NeighAdverts, RouterAdverts uint64
	// Forwarded6 counts IPv6 packets sent through an uplink that carries
	// IPv6 (uplink.Sender6); ToContainer6 those from it delivered to a
	// container. Forwarded and ToContainer count IPv4 only.
	Forwarded6, ToContainer6 uint64
	// NeighSolicits counts neighbor solicitations the gateway sent for
	// containers' IPv6 addresses.
	NeighSolicits uint64

	// LocalIn counts datagrams handed to the LocalService (local.go);
	// LocalOut those it sent to containers.
	LocalIn, LocalOut uint64

	// Frames dropped or ignored, by reason.

	// Offload counts frames whose virtio_net_hdr asked for checksum
	// completion (VIRTIO_NET_HDR_F_NEEDS_CSUM) or carried a GSO
	// super-frame (gso_type not VIRTIO_NET_HDR_GSO_NONE).
	Offload uint64
	// TooBig counts frames or datagrams larger than the MTU.
	TooBig uint64
	// Malformed counts truncated frames and truncated or inconsistent ARP,
	// IPv4, ICMP, UDP and TCP headers.
	Malformed uint64
	// BadIPv4 counts IPv4 headers with a wrong version, IHL or total
	// length.
	BadIPv4 uint64
	// BadChecksum counts IPv4 header, ICMP, UDP and TCP checksum errors.
	BadChecksum uint64
	// Martian counts frames with an impossible address: a multicast or
	// all-zero source MAC, the gateway's own MAC or IPv4 address as
	// source, an IPv4 source that is not a single host (0.0.0.0/8,
	// loopback, broadcast, multicast, class E), or a loopback, 0.0.0.0/8
	// or class E destination.
	Martian uint64
	// Fragments counts IPv4 fragments addressed to the gateway, which
	// does not reassemble.
	Fragments uint64
	// NotForUs counts frames for other MACs (the switch's floods) that
	// were not ARP.
	NotForUs uint64
	// IPv6 counts IPv6 frames received while IPv6 is off (Config.Addr6).
	IPv6 uint64
	// OtherEtherType counts frames of other EtherTypes (802.1Q tags
	// included).
	OtherEtherType uint64
	// NoErrorAllowed counts datagrams the gateway cannot deliver but must
	// not answer with an ICMP error (RFC 1812 4.3.2.7): ICMP errors,
	// non-first fragments, broadcast or multicast destinations, sources
	// that are not a single host.
	NoErrorAllowed uint64
	// Ignored counts valid datagrams for the gateway that need no answer:
	// ICMP other than echo requests, and TCP resets.
	Ignored uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		ARPRequests:     c[cntARPRequests].Load(),
		ARPReplies:      c[cntARPReplies].Load(),
		ARPOther:        c[cntARPOther].Load(),
		ARPConflicts:    c[cntARPConflicts].Load(),
		EchoReplies:     c[cntEchoReplies].Load(),
		ICMPErrors:      c[cntICMPErrors].Load(),
		TCPResets:       c[cntTCPResets].Load(),
		RateLimited:     c[cntRateLimited].Load(),
		QueueDrops:      c[cntQueueDrops].Load(),
		NeighLearned:    c[cntNeighLearned].Load(),
		NeighEvicted:    c[cntNeighEvicted].Load(),
		Forwarded:       c[cntForwarded].Load(),
		FragmentsSent:   c[cntFragmentsSent].Load(),
		UplinkIn:        c[cntUplinkIn].Load(),
		ToContainer:     c[cntToContainer].Load(),
		NATDrops:        c[cntNATDrops].Load(),
		UplinkErrors:    c[cntUplinkErrors].Load(),
		TTLExceeded:     c[cntTTLExceeded].Load(),
		FragNeeded:      c[cntFragNeeded].Load(),
		PendingQueued:   c[cntPendingQueued].Load(),
		PendingDropped:  c[cntPendingDropped].Load(),
		PendingExpired:  c[cntPendingExpired].Load(),
		ARPRequestsSent: c[cntARPRequestsSent].Load(),
		NeighAdverts:    c[cntNeighAdverts].Load(),
		RouterAdverts:   c[cntRouterAdverts].Load(),
		Forwarded6:      c[cntForwarded6].Load(),
		ToContainer6:    c[cntToContainer6].Load(),
		NeighSolicits:   c[cntNeighSolicits].Load(),
		LocalIn:         c[cntLocalIn].Load(),
		LocalOut:        c[cntLocalOut].Load(),
		Offload:         c[cntOffload].Load(),
		TooBig:          c[cntTooBig].Load(),
		Malformed:       c[cntMalformed].Load(),
		BadIPv4:         c[cntBadIPv4].Load(),
		BadChecksum:     c[cntBadChecksum].Load(),
		Martian:         c[cntMartian].Load(),
		Fragments:       c[cntFragments].Load(),
		NotForUs:        c[cntNotForUs].Load(),
		IPv6:            c[cntIPv6].Load(),
		OtherEtherType:  c[cntOtherEtherType].Load(),
		NoErrorAllowed:  c[cntNoErrorAllowed].Load(),
		Ignored:         c[cntIgnored].Load(),
	}
}
