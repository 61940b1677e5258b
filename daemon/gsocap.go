package daemon

import (
	"context"
	"net"
	"sync"

	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/switch/tap"
)

// The containers' TAPs follow the tunnels (issue 19): with a VXLAN tunnel
// each TAP's gso_max_segs is what one of the tunnel's sendmsgs carries
// (tapGSOMaxSegs), without one the kernel's default, no bound. Attach sets
// it at creation; syncGSOCaps brings the TAPs attached before a tunnel
// was added, or the last removed, and the TAPs a restarted daemon adopted,
// to the bound of the tunnels there are now.
//
// The kernel copies a device's gso_max_segs into a TCP socket only when
// the socket's route is set up (sk_setup_caps: at connect, at accept, when
// a stale route is looked up again): connections made after the change
// follow it; established ones keep their bound, so after a tunnel is added
// their super-frames of more segments are cut up by the kernel before the
// TAP (gso_features_check), correct but slow, and after the last is
// removed they go on sending the smaller ones.

// gsoCaps is the daemon's state for syncGSOCaps.
type gsoCaps struct {
	// mu serializes syncs, and guards the gso fields of every attachment
	// (gsoSegs, gsoWarned) once it is attached. The datapath never takes
	// it; it is taken before d.mu and d.vx.mu, which are released before
	// any TAP is changed.
	mu sync.Mutex
	// set sets the bound of a's TAP; nil means setTapGSO. Tests only.
	set func(a *attachment, n int) error
}

// gsoBound is the gso_max_segs a TAP of MTU mtu is to have with the
// tunnels there are now: tapGSOMaxSegs, or the kernel's default (no
// bound) when there is no tunnel.
func (d *Daemon) gsoBound(mtu int) int {
	if n := d.tapGSOMaxSegs(mtu); n > 0 {
		return n
	}
	return tap.MaxGSOSegs
}

// syncGSOCaps brings the TAP of every attached port to gsoBound. Called
// after a tunnel is added or removed, without any lock held.
func (d *Daemon) syncGSOCaps() { d.syncGSO(nil) }

// syncGSO brings the TAP of a to gsoBound if a is still attached (every
// attached port's when a is nil). A TAP known to have its bound is left
// alone; a failure is a warning, once per port, and the TAP is tried
// again at the next sync. An attachment calls it for itself once attached,
// so that a tunnel added or removed while its TAP was being made, which
// that sync did not see, is caught up: of two syncs, the later sees both
// the tunnel and the port.
func (d *Daemon) syncGSO(only *attachment) {
	d.gso.mu.Lock()
	defer d.gso.mu.Unlock()
	select {
	case <-d.closed:
		return
	default:
	}
	d.mu.Lock()
	ports := make([]*attachment, 0, len(d.ports))
	for _, a := range d.ports {
		if only == nil || a == only {
			ports = append(ports, a)
		}
	}
	d.mu.Unlock()
	set := d.gso.set
	if set == nil {
		set = d.setTapGSO
	}
	changed := 0
	for _, a := range ports {
		want := d.gsoBound(a.mtu)
		if a.gsoSegs == want {
			continue
		}
		if err := set(a, want); err != nil {
			a.gsoSegs = 0 // not known: tried again next time
			if !a.gsoWarned && d.attached(a) {
				a.gsoWarned = true
				d.log.Warn("gso_max_segs of the port's TAP not set: its super-frames may cross a tunnel in two sendmsgs, or be bounded without one (said once per port)",
					"port", a.name, "netns", a.netns, "ifname", a.ifname, "gso_max_segs", want, "err", err)
			}
			continue
		}
		a.gsoSegs = want
		changed++
	}
	if changed > 0 && only == nil {
		d.log.Info("containers' TAPs brought to the tunnels' gso_max_segs", "ports", changed)
	}
}

// attached reports whether a is still attached (a port detached or gone
// while its bound was set fails without being worth a warning).
func (d *Daemon) attached(a *attachment) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ports[a.name] == a
}

// setTapGSO sets the gso_max_segs of a's TAP to n in its namespace: itself
// with CAP_NET_ADMIN, through the namespace helper for a TAP the helper
// made or adopted.
func (d *Daemon) setTapGSO(a *attachment, n int) error {
	mac := net.HardwareAddr(a.mac[:])
	if !a.helper {
		return tap.SetGSOMaxSegs(a.netns, a.ifname, mac, n)
	}
	return d.withHelper(func(ctx context.Context, exe string) error {
		return nshelper.SetGSOMaxSegs(ctx, exe, a.netns, a.ifname, mac, n, d.privileged)
	})
}
