package tap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/switch/afpacket"
)

// The afpacket experiment (issue 15; io_linux.go has the measurements):
// with TAPSWITCH_TAP_IO=afpacket in the environment at start, Create gives
// the container a veth pair instead of a TAP. The container's end is
// configured as the TAP would be (name, MAC, MTU, addresses, routes; a
// veth has every offload on by default, as Create asks of a TAP); the
// switch's end stays in the caller's namespace under a temporary name and
// is read and written through an AF_PACKET socket with a receive ring
// (package afpacket).
//
// Root only: the switch's end is made in the caller's namespace and the
// other moved, which needs CAP_NET_ADMIN in both, and the packet socket
// CAP_NET_RAW. Rootless it would need the veth made by the helper inside
// the user namespace that owns the container's network namespace, with
// the switch's end moved to a namespace the daemon can open a packet
// socket in, which an unprivileged daemon's own namespace is not (a user
// cannot move links into a namespace its user namespace does not own).

// ioAFPacket is the value of TAPSWITCH_TAP_IO that selects veth ports.
const ioAFPacket = "afpacket"

// tapIO is TAPSWITCH_TAP_IO, read once at start: "" for TAPs read and
// written with read(2)/write(2), ioAFPacket for veth pairs.
var tapIO = os.Getenv("TAPSWITCH_TAP_IO")

// ErrBadTapIO is returned by Create, Adopt and FromFD when
// TAPSWITCH_TAP_IO names no backend, or one they cannot use.
var ErrBadTapIO = errors.New(`TAPSWITCH_TAP_IO must be "" or "afpacket"`)

// vethSwitchMTU is the MTU of the switch's end of a veth pair: the
// largest (ETH_MAX_MTU), so that veth_xmit never drops a frame the
// container's end may send, whatever its MTU.
const vethSwitchMTU = 65535

// checkTapIO returns ErrBadTapIO when TAPSWITCH_TAP_IO names no backend.
func checkTapIO() error {
	switch tapIO {
	case "", ioAFPacket:
		return nil
	}
	return fmt.Errorf("%w, not %q", ErrBadTapIO, tapIO)
}

// createVeth is Create for TAPSWITCH_TAP_IO=afpacket: a veth pair whose
// container end is configured by d.configure as a TAP is, and whose
// switch end gets a packet socket. Only all offloads or none are known to
// the experiment; any other request fails.
func createVeth(cfg Config, mtu int, host, target *netlink.Handle, ns netns.NsHandle) (*Device, error) {
	if cfg.Netns == "" {
		return nil, fmt.Errorf("%w: afpacket ports need the container's namespace to move the veth's end to", ErrBadTapIO)
	}
	if cfg.NoOffloads || offloadsOff || (cfg.Offloads != 0 && cfg.Offloads != allOffloads) {
		return nil, fmt.Errorf("%w: afpacket ports have every offload; fewer are not part of the experiment", ErrBadTapIO)
	}
	pid := strconv.Itoa(os.Getpid())
	outer, inner := tempName(pid, tempSeq.Add(1)), tempName(pid, tempSeq.Add(1))
	la := netlink.NewLinkAttrs()
	la.Name = outer
	la.MTU = vethSwitchMTU
	if err := host.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: inner}); err != nil {
		return nil, fmt.Errorf("add veth %s: %w", outer, err)
	}
	d, err := openVeth(cfg, mtu, outer, inner, host, target, ns)
	if err != nil {
		// Deleting one end deletes both, wherever the other is.
		if l, lerr := host.LinkByName(outer); lerr == nil {
			host.LinkDel(l)
		}
		return nil, err
	}
	return d, nil
}

// openVeth sets up the switch's end outer of a new veth pair, opens its
// packet socket and configures the container's end inner.
func openVeth(cfg Config, mtu int, outer, inner string, host, target *netlink.Handle, ns netns.NsHandle) (*Device, error) {
	// The switch's end is a wire, not a host: no IPv6 address, router
	// solicitations or MLD reports of its own into the switch.
	if err := setSysctl("", "ipv6/conf/"+outer+"/disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("disable ipv6 on %s: %w", outer, err)
	}
	l, err := host.LinkByName(outer)
	if err == nil {
		err = host.LinkSetUp(l)
	}
	if err != nil {
		return nil, fmt.Errorf("set %s up: %w", outer, err)
	}
	p, err := afpacket.Open(outer)
	if err != nil {
		return nil, err
	}
	d := &Device{pk: p, veth: outer, name: cfg.Name, netns: cfg.Netns, offloads: p.Offloads()}
	if err := d.configure(cfg, mtu, inner, host, target, ns); err != nil {
		p.Close()
		return nil, err
	}
	return d, nil
}

// closeVeth closes the packet socket of d and deletes its veth pair (the
// kernel has done so already if the container's namespace is gone).
func (d *Device) closeVeth() error {
	d.pk.Close()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("delete veth %s: %w", d.veth, err)
	}
	defer h.Close()
	l, err := h.LinkByName(d.veth)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err == nil {
		err = h.LinkDel(l)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", d.veth, err)
	}
	return nil
}
