package vswitch

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/wire"
)

// prefixes6 are a rule's IPv6 prefixes; an invalid one matches any
// address.
type prefixes6 struct{ src, dst netip.Prefix }

// compile6 returns r's IPv6 prefixes, nil if it has none.
func compile6(r Rule) *prefixes6 {
	if !r.Src.Addr().Is6() && !r.Dst.Addr().Is6() {
		return nil
	}
	return &prefixes6{src: r.Src, dst: r.Dst}
}

// match reports whether f is an IPv6 packet from and to the prefixes. It
// reads the addresses from the packet and allocates nothing.
func (p *prefixes6) match(f *Frame) bool {
	if f.EtherType != wire.EtherTypeIPv6 {
		return false
	}
	ip, err := wire.ParseIPv6(f.Data[f.L3:])
	if err != nil {
		return false
	}
	return (!p.src.IsValid() || p.src.Contains(netip.AddrFrom16(ip.Src()))) &&
		(!p.dst.IsValid() || p.dst.Contains(netip.AddrFrom16(ip.Dst())))
}
