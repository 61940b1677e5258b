package vxlan

import (
	"net/netip"
	"sync/atomic"
)

// VTEP is a remote VXLAN tunnel end point, with its counters. A VTEP is
// created by the tunnel (for each configured remote, and the first time an
// allowed source sends a valid datagram) and lives as long as the tunnel;
// its counters are updated atomically by the datapath.
type VTEP struct {
	// Addr is the VTEP's underlay address.
	Addr netip.Addr
	// Remote is whether the VTEP is a configured remote, one that
	// broadcast, multicast and unknown unicast are replicated to.
	Remote bool

	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	txDropped          atomic.Uint64
}

// VTEPStats are the counters of one remote VTEP: rx is what came from it
// (decapsulated frames accepted), tx what was sent to it. Bytes count
// inner Ethernet frames.
type VTEPStats struct {
	Addr      netip.Addr `json:"addr"`
	Remote    bool       `json:"remote"`
	RxPackets uint64     `json:"rx_packets"`
	RxBytes   uint64     `json:"rx_bytes"`
	TxPackets uint64     `json:"tx_packets"`
	TxBytes   uint64     `json:"tx_bytes"`
	// TxDropped counts frames for this VTEP that the socket refused.
	TxDropped uint64 `json:"tx_dropped"`
}

// Stats returns v's counters.
func (v *VTEP) Stats() VTEPStats {
	return VTEPStats{
		Addr:      v.Addr,
		Remote:    v.Remote,
		RxPackets: v.rxPackets.Load(),
		RxBytes:   v.rxBytes.Load(),
		TxPackets: v.txPackets.Load(),
		TxBytes:   v.txBytes.Load(),
		TxDropped: v.txDropped.Load(),
	}
}
