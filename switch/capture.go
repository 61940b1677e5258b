package vswitch

import (
	"fmt"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
)

// CapturePoint returns the capture point of a port: attach a
// capture.Session to it to receive copies of the Ethernet frames (without
// their virtio_net_hdr) the switch receives from the port (capture.In) and
// hands to it (capture.Out). Out frames are captured just before the port's
// Write, as tcpdump sees a device's egress before its driver takes the
// frame: timestamps stay in causal order (a TAP write can deliver the
// container's answer before it returns), and a frame the port then fails to
// take is in the capture and counted in TxDropped. A GSO super-frame is
// delivered whole, as the port's Read returned it or as it is given to the
// port's Write.
//
// The point lives in the switch's own state for the port rather than in a
// decorator around the Port, so that the Port the switch calls is the one
// that was attached, with every optional interface it implements (such as
// offload capabilities) visible to the switch. With no session attached,
// capture costs the datapath one atomic load per frame and direction.
func (s *Switch) CapturePoint(id fdb.PortID) (*capture.Point, error) {
	pt := s.ports.Load().byID[id]
	if pt == nil {
		return nil, fmt.Errorf("port %d: %w", id, ErrNoPort)
	}
	return &pt.capture, nil
}
