package vswitch

import (
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// forwardStage picks the output ports. A unicast destination found in the
// FDB for the frame's VLAN goes to its port, if that port is a member of
// the VLAN (a static entry may name any port); one behind the ingress
// port is dropped (RxFiltered), as br_handle_frame_finish does. Broadcast,
// multicast and unknown unicast are flooded to every other member of the
// VLAN, except what only routers listen to (routerOnly). The gateway is an
// ordinary port here: the daemon adds its MAC as a static entry,
// fdb.Key{MAC: gatewayMAC, VLAN: the gateway port's VLAN} (DefaultVLAN
// unless its PortConfig says otherwise). With a NeighSuppressor port in
// the VLAN, an ARP request or NS for an address the switch knows is
// answered here instead of flooded, and ARP and ND from that port teach
// it addresses (suppress.go).
type forwardStage struct{}

func (forwardStage) Process(f *Frame) Verdict {
	if f.in.suppressor != nil {
		learnNeigh(f)
	} else if f.Dst.IsMulticast() && suppressNeigh(f) {
		return Continue // answered, or sent to the gateway alone
	}
	var members bitset
	if int(f.VLAN) < len(f.t.members) {
		members = f.t.members[f.VLAN]
	}
	if !f.Dst.IsMulticast() {
		if id, ok := f.sw.fdb.Lookup(fdb.Key{MAC: f.Dst, VLAN: f.VLAN}, f.now); ok {
			if id == f.in.id {
				return DropFiltered
			}
			if i, ok := f.t.pos[id]; ok && members.has(i) {
				f.out.add(i)
				return Continue
			}
		}
	}
	f.out.addAll(members)
	f.out.remove(f.inPos)
	if routerOnly(f) {
		f.out.keep(f.t.routers)
	}
	return Continue
}

// routerOnly reports whether only routers listen to f, so that the switch
// sends it to the gateway, AllowRA ports and ports without port security
// (a VXLAN tunnel to other switches, a router with AllowSpoof), not to
// every container, as a snooping bridge sends membership reports to its
// router ports only (RFC 4541 2.1.1): frames to the Ethernet address of
// ff02::16 (MLDv2 reports, RFC 3810 5.2.14) or ff02::2 (all routers:
// router solicitations, MLDv1 done), and MLDv1 reports and done messages
// (RFC 2710 3.7, 3.8), which hosts send to the group itself. Only IPv6
// multicast (33:33:xx) is looked at; the ICMPv6 type is read only for
// those frames, whose other multicast is flooded.
func routerOnly(f *Frame) bool {
	d := f.Dst
	if d[0] != 0x33 || d[1] != 0x33 {
		return false
	}
	if d[2] == 0 && d[3] == 0 && d[4] == 0 && (d[5] == 0x16 || d[5] == 0x02) {
		return true
	}
	return f.EtherType == wire.EtherTypeIPv6 && isMLDv1(f.Data[f.L3:])
}

// isMLDv1 reports whether the IPv6 packet b is an MLDv1 report or done,
// behind whatever extension headers (a Hop-by-Hop Router Alert, RFC 2711)
// it has.
func isMLDv1(b []byte) bool {
	ip, err := wire.ParseIPv6(b)
	if err != nil {
		return false
	}
	u, err := ip.Upper()
	if err != nil || u.Proto != wire.ProtoICMPv6 || !u.HasHeader() {
		return false
	}
	m, err := wire.ParseICMP(ip[u.Offset:])
	if err != nil {
		return false
	}
	return m.Type() == wire.ICMPv6MLDReport || m.Type() == wire.ICMPv6MLDDone
}

// hubStage sends every frame to every other port, as vde_switch -x does.
type hubStage struct{}

func (hubStage) Process(f *Frame) Verdict {
	f.out.addAll(f.t.all)
	f.out.remove(f.inPos)
	return Continue
}
