package vswitch

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/wire"
)

// DHCPv6 ports (RFC 8415 7.2): servers and relays send from 547.
const dhcp6ServerPort = 547

// allow6 is port security for the IPv6 packet b from pt (securityStage,
// port security on, not the gateway). It reports whether the packet may
// pass:
//
//   - the source is one of the port's IPv6 addresses or the link-local
//     address of its MAC; the unspecified address only for duplicate
//     address detection (an NS without source link-layer option, RFC 4862
//     5.4.2) and MLD reports (RFC 3590 4);
//   - an ND message's source link-layer option is the port's MAC, an NA's
//     target link-layer option too, and an NA's target one of the port's
//     addresses: no neighbour cache poisoning (RFC 3756 4.1.1);
//   - RA guard (RFC 6105), unless PortConfig.AllowRA: no router
//     advertisement, redirect, NA with the router flag, or DHCPv6 message
//     from a server port;
//   - an ND message in a fragment is refused, as receivers must (RFC
//     6980), and so is a packet whose headers cannot be walked.
//
// It reads b and allocates nothing.
func (pt *port) allow6(b []byte) bool {
	ip, err := wire.ParseIPv6(b)
	if err != nil {
		return false
	}
	src := ip.Src()
	unspecified := src == [16]byte{}
	if !unspecified && !pt.mayUse6(src) {
		return false
	}
	u, err := ip.Upper()
	if err != nil {
		return false
	}
	if !u.HasHeader() {
		// A later fragment (its first one was checked), ESP, no next
		// header: nothing more to see.
		return !unspecified
	}
	switch u.Proto {
	case wire.ProtoICMPv6:
		return pt.allowICMPv6(ip, u, unspecified)
	case wire.ProtoUDP:
		if unspecified || len(ip)-u.Offset < wire.UDPLen {
			return false
		}
		sport := binary.BigEndian.Uint16(ip[u.Offset:])
		return sport != dhcp6ServerPort || pt.cfg.AllowRA
	}
	return !unspecified
}

// allowICMPv6 is allow6 for an ICMPv6 message.
func (pt *port) allowICMPv6(ip wire.IPv6, u wire.IPv6Upper, unspecified bool) bool {
	m, err := wire.ParseICMP(ip[u.Offset:])
	if err != nil {
		return false
	}
	typ := m.Type()
	switch typ {
	case wire.ICMPv6MLDQuery, wire.ICMPv6MLDReport, wire.ICMPv6MLDDone, wire.ICMPv6MLDv2Report:
		return !unspecified || typ == wire.ICMPv6MLDReport || typ == wire.ICMPv6MLDv2Report
	case wire.ICMPv6RouterSolicitation, wire.ICMPv6RouterAdvertisement, wire.ICMPv6NeighborSolicitation,
		wire.ICMPv6NeighborAdvertisement, wire.ICMPv6Redirect:
	default:
		return !unspecified
	}
	if u.Fragment {
		return false
	}
	nd, err := wire.ParseND(m)
	if err != nil {
		return false
	}
	mac := [6]byte(pt.cfg.MAC)
	if nd.HasSourceLL && (nd.SourceLL != mac || unspecified) {
		return false
	}
	switch typ {
	case wire.ICMPv6RouterAdvertisement, wire.ICMPv6Redirect:
		return pt.cfg.AllowRA && !unspecified
	case wire.ICMPv6NeighborAdvertisement:
		if unspecified || nd.HasTargetLL && nd.TargetLL != mac || !pt.mayUse6(nd.Target) {
			return false
		}
		return nd.Flags&wire.NAFlagRouter == 0 || pt.cfg.AllowRA
	case wire.ICMPv6NeighborSolicitation:
		return true
	}
	return true // RS; its source was checked
}

// mayUse6 reports whether the port may use the IPv6 address a: one of its
// own, or the link-local address of its MAC.
func (pt *port) mayUse6(a [16]byte) bool {
	if a == pt.ll6 {
		return true
	}
	for _, b := range pt.ip6 {
		if a == b {
			return true
		}
	}
	return false
}
