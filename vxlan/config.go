package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tapswitch/tapswitch/fdb"
)

// ErrInvalidConfig is returned (wrapped) by New for a Config that cannot
// work.
var ErrInvalidConfig = errors.New("invalid vxlan config")

// ErrVNIInUse is returned (wrapped) by New when a tunnel of the process
// already listens for the VNI on the same address and port.
var ErrVNIInUse = errors.New("vxlan: vni already listens there")

// Config configures a Tunnel.
type Config struct {
	// Name is the port's name; "" means "vxlan" followed by the VNI, as
	// Linux names its devices (vxlan42).
	Name string
	// VNI is the VXLAN Network Identifier, 0..MaxVNI.
	VNI uint32
	// Local is the underlay address to send from and listen on.
	Local netip.Addr
	// Remotes are the VTEPs that broadcast, multicast and unknown unicast
	// frames are replicated to (head-end replication); the same family as
	// Local, at least one.
	Remotes []netip.Addr
	// Port is the UDP port VTEPs listen on (the destination port, and
	// the port the tunnel listens on); 0 means DefaultPort.
	Port uint16
	// MTU is the underlay's MTU: an encapsulated packet larger than it is
	// dropped and counted (TxTooBig), never fragmented. 0 means the MTU of
	// the interface that holds Local (UnderlayMTU).
	MTU int
	// Allow limits the outer source addresses accepted; empty accepts any
	// source (as the Linux vxlan device does).
	Allow []netip.Prefix
	// Table configures the MAC → VTEP table.
	Table TableConfig
	// Clock returns nanoseconds on a monotonic clock, the one the table
	// ages against (the switch's); nil means the tunnel's own.
	Clock func() int64
	// GatewayMAC is the distributed (anycast) gateway's MAC, the same on
	// every host: a frame from it is never sent through the tunnel, and a
	// frame from the tunnel claiming it is dropped (RxClaimed).
	GatewayMAC fdb.MAC
	// Local, if set, reports whether a MAC belongs to a port of this host
	// (the switch's FDB has it behind another port): a frame from the
	// tunnel with such a source is dropped (RxClaimed), so a remote cannot
	// take over a local container's address. It is called for every
	// received frame and must be allocation-free and safe for concurrent
	// use.
	LocalMAC func(mac fdb.MAC) bool
	// Suppress turns ARP and ND suppression on (vswitch.NeighSuppressor,
	// as `bridge link set dev vxlan42 neigh_suppress on`): the switch
	// answers a container's request for an address it knows instead of
	// replicating the request to every remote, and learns addresses
	// from the ARP and ND messages that come out of the tunnel.
	Suppress bool
	// Sockets is how many UDP sockets the tunnel sends from; the flow hash
	// of a frame picks one, so its source port gives the underlay's ECMP
	// some entropy (RFC 7348 section 5). 0 means DefaultSockets.
	Sockets int
}

// DefaultSockets is the number of sending sockets of a tunnel.
const DefaultSockets = 4

func (c *Config) fill() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.VNI > MaxVNI {
		return bad("vni %d out of range 0-%d", c.VNI, MaxVNI)
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("vxlan%d", c.VNI)
	}
	if !c.Local.IsValid() || c.Local.IsUnspecified() || c.Local.IsMulticast() {
		return bad("local %s: a unicast address is needed", c.Local)
	}
	c.Local = c.Local.Unmap()
	if len(c.Remotes) == 0 {
		return bad("no remote VTEP")
	}
	c.Remotes = slices.Clone(c.Remotes)
	for i, r := range c.Remotes {
		r = r.Unmap()
		c.Remotes[i] = r
		if !r.IsValid() || r.IsUnspecified() || r.IsMulticast() {
			return bad("remote %s: a unicast address is needed", r)
		}
		if r.Is4() != c.Local.Is4() {
			return bad("remote %s and local %s are of different families", r, c.Local)
		}
		if r == c.Local {
			return bad("remote %s is the local address", r)
		}
		if slices.Contains(c.Remotes[:i], r) {
			return bad("remote %s given twice", r)
		}
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.MTU < 0 {
		return bad("mtu %d: must be positive", c.MTU)
	}
	if c.MTU != 0 && c.MTU < 576 {
		return bad("underlay mtu %d: below 576", c.MTU)
	}
	if c.Sockets < 0 || c.Sockets > 64 {
		return bad("sockets %d: 1 to 64", c.Sockets)
	}
	if c.Sockets == 0 {
		c.Sockets = DefaultSockets
	}
	c.Allow = slices.Clone(c.Allow)
	for i, p := range c.Allow {
		if !p.IsValid() {
			return bad("allow prefix %d is not valid", i)
		}
		c.Allow[i] = p.Masked()
	}
	return nil
}

// overhead is what encapsulation adds to an inner Ethernet frame: outer
// IP, UDP and VXLAN headers.
func (c *Config) overhead() int {
	if c.Local.Is4() {
		return Overhead4 - 14
	}
	return Overhead6 - 14
}

// allowed reports whether the outer source a is accepted.
func (c *Config) allowed(a netip.Addr) bool {
	if len(c.Allow) == 0 {
		return true
	}
	for _, p := range c.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
