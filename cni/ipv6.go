package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tapswitch/tapswitch/api"
)

// addIPv6 adds port p's IPv6 address, with the gateway's, and an IPv6
// default route to r when the daemon runs dual-stack (run --ipv6); it
// leaves r alone otherwise.
func addIPv6(r *current.Result, p api.Port, info api.Info) error {
	if p.IP6 == "" || info.Gateway6 == "" {
		return nil
	}
	addr, err := netip.ParsePrefix(p.IP6)
	gw, gerr := netip.ParseAddr(info.Gateway6)
	if err != nil || gerr != nil || !addr.Addr().Is6() || !gw.Is6() {
		return types.NewError(types.ErrInternal, fmt.Sprintf("daemon gave port %s the IPv6 address %q, gateway %q", p.Name, p.IP6, info.Gateway6), "")
	}
	r.IPs = append(r.IPs, &current.IPConfig{
		Address:   net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 128)},
		Gateway:   gw.AsSlice(),
		Interface: current.Int(0),
	})
	r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gw.AsSlice()})
	return nil
}
