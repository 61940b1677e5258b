// Package afpacket implements a port of the switch over a network
// interface of the switch's own namespace (the switch's end of a veth
// pair) through an AF_PACKET socket with a memory-mapped receive ring: an
// experiment of issue 15 against the TAP port (switch/tap/io_linux.go
// records how it measured).
//
// Frames keep the layout of vswitch.Port: a struct virtio_net_hdr
// (PACKET_VNET_HDR) in front of the Ethernet frame, so TSO/USO super-frames
// and partial checksums cross as they do on a TAP with offloads.
package afpacket
