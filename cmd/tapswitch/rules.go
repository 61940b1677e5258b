package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tapswitch/tapswitch/api"
)

// parseVLANList reads a list of VLAN IDs such as "10,20".
func parseVLANList(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q: a comma-separated list of VLAN IDs such as 10,20 expected", s)
		}
		if err := api.ValidVLAN(v); err != nil {
			return nil, err
		}
		for _, w := range out {
			if w == uint16(v) {
				return nil, fmt.Errorf("VLAN %d given twice", v)
			}
		}
		out = append(out, uint16(v))
	}
	return out, nil
}

func cmdRule(args []string, stdout io.Writer) error {
	return subcommand(args, stdout, []subcmd{
		{[]string{"add"}, cmdRuleAdd},
		{[]string{"list", "ls"}, func(args []string, stdout io.Writer) error {
			return listing(args, stdout, "rule list", (*api.Client).Rules, printRules)
		}},
		{[]string{"del", "delete", "rm"}, cmdRuleDel},
	})
}

// ruleFlags are the match flags of `rule add`, as given.
type ruleFlags struct {
	vlan                              int
	ethertype, src, dst, proto, sport string
	dport                             string
}

// parseRule reads the arguments of `rule add` into a rule: match flags,
// then ACTION (and PORT for mirror). Every mistake is a usage error.
func parseRule(args []string) (api.Rule, string, error) {
	fs := newFlags("rule add")
	var r api.Rule
	var f ruleFlags
	fs.StringVar(&r.Port, "port", "", "frames entering or leaving this port")
	fs.StringVar(&r.SrcPort, "src-port", "", "frames entering from this port")
	fs.StringVar(&r.DstPort, "dst-port", "", "frames leaving to this port")
	fs.IntVar(&f.vlan, "vlan", 0, "VLAN")
	fs.StringVar(&r.SrcMAC, "src-mac", "", "source MAC")
	fs.StringVar(&r.DstMAC, "dst-mac", "", "destination MAC")
	fs.StringVar(&f.ethertype, "ethertype", "", "EtherType: ipv4, arp, ipv6 or a number such as 0x88cc")
	fs.StringVar(&f.src, "src", "", "IPv4 or IPv6 source prefix, e.g. 10.90.0.0/24 or fd42:1::/64")
	fs.StringVar(&f.dst, "dst", "", "IPv4 or IPv6 destination prefix")
	fs.StringVar(&f.proto, "proto", "", "IP protocol: tcp, udp, icmp or a number")
	fs.StringVar(&f.sport, "sport", "", "TCP/UDP source port or range N-M")
	fs.StringVar(&f.dport, "dport", "", "TCP/UDP destination port or range N-M")
	control := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return r, "", err
	}
	switch {
	case len(pos) == 0:
		return r, "", usagef("give an action: allow, drop, count or mirror PORT")
	case pos[0] == "mirror" && len(pos) == 2:
		r.Action, r.MirrorTo = pos[0], pos[1]
	case pos[0] == "mirror":
		return r, "", usagef("mirror needs exactly one port to copy frames to: mirror PORT")
	case len(pos) > 1:
		return r, "", usagef("unexpected argument %q after the action %s", pos[1], pos[0])
	default:
		r.Action = pos[0]
	}
	if f.vlan != 0 {
		if err := api.ValidVLAN(f.vlan); err != nil {
			return r, "", usagef("--vlan: %v", err)
		}
		r.VLAN = uint16(f.vlan)
	}
	if f.ethertype != "" {
		if r.EtherType, err = api.ParseEtherType(f.ethertype); err != nil {
			return r, "", usagef("--ethertype: %v", err)
		}
	}
	for _, p := range []struct {
		flag, v string
		to      *string
	}{{"src", f.src, &r.Src}, {"dst", f.dst, &r.Dst}} {
		if p.v == "" {
			continue
		}
		pfx, err := api.ParsePrefix(p.v)
		if err != nil {
			return r, "", usagef("--%s %v", p.flag, err)
		}
		*p.to = pfx.String()
	}
	if f.proto != "" {
		if r.Proto, err = api.ParseProto(f.proto); err != nil {
			return r, "", usagef("--proto: %v", err)
		}
	}
	if f.sport != "" {
		if r.SPortLo, r.SPortHi, err = api.ParsePortRange(f.sport); err != nil {
			return r, "", usagef("--sport: %v", err)
		}
	}
	if f.dport != "" {
		if r.DPortLo, r.DPortHi, err = api.ParsePortRange(f.dport); err != nil {
			return r, "", usagef("--dport: %v", err)
		}
	}
	if err := r.Validate(); err != nil {
		return r, "", usagef("%v", err)
	}
	return r, *control, nil
}

func cmdRuleAdd(args []string, stdout io.Writer) error {
	r, control, err := parseRule(args)
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	rs, err := client(control).AddRule(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, rs.ID)
	return nil
}

func cmdRuleDel(args []string, stdout io.Writer) error {
	return deleteOne("rule del", args, "give exactly one rule ID (see tapswitch rule list)", func(arg string) (int, error) {
		id, err := strconv.Atoi(arg)
		if err != nil || id < 1 {
			return 0, usagef("rule ID %q: a positive number expected", arg)
		}
		return id, nil
	}, (*api.Client).DeleteRule)
}

// printRules prints the rules as an aligned table, in the order the switch
// evaluates them.
func printRules(w io.Writer, rules []api.RuleStats) {
	printTable(w, "ID\tMATCH\tACTION\tPACKETS\tBYTES\tNOTE", rules, func(tw io.Writer, r api.RuleStats) {
		act := r.Action
		if r.MirrorTo != "" {
			act += " " + r.MirrorTo
		}
		note := "-"
		if len(r.Missing) > 0 {
			note = "not attached: " + strings.Join(r.Missing, ",")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Match(), act, r.Packets, r.Bytes, note)
	})
}

func cmdPipeline(args []string, stdout io.Writer) error {
	return listing(args, stdout, "pipeline", (*api.Client).Pipeline, printPipeline)
}

// printPipeline prints the mode, isolation and the stages in the order a
// frame walks them.
func printPipeline(w io.Writer, p api.Pipeline) {
	icc := "on"
	if p.Isolate {
		icc = "off (containers reach the gateway only, and what allow rules permit)"
	}
	fmt.Fprintf(w, "mode: %s\ninter-container communication: %s\n", p.Mode, icc)
	if p.Mode == "hub" {
		fmt.Fprintln(w, "rules: kept, but a hub applies none (nor VLANs or isolation)")
	}
	fmt.Fprintln(w)
	n := 0
	printTable(w, "#\tSTAGE\tHITS\tDROPS\tWHAT IT DOES", p.Stages, func(tw io.Writer, s api.Stage) {
		n++
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", n, s.Name, s.Hits, s.Drops, s.Doc)
	})
}
