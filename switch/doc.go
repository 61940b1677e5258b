// Package vswitch implements tapswitch's datapath: a learning Ethernet switch
// over a set of Ports.
//
// Every port has one ingress goroutine. It reads a frame into a buffer taken
// from the switch's pool, learns the source MAC into the FDB, looks up the
// destination and writes the frame to one port (known unicast) or to every
// other port (broadcast, multicast, unknown unicast). The write happens on the
// ingress goroutine, so a frame is never queued and never copied between read
// and write. The port table is an immutable snapshot behind an atomic.Pointer:
// the hot path takes no exclusive lock, logs nothing and allocates nothing.
//
// A frame on the datapath is a virtio_net_hdr (VnetHdrLen bytes, as the
// kernel's TAP driver reads and writes it with IFF_VNET_HDR) followed by an
// Ethernet frame. Ports that have no such header (the gateway, test ports)
// write a zero header on Read and ignore it on Write.
package vswitch
