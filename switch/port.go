package vswitch

import "errors"

// VnetHdrLen is the length of struct virtio_net_hdr (include/uapi/linux/virtio_net.h)
// that leads every frame on the datapath.
const VnetHdrLen = 10

// Headroom is the space the datapath keeps before the virtio_net_hdr in every
// buffer it passes to Port.Read and Port.Write, so that a frame can grow at the
// front (an 802.1Q tag) without a copy.
const Headroom = 32

// MaxFrame is the largest frame (virtio_net_hdr included) a port may return
// from Read: a 64 KiB GSO super-frame plus its Ethernet and VLAN headers.
const MaxFrame = VnetHdrLen + 14 + 4 + 65535

// BufSize is the size of the buffers the datapath passes to Port.Read.
const BufSize = Headroom + MaxFrame

// ErrFrameTooBig is returned by Port.Write when a frame is larger than the
// port can carry; the datapath counts it as a transmit drop.
var ErrFrameTooBig = errors.New("frame too big for port")

// Port is one attachment point of the switch: a TAP device, the gateway, or an
// in-memory port in tests.
//
// A frame passed to or returned from a Port is buf[offset:offset+n]: a
// virtio_net_hdr of VnetHdrLen bytes followed by an Ethernet frame. The caller
// owns buf; a Port never keeps a reference to it after the call returns.
type Port interface {
	// Read blocks until a frame arrives and reads it into buf[offset:],
	// returning its length, virtio_net_hdr included. len(buf)-offset is at
	// least MaxFrame. Read is called by one goroutine at a time. After Close
	// it returns an error wrapping net.ErrClosed; any other error means the
	// port is gone (for a TAP: the device or its namespace was deleted) and
	// the switch removes it.
	Read(buf []byte, offset int) (int, error)

	// Write sends the frame buf[offset:]. It is safe for concurrent use and
	// must not block for long: a port that cannot take a frame drops it and
	// returns an error, which the switch counts. Write must not modify
	// buf[offset:]: a flood hands the same frame to every port in turn.
	Write(buf []byte, offset int) (int, error)

	// Close releases the port and makes a blocked Read return. It is safe to
	// call while Write is in progress on other goroutines.
	Close() error

	// Name is a short, stable name for logs and listings.
	Name() string
}
