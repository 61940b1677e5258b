package vswitch

import "github.com/tapswitch/tapswitch/fdb"

// forwardStage picks the output ports. A unicast destination found in the
// FDB for the frame's VLAN goes to its port, if that port is a member of
// the VLAN (a static entry may name any port); one behind the ingress
// port is dropped (RxFiltered), as br_handle_frame_finish does. Broadcast,
// multicast and unknown unicast are flooded to every other member of the
// VLAN. The gateway is an ordinary port here: the daemon adds its MAC as
// a static entry, fdb.Key{MAC: gatewayMAC, VLAN: the gateway port's VLAN}
// (DefaultVLAN unless its PortConfig says otherwise).
type forwardStage struct{}

func (forwardStage) Process(f *Frame) Verdict {
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
	if routerOnly(f.Dst) {
		f.out.keep(f.t.routers)
	}
	return Continue
}

// routerOnly reports whether dst is the Ethernet address of ff02::16 (MLDv2
// reports, RFC 3810 5.2.14) or ff02::2 (all routers: router solicitations,
// MLDv1 done): only routers listen to them, so the switch sends them to
// the gateway, AllowRA ports and ports without port security (a VXLAN
// tunnel to other switches, a router with AllowSpoof), not to every
// container, as a snooping bridge sends reports to its router ports only
// (RFC 4541 2.1.1). MLDv1 reports, sent to the group itself, are flooded.
func routerOnly(dst fdb.MAC) bool {
	return dst[0] == 0x33 && dst[1] == 0x33 && dst[2] == 0 && dst[3] == 0 && dst[4] == 0 && (dst[5] == 0x16 || dst[5] == 0x02)
}

// hubStage sends every frame to every other port, as vde_switch -x does.
type hubStage struct{}

func (hubStage) Process(f *Frame) Verdict {
	f.out.addAll(f.t.all)
	f.out.remove(f.inPos)
	return Continue
}
