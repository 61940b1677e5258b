package cni

import (
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

func TestResultIPv6(t *testing.T) {
	p := api.Port{Name: "c1", IfName: "eth0", MAC: "02:42:0a:5a:00:02", MTU: 1500, IP: "10.90.0.2/16", IP6: "fd42:1::2/64"}
	info := api.Info{Gateway: "10.90.0.1", Gateway6: "fd42:1::1"}
	r, err := result(p, "/run/netns/c1", info)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IPs) != 2 || r.IPs[1].Address.String() != "fd42:1::2/64" || r.IPs[1].Gateway.String() != "fd42:1::1" ||
		len(r.Routes) != 2 || r.Routes[1].Dst.String() != "::/0" || r.Routes[1].GW.String() != "fd42:1::1" {
		t.Errorf("dual-stack result: ips %v routes %v", r.IPs, r.Routes)
	}
	r, err = result(api.Port{Name: "c1", IP: "10.90.0.2/16"}, "/run/netns/c1", api.Info{Gateway: "10.90.0.1"})
	if err != nil || len(r.IPs) != 1 || len(r.Routes) != 1 {
		t.Errorf("IPv4-only result: %v, %v", r, err)
	}
	p.IP6 = "fd42:1::zz/64"
	if _, err := result(p, "/run/netns/c1", info); err == nil {
		t.Errorf("bad ip6 %q: no error", p.IP6)
	}
}
