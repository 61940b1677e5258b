package tap

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// ErrNetnsNotFound is returned (wrapped, with the path) by Create when
// Config.Netns does not exist (ErrNotNetns when it is not a network
// namespace).
var ErrNetnsNotFound = errors.New("network namespace not found")

// ErrLinkExists is returned (wrapped, with the name and the namespace) by
// Create when an interface named Config.Name already exists in the target
// namespace.
var ErrLinkExists = errors.New("interface already exists")

// tunFlags are the flags of TUNSETIFF: an Ethernet device (IFF_TAP) without
// the 4-byte packet information header (IFF_NO_PI) but with a struct
// virtio_net_hdr in front of every frame (IFF_VNET_HDR), which is the frame
// layout of vswitch.Port. IFF_TUN_EXCL makes TUNSETIFF fail with EBUSY
// instead of attaching to an existing device that has the same name.
const tunFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL

// offloadSets are the offloads (TUNSETOFFLOAD, TUN_F_* flags) Create asks for, best
// first: the offloads the kernel may use in frames the switch reads, and the
// features the TAP announces, so the container's stack hands it TCP
// segments of up to 64 KiB (TSO) and UDP super-datagrams (USO) with partial
// checksums, which cross the switch whole to another TAP (one write of
// about 4.5 µs instead of 45 writes of about 2 µs). Kernels before 6.2
// refuse USO4/USO6 (EINVAL) and get the next set. TSO needs CSUM.
var offloadSets = []vswitch.Offloads{
	vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6 | vswitch.OffloadTSOECN | vswitch.OffloadUSO4 | vswitch.OffloadUSO6,
	vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6 | vswitch.OffloadTSOECN,
	vswitch.OffloadCsum,
	0,
}

// tempPrefix starts the name a TAP has in the caller's namespace between its
// creation and its rename to Config.Name.
const tempPrefix = "tsw"

// tempSeq numbers the temporary names of this process.
var tempSeq atomic.Uint32

// testHook, when not nil, is called after each step of Create with the
// step's name; an error it returns makes Create fail there. Tests only.
var testHook func(step string) error

// Device is a TAP device created by Create: one port of the switch. Read is
// called by one goroutine at a time; Write, Close, Name and Netns are safe for
// concurrent use.
type Device struct {
	f        *os.File // the /dev/net/tun file, non-blocking, in Go's netpoller (io_linux.go)
	name     string   // interface name inside the namespace
	netns    string   // namespace path, "" for the caller's own
	offloads vswitch.Offloads
	// gsoMaxSegs is the gso_max_segs the TAP had when it was made or
	// adopted, 0 if not known (GSOMaxSegs).
	gsoMaxSegs int
	closeOnce  sync.Once
}

var (
	_ vswitch.Port      = (*Device)(nil)
	_ vswitch.Offloader = (*Device)(nil)
)

// Create creates a TAP device as described by cfg: named cfg.Name inside the
// namespace cfg.Netns, with cfg.MAC and cfg.MTU, cfg.Addr, up, and a default
// route via cfg.Gateway. It is all or nothing: on any error nothing is left
// behind on the system, and the error is wrapped (ErrInvalidConfig,
// ErrNetnsNotFound, ErrLinkExists, or the kernel's errno).
//
// Create needs CAP_NET_ADMIN in the caller's namespace and in the target one,
// and CAP_SYS_ADMIN to enter the target one for a netlink socket there.
//
// The steps, in order:
//  1. validate cfg and open the namespace;
//  2. fail with ErrLinkExists if cfg.Name is taken in the namespace;
//  3. open /dev/net/tun (O_CLOEXEC, O_NONBLOCK) in the caller's namespace and
//     create a TAP there with a unique temporary name "tsw<pid>_<n>",
//     IFF_VNET_HDR, a 10-byte little-endian vnet header and the best
//     offloads of offloadSets the kernel accepts (none with
//     Config.NoOffloads);
//  4. set the MAC and MTU (and gso_max_segs), move the TAP into the namespace, rename it to
//     cfg.Name, add the address, set it up, add the default route.
//
// The tun file is opened in the caller's namespace (see the package doc):
// there it does not keep the container's namespace alive, and the kernel
// deletes the moved TAP when that namespace dies. Until step 4 is complete,
// any failure closes the file, and the kernel deletes the (non-persistent)
// TAP in whichever namespace it is.
func Create(cfg Config) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	where := cfg.Netns
	if where == "" {
		where = "the caller's namespace"
	}

	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("create tap %s: netlink: %w", cfg.Name, err)
	}
	defer host.Close()
	target := host
	ns := netns.None()
	if cfg.Netns != "" {
		ns, err = openNetns(cfg.Netns)
		if err != nil {
			return nil, fmt.Errorf("create tap %s: %w", cfg.Name, err)
		}
		// The handles on the namespace are closed before Create returns,
		// so that only the TAP is left in it and nothing of ours keeps it
		// alive.
		defer ns.Close()
		target, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("create tap %s: netlink in %s: %w", cfg.Name, cfg.Netns, err)
		}
		defer target.Close()
	}

	switch _, err := target.LinkByName(cfg.Name); {
	case err == nil:
		return nil, fmt.Errorf("create tap %s: %w in %s", cfg.Name, ErrLinkExists, where)
	case !errors.As(err, new(netlink.LinkNotFoundError)):
		return nil, fmt.Errorf("create tap %s: look up name in %s: %w", cfg.Name, where, err)
	}

	want := allOffloads
	if cfg.Offloads != 0 {
		want = cfg.Offloads
	}
	if cfg.NoOffloads || offloadsOff {
		want = 0
	}
	fd, tmp, offloads, err := openTap(want)
	if err != nil {
		return nil, fmt.Errorf("create tap %s: %w", cfg.Name, err)
	}
	// os.NewFile sees O_NONBLOCK and registers the fd with Go's
	// netpoller: a Read parks its goroutine instead of a thread, and
	// Close wakes it (io_linux.go says why this strategy).
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	d := &Device{f: f, name: cfg.Name, netns: cfg.Netns, offloads: offloads, gsoMaxSegs: cmp.Or(cfg.GSOMaxSegs, MaxGSOSegs)}
	if err := d.configure(cfg, mtu, tmp, host, target, ns); err != nil {
		// Closing the only file of a non-persistent TAP deletes it,
		// in the caller's namespace or in the target one.
		f.Close()
		return nil, fmt.Errorf("create tap %s in %s: %w", cfg.Name, where, err)
	}
	return d, nil
}

// configure does step 4 of Create on the TAP named tmp in the caller's
// namespace (netlink handle host).
func (d *Device) configure(cfg Config, mtu int, tmp string, host, target *netlink.Handle, ns netns.NsHandle) error {
	step := func(name string, err error) error {
		if err == nil && testHook != nil {
			err = testHook(name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := step("open", nil); err != nil {
		return err
	}
	link, err := host.LinkByName(tmp)
	if err := step("look up "+tmp, err); err != nil {
		return err
	}
	if err := step("set MAC", host.LinkSetHardwareAddr(link, cfg.MAC)); err != nil {
		return err
	}
	if err := step("set MTU", host.LinkSetMTU(link, mtu)); err != nil {
		return err
	}
	if cfg.GSOMaxSegs > 0 {
		if err := step("set gso_max_segs", host.LinkSetGSOMaxSegs(link, cfg.GSOMaxSegs)); err != nil {
			return err
		}
	}
	if cfg.Netns != "" {
		if err := step("move to netns", host.LinkSetNsFd(link, int(ns))); err != nil {
			return err
		}
		// Look the link up again: its index may change in the move.
		link, err = target.LinkByName(tmp)
		if err := step("look up "+tmp+" in netns", err); err != nil {
			return err
		}
	}
	err = target.LinkSetName(link, cfg.Name)
	if errors.Is(err, unix.EEXIST) {
		// Taken since the check in Create.
		err = fmt.Errorf("%w: %w", ErrLinkExists, err)
	}
	if err := step("rename", err); err != nil {
		return err
	}
	if cfg.Addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   cfg.Addr.Addr().AsSlice(),
			Mask: net.CIDRMask(cfg.Addr.Bits(), 32),
		}}
		if err := step("add address "+cfg.Addr.String(), target.AddrAdd(link, a)); err != nil {
			return err
		}
	}
	if err := d.configure6(cfg, link, target, step); err != nil {
		return err
	}
	if err := step("set up", target.LinkSetUp(link)); err != nil {
		return err
	}
	if cfg.Netns != "" {
		// What every container runtime does: a namespace whose loopback
		// is down cannot reach its own services on 127.0.0.1.
		if err := step("set lo up", loUp(target)); err != nil {
			return err
		}
	}
	if cfg.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := step("add default route via "+cfg.Gateway.String(), target.RouteAdd(r)); err != nil {
			return err
		}
	}
	if cfg.Gateway6.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway6.AsSlice(), Family: netlink.FAMILY_V6}
		if err := step("add default route via "+cfg.Gateway6.String(), target.RouteAdd(r)); err != nil {
			return err
		}
	}
	return nil
}

// loUp brings the loopback interface of h's namespace up when it is down.
// It is never taken down again: the namespace is the runtime's.
func loUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	return h.LinkSetUp(lo)
}

// openNetns opens the network namespace file at path (OpenNetns) as a
// handle of package netns.
func openNetns(path string) (netns.NsHandle, error) {
	fd, err := openNetnsFd(path)
	if err != nil {
		return netns.None(), err
	}
	return netns.NsHandle(fd), nil
}

// openTap opens /dev/net/tun (non-blocking) in the caller's network
// namespace and creates a TAP there under a new temporary name; it returns
// the fd, the name and the offloads the kernel accepted (at most want).
func openTap(want vswitch.Offloads) (int, string, vswitch.Offloads, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", 0, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var o vswitch.Offloads
	name, err := setIff(fd)
	if err == nil {
		err = setVnetHdr(fd)
	}
	if err == nil {
		o, err = setOffloads(fd, want)
	}
	if err != nil {
		unix.Close(fd)
		return -1, "", 0, err
	}
	return fd, name, o, nil
}

// setIff creates the TAP of fd (TUNSETIFF) under a temporary name, trying
// the next name while one is taken (EBUSY, from IFF_TUN_EXCL).
func setIff(fd int) (string, error) {
	pid := strconv.Itoa(os.Getpid())
	for tries := 0; ; tries++ {
		name := tempName(pid, tempSeq.Add(1))
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return "", fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		ifr.SetUint16(tunFlags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		if err == nil {
			return name, nil
		}
		if err != unix.EBUSY || tries == 100 {
			return "", fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
	}
}

// tempName returns "tsw<pid>_<seq>", the sequence number cut to fit in
// IFNAMSIZ-1 bytes.
func tempName(pid string, seq uint32) string {
	s := strconv.FormatUint(uint64(seq), 10)
	if room := ifNameSize - 1 - len(tempPrefix) - len(pid) - 1; len(s) > room {
		s = s[len(s)-room:]
	}
	return tempPrefix + pid + "_" + s
}

// setVnetHdr sets the size of the header in front of every frame to that of
// struct virtio_net_hdr (TUNSETVNETHDRSZ), little-endian (TUNSETVNETLE, what
// package gso reads, and the default on little-endian hosts anyway).
func setVnetHdr(fd int) error {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vswitch.VnetHdrLen); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ %d: %w", vswitch.VnetHdrLen, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return fmt.Errorf("TUNSETVNETLE: %w", err)
	}
	return nil
}

// setOffloads sets the best offloads of offloadSets, cut to want, that the
// kernel accepts (TUNSETOFFLOAD), and returns them.
func setOffloads(fd int, want vswitch.Offloads) (vswitch.Offloads, error) {
	var err error
	for _, set := range offloadSets {
		o := set & want
		if o&vswitch.OffloadCsum == 0 {
			o = 0 // every segmentation offload needs CSUM
		}
		if err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloadFlags(o)); err == nil {
			return o, nil
		}
	}
	return 0, fmt.Errorf("TUNSETOFFLOAD: %w", err)
}

// allOffloads is every offload of offloadSets.
var allOffloads = offloadSets[0]

// tunOffloadFlags returns the TUN_F_* flags of o.
func tunOffloadFlags(o vswitch.Offloads) int {
	var f int
	for _, b := range [...]struct {
		o    vswitch.Offloads
		flag int
	}{
		{vswitch.OffloadCsum, unix.TUN_F_CSUM}, {vswitch.OffloadTSO4, unix.TUN_F_TSO4}, {vswitch.OffloadTSO6, unix.TUN_F_TSO6},
		{vswitch.OffloadTSOECN, unix.TUN_F_TSO_ECN}, {vswitch.OffloadUSO4, unix.TUN_F_USO4}, {vswitch.OffloadUSO6, unix.TUN_F_USO6},
	} {
		if o&b.o != 0 {
			f |= b.flag
		}
	}
	return f
}

// Read reads one frame into buf[offset:] and returns its length: the
// virtio_net_hdr (vswitch.VnetHdrLen bytes) followed by the Ethernet frame,
// exactly as the kernel writes it, without a copy. It blocks until a frame
// arrives. It must not be called by two goroutines at once.
//
// After Close it returns an error wrapping net.ErrClosed. Any other error
// means the device is gone, typically because its namespace was deleted (the
// kernel reports EBADFD); the error wraps the errno.
func (d *Device) Read(buf []byte, offset int) (int, error) {
	n, err := d.f.Read(buf[offset:])
	if err != nil {
		return n, d.wrap("read", err)
	}
	return n, nil
}

// Write writes the frame buf[offset:], a virtio_net_hdr followed by an
// Ethernet frame, to the device: the kernel receives it as coming in on the
// interface inside the namespace. A frame longer than vswitch.MaxFrame fails
// with vswitch.ErrFrameTooBig. Write is safe for concurrent use. After Close
// it returns an error wrapping net.ErrClosed.
func (d *Device) Write(buf []byte, offset int) (int, error) {
	frame := buf[offset:]
	if len(frame) > vswitch.MaxFrame {
		return 0, fmt.Errorf("write tap %s: %d bytes: %w", d.name, len(frame), vswitch.ErrFrameTooBig)
	}
	n, err := d.f.Write(frame)
	if err != nil {
		return n, d.wrap("write", err)
	}
	return n, nil
}

// wrap turns an error of the os.File into the error of the Port contract.
func (d *Device) wrap(op string, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s tap %s: %w", op, d.name, net.ErrClosed)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s tap %s: %w", op, d.name, err)
}

// Close closes the device's file; the kernel then deletes the TAP from its
// namespace. It makes a blocked Read return an error wrapping net.ErrClosed,
// and it is safe to call while Write runs on other goroutines. Calls after
// the first return nil.
func (d *Device) Close() error {
	var err error
	d.closeOnce.Do(func() { err = d.f.Close() })
	if err != nil {
		return fmt.Errorf("close tap %s: %w", d.name, err)
	}
	return nil
}

// Offloads returns the offloads the kernel accepted for the device
// (vswitch.Offloader): frames read from it may need them, and frames
// written to it may use them.
func (d *Device) Offloads() vswitch.Offloads { return d.offloads }

// Name returns the interface name of the device inside its namespace.
func (d *Device) Name() string { return d.name }

// Netns returns the path of the device's namespace, as given in
// Config.Netns ("" for the caller's own namespace).
func (d *Device) Netns() string { return d.netns }
