package host

import "sync/atomic"

// Stats are the uplink's counters, each read atomically.
type Stats struct {
	TxPackets uint64 `json:"tx_packets"` // datagrams the gateway sent to the host
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"` // datagrams handed back to the gateway
	RxBytes   uint64 `json:"rx_bytes"`

	TCPActive  uint64 `json:"tcp_active"`  // spliced TCP connections now
	TCPTotal   uint64 `json:"tcp_total"`   // spliced TCP connections made
	TCPRefused uint64 `json:"tcp_refused"` // host connects that failed: a RST to the container
	TCPResets  uint64 `json:"tcp_resets"`  // connections ended by a reset, from either side
	TCPLimit   uint64 `json:"tcp_limit"`   // connections refused past MaxTCP

	UDPSockets uint64 `json:"udp_sockets"` // host UDP sockets open now (one per mapping)
	UDPTotal   uint64 `json:"udp_total"`   // host UDP sockets opened
	UDPDropped uint64 `json:"udp_dropped"` // datagrams dropped: no socket (past MaxUDP or failed), send failed
	// Reassembled counts UDP and ICMP datagrams containers sent
	// fragmented, reassembled; FragmentsDropped the fragments dropped
	// (over the limits, inconsistent, or their datagram timed out,
	// counted once per datagram).
	// UDPErrors counts ICMP errors about UDP datagrams (port
	// unreachable, ...) that the host received and the uplink handed
	// back to the mapping.
	UDPErrors        uint64 `json:"udp_errors"`
	Reassembled      uint64 `json:"reassembled"`
	FragmentsDropped uint64 `json:"fragments_dropped"`

	ICMPSockets uint64 `json:"icmp_sockets"` // ICMP echo sockets open now
	ICMPTotal   uint64 `json:"icmp_total"`
	// ICMPDenied counts echo requests dropped because the kernel does not
	// permit unprivileged ICMP sockets (net.ipv4.ping_group_range).
	ICMPDenied  uint64 `json:"icmp_denied"`
	ICMPDropped uint64 `json:"icmp_dropped"` // echo requests dropped otherwise

	// LoopbackRefused counts connections and datagrams to the host's
	// loopback refused (no --host-loopback, or 127.0.0.0/8 itself).
	LoopbackRefused uint64 `json:"loopback_refused"`

	Listeners       uint64 `json:"listeners"`        // host listeners of published ports now
	PublishAccepted uint64 `json:"publish_accepted"` // TCP connections accepted on published ports
	PublishFailed   uint64 `json:"publish_failed"`   // of those, not delivered (the container refused or did not answer)
	// PublishSpliced counts the accepted connections from the host's
	// loopback spliced to a connection inside the container
	// (uplink.LocalSplicer); SpliceFailed those the dialer failed to
	// open, which went through the netstack instead.
	PublishSpliced uint64 `json:"publish_spliced"`
	SpliceFailed   uint64 `json:"splice_failed"`

	Malformed uint64 `json:"malformed"`     // datagrams from the gateway that were not IPv4
	Other     uint64 `json:"other_dropped"` // other protocols, ICMP other than echo, bad destinations
	Errors    uint64 `json:"errors"`        // socket errors other than the above
}

type counters struct {
	txPackets, txBytes, rxPackets, rxBytes                                atomic.Uint64
	tcpActive, tcpTotal, tcpRefused, tcpResets, tcpLimit                  atomic.Uint64
	udpSockets, udpTotal, udpDropped, udpErrors, reassembled, fragDropped atomic.Uint64
	icmpSockets, icmpTotal, icmpDenied, icmpDropped                       atomic.Uint64
	loopbackRefused, listeners, pubAccepted, pubFailed                    atomic.Uint64
	pubSpliced, spliceFailed                                              atomic.Uint64
	malformed, otherDropped, errors                                       atomic.Uint64
}

// Stats returns the uplink's counters.
func (u *Uplink) Stats() Stats {
	c := &u.stats
	return Stats{
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TCPActive: c.tcpActive.Load(), TCPTotal: c.tcpTotal.Load(), TCPRefused: c.tcpRefused.Load(),
		TCPResets: c.tcpResets.Load(), TCPLimit: c.tcpLimit.Load(),
		UDPSockets: c.udpSockets.Load(), UDPTotal: c.udpTotal.Load(), UDPDropped: c.udpDropped.Load(),
		UDPErrors: c.udpErrors.Load(), Reassembled: c.reassembled.Load(), FragmentsDropped: c.fragDropped.Load(),
		ICMPSockets: c.icmpSockets.Load(), ICMPTotal: c.icmpTotal.Load(), ICMPDenied: c.icmpDenied.Load(),
		ICMPDropped:     c.icmpDropped.Load(),
		LoopbackRefused: c.loopbackRefused.Load(),
		Listeners:       c.listeners.Load(), PublishAccepted: c.pubAccepted.Load(), PublishFailed: c.pubFailed.Load(),
		PublishSpliced: c.pubSpliced.Load(), SpliceFailed: c.spliceFailed.Load(),
		Malformed: c.malformed.Load(), Other: c.otherDropped.Load(), Errors: c.errors.Load(),
	}
}
