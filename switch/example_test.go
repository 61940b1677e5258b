package vswitch_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// raGuard is a pipeline stage that drops IPv6 router advertisements
// (ICMPv6 type 134, RFC 4861 section 4.2) from every port but the
// gateway's, as RA Guard does (RFC 6105): a container must not become the
// other containers' IPv6 router. It reads the parsed view only, keeps no
// reference to the frame, allocates nothing and has no state, so it is
// safe on every ingress goroutine at once.
type raGuard struct{}

func (raGuard) Process(f *vswitch.Frame) vswitch.Verdict {
	const etherIPv6, icmpv6, routerAdvert = 0x86dd, 58, 134
	if f.EtherType != etherIPv6 || f.InConfig().Gateway {
		return vswitch.Continue
	}
	ip := f.Data[f.L3:] // the IPv6 header, after any VLAN tag
	// Next header ICMPv6 right after the fixed header; an RA behind
	// extension headers is left to a fuller parser.
	if len(ip) < 41 || ip[6] != icmpv6 || ip[40] != routerAdvert {
		return vswitch.Continue
	}
	return vswitch.DropDenied // counted in the port's rx_denied and the stage's drops
}

// withRAGuard returns the learning pipeline with raGuard after port
// security.
func withRAGuard() []vswitch.PipelineStage {
	stages := vswitch.LearningStages()
	i := slices.IndexFunc(stages, func(s vswitch.PipelineStage) bool { return s.Name == "port-security" })
	return slices.Insert(stages, i+1, vswitch.PipelineStage{
		Name:  "ra-guard",
		Doc:   "drop IPv6 router advertisements not from the gateway (RFC 6105)",
		Stage: raGuard{},
	})
}

// A stage of one's own goes into the pipeline by name; SetPipeline swaps
// it in while traffic flows (or Config.Stages sets it from the start).
func ExampleSwitch_SetPipeline() {
	sw, err := vswitch.New(vswitch.Config{})
	if err != nil {
		panic(err)
	}
	defer sw.Close()
	if err := sw.SetPipeline(withRAGuard()); err != nil {
		panic(err)
	}
	for _, st := range sw.Pipeline() {
		fmt.Println(st.Name)
	}
	// Output:
	// parse
	// port-security
	// ra-guard
	// vlan
	// learn
	// forward
	// acl
	// output
}

// ipv6ICMP is an IPv6 packet from fe80::a to ff02::1 carrying an ICMPv6
// message of type typ (checksum left zero: no stage checks it).
func ipv6ICMP(typ byte) []byte {
	p := []byte{
		0x60, 0, 0, 0, // version 6, traffic class, flow label
		0, 16, 58, 255, // payload length 16, next header ICMPv6, hop limit 255
	}
	p = append(p, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa) // fe80::a
	p = append(p, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1) // ff02::1
	return append(p, typ, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

func TestRAGuardStage(t *testing.T) {
	r := newRig(t, vswitch.Config{Stages: withRAGuard()})
	r.add(t, "a")
	r.add(t, "b")
	r.addConfig(t, "g", vswitch.PortConfig{Gateway: true})
	allNodes := fdb.MAC{0x33, 0x33, 0, 0, 0, 1}
	ra := func(src fdb.MAC) []byte { return vswitch.EthFrame(allNodes, src, nil, 0x86dd, ipv6ICMP(134)) }

	r.send(t, "a", ra(macA)) // a rogue router
	r.expect(t, nil)
	if st := r.stats(t, "a", func(s vswitch.PortStats) bool { return s.RxDenied == 1 }); st.RxDenied != 1 {
		t.Errorf("a rx_denied: got %d, want 1", st.RxDenied)
	}
	f := ra(macC) // the gateway's own RA
	r.send(t, "g", f)
	r.expect(t, f, "a", "b")
	f = vswitch.EthFrame(allNodes, macA, nil, 0x86dd, ipv6ICMP(128)) // an echo request
	r.send(t, "a", f)
	r.expect(t, f, "b", "g")
	tagged := vswitch.EthFrame(allNodes, macA, []vswitch.Tag{vswitch.MkTag(vswitch.EtherVLAN, 1)}, 0x86dd, ipv6ICMP(134))
	r.send(t, "a", tagged) // tagged on an access port: the guard sees the RA behind the tag
	r.expect(t, nil)
	for _, st := range r.sw.Pipeline() {
		if st.Name == "ra-guard" && st.Drops != 2 {
			t.Errorf("ra-guard drops: got %d, want 2", st.Drops)
		}
	}
}
