package tap

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// GSOMaxSegs returns the gso_max_segs the TAP had when Create made it
// (Config.GSOMaxSegs, or the kernel's default MaxGSOSegs) or Adopt took it
// over (read from the kernel), 0 if not known. SetGSOMaxSegs does not
// change it: its caller knows what it set.
func (d *Device) GSOMaxSegs() int { return d.gsoMaxSegs }

// SetGSOMaxSegs sets the gso_max_segs of the TAP named name, with the MAC
// mac, in the namespace at path (checked as OpenNetns does) to n,
// 1..MaxGSOSegs (MaxGSOSegs is the kernel's default, no bound): what
// Config.GSOMaxSegs sets at creation, for a TAP that is already in its
// container's namespace. Nothing is written when the TAP has n already.
// It needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the namespace (the
// namespace helper does it for a daemon without them).
//
// The kernel copies a device's gso_max_segs into a TCP socket when the
// socket's route is set up (sk_setup_caps: at connect, at accept, and when
// a stale route is looked up again), so connections made after the change
// follow it, and established ones keep the bound they had: a super-frame
// of more segments than the device now allows is cut up by the kernel
// before the device (gso_features_check drops the GSO features for it),
// which is correct but slow; under a raised bound they keep sending the
// smaller super-frames.
//
// Errors are those of Adopt: ErrNetnsNotFound or ErrNotNetns for the path,
// one wrapping netlink.LinkNotFoundError when there is no such interface,
// ErrNotOurs when it is not that TAP, and ErrInvalidConfig for n.
func SetGSOMaxSegs(path, name string, mac net.HardwareAddr, n int) error {
	if n < 1 || n > MaxGSOSegs {
		return fmt.Errorf("%w: gso_max_segs %d: out of range 1..%d", ErrInvalidConfig, n, MaxGSOSegs)
	}
	err := withinNetns(path, func(h *netlink.Handle) error {
		link, err := savedLink(h, name, mac)
		if err != nil {
			return err
		}
		if link.Attrs().GSOMaxSegs == uint32(n) {
			return nil
		}
		return h.LinkSetGSOMaxSegs(link, n)
	})
	if err != nil {
		return fmt.Errorf("set gso_max_segs %d of tap %s in %s: %w", n, name, path, err)
	}
	return nil
}
