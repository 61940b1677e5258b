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
//
// With offloads, the header may say that the frame is a GSO super-frame (up
// to 64 KiB of TCP or UDP to be cut into MTU-sized segments) or that its
// transport checksum is partial. Such a frame goes whole to a port that
// implements Offloader and accepts it (a TAP with the same offloads), and
// is segmented or has its checksum completed by package gso, into a pooled
// buffer of the ingress goroutine, for any other port (offload.go). The one
// cost every frame pays is a look at two bytes of the header.
package vswitch
