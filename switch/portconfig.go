package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tapswitch/tapswitch/fdb"
)

// Mode selects the switch's default pipeline (Config.Mode).
type Mode string

const (
	// ModeLearning is a learning switch: port security, VLANs, ACL rules
	// and isolation, MAC learning, forwarding by the FDB, flooding within
	// a VLAN. The empty Mode means ModeLearning.
	ModeLearning Mode = "learning"
	// ModeHub floods every frame to every other port, as vde_switch -x
	// does: no learning, no VLANs (frames keep their tags), no rules and
	// no isolation (Config.Isolate and SetRules have no effect). Port
	// security still applies: a hub must not let a container send as
	// another one.
	ModeHub Mode = "hub"
)

// valid reports whether m names a mode.
func (m Mode) valid() bool { return m == "" || m == ModeLearning || m == ModeHub }

// DefaultVLAN is the VLAN of an access port whose PortConfig.VLAN is 0,
// and of every port added with AddPort.
const DefaultVLAN = 1

// maxVLAN is the highest usable 802.1Q VLAN ID (4095 is reserved).
const maxVLAN = 4094

// ErrInvalidPortConfig is returned (wrapped) by AddPortConfig when a
// PortConfig is inconsistent; the port is not added and not closed.
var ErrInvalidPortConfig = errors.New("invalid port config")

// PortConfig is the configuration of one port, fixed for the port's
// lifetime. The zero PortConfig is an access port of DefaultVLAN without
// port security.
type PortConfig struct {
	// VLAN is the port's access VLAN, or a trunk's native VLAN (the one
	// its untagged frames belong to): 1..4094; 0 means DefaultVLAN.
	VLAN uint16
	// Trunk lists the VLANs carried tagged (802.1Q, TPID 0x8100) on this
	// port, 1..4094 each, without duplicates and without VLAN. Nil makes
	// an access port, on which a tagged frame is an error.
	Trunk []uint16
	// MAC is the address the port was attached with. Set and without
	// AllowSpoof, it turns port security on: every frame from the port
	// must have it as Ethernet source (and ARP sender hardware address).
	// The zero MAC means no port security.
	MAC fdb.MAC
	// IPs are the IPv4 and IPv6 addresses the port may send from (IPv4
	// and IPv6 source, ARP sender, NA target), checked with port security
	// on, on untagged frames (an access port's, a trunk's native VLAN's).
	// 0.0.0.0 is always allowed (DHCP, ARP probes, RFC 5227), and so is
	// the IPv6 link-local address of MAC (modified EUI-64) and ::
	// for duplicate address detection (security6.go). Empty: no source is
	// allowed but those.
	IPs []netip.Addr
	// AllowSpoof turns port security off (routers, labs).
	AllowSpoof bool
	// AllowRA lets a port with port security send router advertisements,
	// redirects, NAs with the router flag and DHCPv6 server messages,
	// which RA guard (RFC 6105) drops otherwise.
	AllowRA bool
	// Gateway marks the gateway port: it may send from any IP (it routes),
	// its MAC is still checked, and it is exempt from Config.Isolate.
	Gateway bool
}

// normalize checks pc and returns a copy the switch keeps (VLAN 0
// replaced by DefaultVLAN, slices copied).
func (pc PortConfig) normalize() (PortConfig, error) {
	bad := func(format string, args ...any) (PortConfig, error) {
		return PortConfig{}, fmt.Errorf("%w: %s", ErrInvalidPortConfig, fmt.Sprintf(format, args...))
	}
	if pc.VLAN == 0 {
		pc.VLAN = DefaultVLAN
	}
	if pc.VLAN > maxVLAN {
		return bad("vlan %d out of range 1-%d", pc.VLAN, maxVLAN)
	}
	for i, v := range pc.Trunk {
		if v == 0 || v > maxVLAN {
			return bad("trunk vlan %d out of range 1-%d", v, maxVLAN)
		}
		if v == pc.VLAN {
			return bad("trunk vlan %d is also the native vlan", v)
		}
		if slices.Contains(pc.Trunk[:i], v) {
			return bad("trunk vlan %d listed twice", v)
		}
	}
	if pc.MAC.IsMulticast() {
		return bad("mac %s is a group address", pc.MAC)
	}
	for i, ip := range pc.IPs {
		if !ip.Is4() && (!ip.Is6() || ip.Is4In6() || ip.Zone() != "" || ip.IsMulticast() || ip.IsUnspecified()) {
			return bad("ip %s is not a unicast IPv4 or IPv6 address", ip)
		}
		if slices.Contains(pc.IPs[:i], ip) {
			return bad("ip %s listed twice", ip)
		}
	}
	pc.Trunk = slices.Clone(pc.Trunk)
	pc.IPs = slices.Clone(pc.IPs)
	return pc, nil
}

// secure reports whether port security is on for the port.
func (pc *PortConfig) secure() bool { return !pc.MAC.IsZero() && !pc.AllowSpoof }
