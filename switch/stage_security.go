package vswitch

import "github.com/tapswitch/tapswitch/wire"

// securityStage is port security (the ingress filter), on for a port with
// PortConfig.MAC set and without AllowSpoof:
//
//   - the Ethernet source must be the port's MAC;
//   - an ARP packet's sender hardware address must be the port's MAC, and
//     its sender IP one of the port's IPs or 0.0.0.0 (an ARP probe, RFC
//     5227 section 2.1.1);
//   - an IPv4 packet's source must be one of the port's IPs or 0.0.0.0
//     (a DHCP client, RFC 2131 section 4.1);
//   - an IPv6 packet passes allow6 (security6.go: its source, ND and
//     RA guard);
//   - a frame with the ARP, IPv4 or IPv6 EtherType whose header cannot be
//     read is a violation too: it cannot be checked.
//
// A Gateway port routes, so it may send from any IP: only its MACs are
// checked. The IP checks apply to untagged frames (an access port's, a
// trunk's native VLAN) and to frames tagged on an access port (which the
// VLAN stage drops anyway, and which hub mode carries as they are); a
// trunk's tagged VLANs are checked by MAC only. Violations are counted in
// RxSpoofed.
type securityStage struct{}

func (securityStage) Process(f *Frame) Verdict {
	pc := &f.in.cfg
	if !pc.secure() {
		return Continue
	}
	if f.Src != pc.MAC {
		return DropSpoofed
	}
	if f.Tags > 0 && pc.Trunk != nil {
		return Continue
	}
	switch f.EtherType {
	case wire.EtherTypeARP:
		if !f.ARP || f.ARPSenderMAC != pc.MAC || !pc.Gateway && !f.in.mayUse(f.ARPSenderIP) {
			return DropSpoofed
		}
	case wire.EtherTypeIPv4:
		if !f.IPv4 || !pc.Gateway && !f.in.mayUse(f.SrcIP) {
			return DropSpoofed
		}
	case wire.EtherTypeIPv6:
		if !pc.Gateway && !f.in.allow6(f.Data[f.L3:]) {
			return DropSpoofed
		}
	}
	return Continue
}

// mayUse reports whether the port may send from ip: one of its IPs, or
// 0.0.0.0.
func (pt *port) mayUse(ip [4]byte) bool {
	if ip == [4]byte{} {
		return true
	}
	for _, a := range pt.ip4 {
		if a == ip {
			return true
		}
	}
	return false
}
