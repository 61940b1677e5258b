package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/daemon"
)

// vxlanFlags are the overlay flags of `run`.
type vxlanFlags struct {
	specs   multiFlag
	allow   multiFlag
	ipRange string
}

// multiFlag is a flag that may be given several times.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func (f *vxlanFlags) add(fs *flag.FlagSet) {
	fs.Var(&f.specs, "vxlan", "a VXLAN tunnel `vni=N,local=ADDR,remote=ADDR[,remote=ADDR...][,port=4789][,mtu=N][,vlan=N][,suppress=on|off]`; repeat with vlan= each for several VNIs")
	fs.Var(&f.allow, "vxlan-allow", "accept VXLAN datagrams only from `CIDR` (repeatable; default: any source)")
	fs.StringVar(&f.ipRange, "ip-range", "", "hand out addresses only from `CIDR`, a part of --subnet (one per host of an overlay)")
}

// apply checks the flags and puts them in cfg.
func (f *vxlanFlags) apply(cfg *daemon.Config) error {
	for _, s := range f.specs {
		spec, err := api.ParseVXLAN(s)
		if err != nil {
			return usagef("--vxlan: %v", err)
		}
		cfg.VXLAN = append(cfg.VXLAN, spec)
	}
	for _, s := range f.allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return usagef("--vxlan-allow %q: not a CIDR prefix", s)
		}
		cfg.VXLANAllow = append(cfg.VXLANAllow, p)
	}
	if f.ipRange != "" {
		p, err := netip.ParsePrefix(f.ipRange)
		if err != nil {
			return usagef("--ip-range %q: not a CIDR prefix such as 10.80.1.0/24", f.ipRange)
		}
		cfg.IPRange = p
	}
	return nil
}

func cmdVXLAN(args []string, stdout io.Writer) error {
	return subcommand(args, stdout, []subcmd{
		{[]string{"add"}, cmdVXLANAdd},
		{[]string{"list", "ls"}, func(args []string, stdout io.Writer) error {
			return listing(args, stdout, "vxlan list", (*api.Client).VXLANs, printVXLANs)
		}},
		{[]string{"del", "delete", "rm"}, cmdVXLANDel},
		{[]string{"fdb"}, cmdVXLANFDB},
		{[]string{"neigh"}, cmdVXLANNeigh},
	})
}

// cmdVXLANNeigh is `vxlan neigh VNI [--json]`: the addresses learned
// behind a tunnel, which the switch answers ARP and ND for.
func cmdVXLANNeigh(args []string, stdout io.Writer) error {
	fs := newFlags("vxlan neigh")
	asJSON := fs.Bool("json", false, "print JSON")
	control := controlFlag(fs)
	arg, err := parseOne(fs, args, "give one VNI")
	if err != nil {
		return err
	}
	vni, err := parseVNI(arg)
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	list, err := client(*control).VXLANNeighs(ctx, vni)
	return show(stdout, *asJSON, list, err, func(w io.Writer, list []api.VXLANNeigh) {
		printTable(w, "IP\tMAC\tAGE", list, func(tw io.Writer, n api.VXLANNeigh) {
			fmt.Fprintf(tw, "%s\t%s\t%.0fs\n", n.IP, n.MAC, n.Age)
		})
	})
}

// cmdVXLANFDB is `vxlan fdb add VNI MAC VTEP` and `vxlan fdb del VNI MAC`:
// static entries, as `bridge fdb append MAC dev vxlan42 dst VTEP`.
func cmdVXLANFDB(args []string, stdout io.Writer) error {
	control, pos, err := controlArgs("vxlan fdb", args)
	if err != nil {
		return err
	}
	if len(pos) < 3 || (pos[0] == "add") != (len(pos) == 4) || (pos[0] != "add" && pos[0] != "del") {
		return usagef("vxlan fdb add VNI MAC VTEP | vxlan fdb del VNI MAC")
	}
	vni, err := parseVNI(pos[1])
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	if pos[0] == "add" {
		return client(control).AddVXLANStatic(ctx, vni, api.VXLANStatic{MAC: pos[2], VTEP: pos[3]})
	}
	return client(control).DeleteVXLANStatic(ctx, vni, pos[2])
}

// parseVNI reads a VNI argument.
func parseVNI(s string) (uint32, error) {
	vni, err := strconv.ParseUint(s, 10, 24)
	if err != nil {
		return 0, usagef("vni %q: not a number below 16777216", s)
	}
	return uint32(vni), nil
}

func cmdVXLANAdd(args []string, stdout io.Writer) error {
	fs := newFlags("vxlan add")
	asJSON := fs.Bool("json", false, "print JSON")
	control := controlFlag(fs)
	arg, err := parseOne(fs, args, "give one spec: vni=N,local=ADDR,remote=ADDR[,remote=ADDR...][,port=4789][,mtu=N][,vlan=N][,suppress=on|off]")
	if err != nil {
		return err
	}
	spec, err := api.ParseVXLAN(arg)
	if err != nil {
		return usagef("%v", err)
	}
	ctx, cancel := timeout()
	defer cancel()
	v, err := client(*control).AddVXLAN(ctx, spec)
	return show(stdout, *asJSON, []api.VXLAN{v}, err, printVXLANs)
}

func cmdVXLANDel(args []string, stdout io.Writer) error {
	return deleteOne("vxlan del", args, "give the VNI of the tunnel to remove",
		parseVNI, (*api.Client).DeleteVXLAN)
}

// printVXLANs prints each tunnel, then its VTEPs with their counters.
func printVXLANs(w io.Writer, list []api.VXLAN) {
	printTable(w, "NAME\tVNI\tLOCAL\tPORT\tVLAN\tMTU\tINNER-MTU\tMACS\tDROPS\tSUPPRESS\tNEIGHS\tARP-SUPPRESSED\tND-SUPPRESSED", list, func(tw io.Writer, v api.VXLAN) {
		s := v.Stats
		drops := s.RxMalformed + s.RxBadVNI + s.RxDenied + s.RxClaimed + s.RxNoVTEP + s.TxTooBig + s.TxErrors
		supp := "off"
		if s.Suppress {
			supp = "on"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", v.Name, v.Spec.VNI, v.Spec.Local, v.Port, v.VLAN, v.MTU, v.InnerMTU, s.MACs, drops,
			supp, s.Neighs, s.ARPSuppressed, s.NDSuppressed)
	})
	for _, v := range list {
		fmt.Fprintf(w, "\n%s VTEPs:\n", v.Name)
		printTable(w, "VTEP\tKIND\tRX-PKTS\tRX-BYTES\tTX-PKTS\tTX-BYTES\tTX-DROPPED", v.VTEPs, func(tw io.Writer, e api.VTEPStats) {
			kind := "known" // learned from a datagram, or named by a static entry
			if e.Remote {
				kind = "remote" // flooded to
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", e.Addr, kind, e.RxPackets, e.RxBytes, e.TxPackets, e.TxBytes, e.TxDropped)
		})
	}
}
