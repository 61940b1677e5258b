// Package gso implements software segmentation offload and checksum
// completion for frames that carry a struct virtio_net_hdr
// (include/uapi/linux/virtio_net.h), the header an IFF_VNET_HDR TAP reads and
// writes in front of every Ethernet frame.
//
// A TAP with offloads on (TUNSETOFFLOAD) hands the switch TCP segments of up
// to 64 KiB (VIRTIO_NET_HDR_GSO_TCPV4/TCPV6, "TSO"), UDP datagrams to be cut
// into several (VIRTIO_NET_HDR_GSO_UDP_L4, "USO") and packets whose transport
// checksum is only partial (VIRTIO_NET_HDR_F_NEEDS_CSUM). Such a frame can go
// whole to another offload-capable TAP; for any other port the switch turns it
// into ordinary frames here: Segmenter does what the kernel's tcp_gso_segment
// and __udp_gso_segment do, and CompleteChecksum what skb_checksum_help does.
//
// Everything works on caller-owned byte slices and allocates nothing; a
// Segmenter is a small value meant to live on the caller's stack.
package gso

import (
	"encoding/binary"
	"errors"
)

// HdrLen is the length of struct virtio_net_hdr.
const HdrLen = 10

// Flags of virtio_net_hdr.flags.
const (
	FlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum from CsumStart, stored at CsumStart+CsumOffset
	FlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the checksum was verified
)

// Values of virtio_net_hdr.gso_type.
const (
	TypeNone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	TypeTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	TypeUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO, IP fragmentation; not supported)
	TypeTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	TypeUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO, Linux 6.2)
	TypeECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN, or-ed into the TCP types
)

// ErrMalformed is returned when a frame's headers are inconsistent with
// its virtio_net_hdr or its length: the frame cannot be forwarded to a port
// without offloads and is dropped.
var ErrMalformed = errors.New("gso: malformed frame")

// ErrUnsupported is returned for a well-formed frame this package cannot
// segment: UFO (VIRTIO_NET_HDR_GSO_UDP), an unknown gso_type, or IPv6
// extension headers before the transport header.
var ErrUnsupported = errors.New("gso: unsupported frame")

// Hdr is a decoded struct virtio_net_hdr. Its fields are little-endian on
// the wire: tapswitch sets TUNSETVNETLE on its TAPs, which is also the
// default on little-endian hosts.
type Hdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of the headers; a hint only (the kernel's skb_headlen)
	GSOSize    uint16 // payload bytes per segment (the MSS for TCP)
	CsumStart  uint16 // offset of the transport header from the Ethernet header
	CsumOffset uint16 // offset of the checksum field from CsumStart
}

// ParseHdr decodes the virtio_net_hdr at the start of b, which must be at
// least HdrLen bytes long.
func ParseHdr(b []byte) Hdr {
	_ = b[HdrLen-1]
	return Hdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// Put encodes h into the first HdrLen bytes of b.
func (h Hdr) Put(b []byte) {
	_ = b[HdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// IsPlain reports whether the frame (virtio_net_hdr first) is an ordinary
// one: no segmentation and no partial checksum. It reads two bytes and is
// what the datapath checks on every frame.
func IsPlain(frame []byte) bool {
	return frame[0]&FlagNeedsCsum == 0 && frame[1] == TypeNone
}
