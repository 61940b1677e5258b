package tap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// ErrNotOurs is returned (wrapped) by Adopt and Remove when the interface
// found is not the TAP that was saved: another kind of link, or another MAC.
var ErrNotOurs = errors.New("not the saved TAP")

// SetPersist sets or clears the persist flag of the TAP (TUNSETPERSIST): a
// persistent TAP outlives the closing of its file, and of the process that
// had it, and stays in its namespace, up, with its addresses and routes,
// until Adopt attaches to it again or Remove deletes it. A TAP whose flag
// is cleared is deleted by the kernel when its last file is closed, as
// Create's TAPs are.
func (d *Device) SetPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	rc, err := d.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("persist tap %s: %w", d.name, err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v) }); err != nil {
		return fmt.Errorf("persist tap %s: %w", d.name, err)
	}
	if ierr != nil {
		return fmt.Errorf("persist tap %s: TUNSETPERSIST %d: %w", d.name, v, ierr)
	}
	return nil
}

// Adopt attaches to the persistent TAP named name in the namespace at path
// (checked as OpenNetns does), which Create made and SetPersist kept, after
// checking that it is a tun/tap link with the MAC mac: a device left by a
// daemon that died or was upgraded. The container keeps its interface,
// addresses and routes, and its connections, throughout. Offloads are set
// again (none if noOffloads).
//
// The /dev/net/tun file must be opened inside the namespace (TUNSETIFF
// finds the device by name in the namespace the file was opened in), so,
// unlike Create's, the file keeps the namespace alive while it is open:
// the owner must close the device when the container goes (its process
// exits, its namespace path is removed), since the kernel will not delete
// it with the namespace. Adopt needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
//
// It returns ErrNetnsNotFound or ErrNotNetns for the path, an error
// wrapping netlink.LinkNotFoundError when there is no such interface, and
// ErrNotOurs when the interface is not that TAP.
func Adopt(path, name string, mac net.HardwareAddr, noOffloads bool) (*Device, error) {
	want := allOffloads
	if noOffloads {
		want = 0
	}
	return AdoptOffloads(path, name, mac, want)
}

// AdoptOffloads is Adopt asking for the offloads of offloadSets cut to
// want, as Config.Offloads (none if want is 0): the routed uplink adopts
// its TAP with the offloads it takes whole.
func AdoptOffloads(path, name string, mac net.HardwareAddr, want vswitch.Offloads) (*Device, error) {
	if offloadsOff {
		want = 0
	}
	var d *Device
	err := withinNetns(path, func(h *netlink.Handle) error {
		link, err := savedLink(h, name, mac)
		if err != nil {
			return err
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		// Without IFF_TUN_EXCL: attach to the existing device.
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		o, err := setOffloads(fd, want)
		if err == nil {
			err = setVnetHdr(fd)
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		d = &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: name, netns: path, offloads: o, gsoMaxSegs: int(link.Attrs().GSOMaxSegs)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("adopt tap %s in %s: %w", name, path, err)
	}
	return d, nil
}

// Remove deletes the persistent TAP named name with the MAC mac from the
// namespace at path: what a daemon that does not restore does with the
// TAPs a live-restore daemon left. Errors are those of Adopt.
func Remove(path, name string, mac net.HardwareAddr) error {
	err := withinNetns(path, func(h *netlink.Handle) error {
		link, err := savedLink(h, name, mac)
		if err != nil {
			return err
		}
		return h.LinkDel(link)
	})
	if err != nil {
		return fmt.Errorf("remove tap %s in %s: %w", name, path, err)
	}
	return nil
}

// savedLink returns the link name of h, checked to be a tun/tap device
// with mac: the TAP a daemon saved, not another device of that name.
func savedLink(h *netlink.Handle, name string, mac net.HardwareAddr) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if _, ok := link.(*netlink.Tuntap); !ok || link.Type() != "tuntap" {
		return nil, fmt.Errorf("%w: %s is a %s link", ErrNotOurs, name, link.Type())
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		return nil, fmt.Errorf("%w: %s has MAC %s, not %s", ErrNotOurs, name, link.Attrs().HardwareAddr, mac)
	}
	return link, nil
}

// withinNetns runs fn on an OS thread inside the namespace at path (opened
// without blocking and checked, openNetns), with a netlink handle there.
func withinNetns(path string, fn func(*netlink.Handle) error) error {
	target, err := openNetns(path)
	if err != nil {
		return err
	}
	defer target.Close()
	return netnsutil.DoIn(target, path, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
}
