package tap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// File returns the /dev/net/tun file of d, for handing its descriptor to
// another process (SCM_RIGHTS). The file stays owned by d: the caller must
// not close it, nor use it after d.Close, and must not call its Fd method
// (which would make the descriptor blocking); SyscallConn gives the
// descriptor without that.
func (d *Device) File() *os.File { return d.f }

// FromFD returns a Device for a TAP whose /dev/net/tun descriptor fd was
// opened and configured elsewhere, typically by Create in a helper process
// inside the container's namespaces that passed the descriptor back over a
// unix socket. name and netns are what Name and Netns report; offloads are
// those the creator's TUNSETOFFLOAD accepted (Device.Offloads there), as the
// kernel has no call to read them back; gsoMaxSegs is what GSOMaxSegs
// reports (the creator's, 0 if not known).
//
// FromFD checks with TUNGETIFF that fd is a TAP with IFF_VNET_HDR and
// without packet information, and makes it non-blocking and close-on-exec.
// It takes ownership of fd: on error fd is closed, and with it (if it was
// the last reference) the kernel deletes the TAP.
func FromFD(fd int, name, netns string, offloads vswitch.Offloads, gsoMaxSegs int) (*Device, error) {
	if err := checkTap(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt tap %s: %w", name, err)
	}
	unix.CloseOnExec(fd)
	// os.NewFile sees O_NONBLOCK and puts the file in the netpoller, as
	// Create does (io_linux.go).
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	return &Device{f: f, name: name, netns: netns, offloads: offloads, gsoMaxSegs: gsoMaxSegs}, nil
}

// checkTap checks that fd is a TAP of the kind Create makes and sets it
// non-blocking.
func checkTap(fd int) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("TUNGETIFF: %w", err)
	}
	const want = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if flags := ifr.Uint16(); flags&want != want || flags&unix.IFF_TUN != 0 {
		return errors.New("not a TAP with IFF_NO_PI and IFF_VNET_HDR")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("set non-blocking: %w", err)
	}
	return nil
}
