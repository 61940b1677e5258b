package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/nat"
)

func cmdAttach(args []string, stdout io.Writer) error {
	fs := newFlags("attach")
	var req api.AttachRequest
	fs.StringVar(&req.Netns, "netns", "", "path of the container's network namespace, e.g. /run/netns/c1")
	fs.IntVar(&req.PID, "pid", 0, "a process in the container's network namespace")
	fs.StringVar(&req.Name, "name", "", "port name (default: the namespace's file name, or pid-PID)")
	fs.StringVar(&req.IfName, "ifname", "eth0", "interface name inside the namespace")
	fs.StringVar(&req.IP, "ip", "", "address in the subnet (default: the next free one)")
	fs.StringVar(&req.IP6, "ip6", "", "IPv6 address in the daemon's IPv6 subnet (run --ipv6; default: the next free one)")
	fs.StringVar(&req.MAC, "mac", "", "MAC address (default: 02:42 followed by the IPv4 address)")
	fs.IntVar(&req.MTU, "mtu", 0, "MTU (default: the daemon's)")
	asJSON := fs.Bool("json", false, "print the port as JSON")
	fs.Var((*stringList)(&req.Publish), "p", "publish a port: [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp] (repeatable; needs an uplink)")
	vlan := fs.Int("vlan", 0, "access VLAN (untagged inside the container), or a trunk's native VLAN (default 1)")
	trunk := fs.String("trunk", "", "VLANs carried 802.1Q-tagged inside the container, e.g. 10,20")
	fs.BoolVar(&req.AllowSpoof, "allow-spoof", false, "turn port security off: the container may send from any MAC and IP (routers, labs)")
	fs.BoolVar(&req.AllowRA, "allow-ra", false, "turn RA guard off: the container may send IPv6 router advertisements, redirects and DHCPv6 server replies")
	fs.Var((*stringList)(&req.Aliases), "alias", "a further DNS name of the container (repeatable)")
	fs.BoolVar(&req.NoResolvConf, "no-resolv-conf", false, "do not write /etc/netns/NAME/resolv.conf for a /run/netns/NAME namespace")
	control := controlFlag(fs)
	err := parseNone(fs, args)
	if err != nil {
		return err
	}
	if (req.Netns == "") == (req.PID == 0) {
		return usagef("give exactly one of --netns PATH and --pid PID")
	}
	if req.PID < 0 {
		return usagef("--pid %d: must be positive", req.PID)
	}
	if req.MTU < 0 {
		return usagef("--mtu %d: must be positive", req.MTU)
	}
	if *vlan != 0 {
		if err := api.ValidVLAN(*vlan); err != nil {
			return usagef("--vlan: %v", err)
		}
		req.VLAN = uint16(*vlan)
	}
	if *trunk != "" {
		if req.Trunk, err = parseVLANList(*trunk); err != nil {
			return usagef("--trunk: %v", err)
		}
	}
	for _, spec := range req.Publish {
		if _, err := nat.ParsePublish(spec); err != nil {
			return usagef("-p: %v", err)
		}
	}
	ctx, cancel := timeout()
	defer cancel()
	c := client(*control)
	p, err := c.Attach(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, p)
	}
	fmt.Fprintf(stdout, "attached %s: %s in %s, mac %s, ip %s, mtu %d, vlan %s\n", p.Name, p.IfName, p.Netns, p.MAC, p.IP, p.MTU, p.VLANs())
	if len(p.Publish) > 0 {
		fmt.Fprintf(stdout, "published %s\n", strings.Join(p.Publish, ", "))
	}
	if len(p.Aliases) > 0 {
		fmt.Fprintf(stdout, "aliases %s\n", strings.Join(p.Aliases, " "))
	}
	printDNS(stdout, c, p)
	return nil
}

func cmdDetach(args []string, stdout io.Writer) error {
	return deleteOne("detach", args, "give exactly one port name",
		func(name string) (string, error) { return name, nil }, (*api.Client).Detach)
}

// deleteOne runs a subcommand that removes the one thing its argument
// names: it parses --control and the argument (what tells what to give
// instead), reads it with parse and has the daemon remove it with del.
func deleteOne[T any](name string, args []string, what string, parse func(string) (T, error),
	del func(*api.Client, context.Context, T) error) error {
	control, arg, err := oneArg(name, args, what)
	if err != nil {
		return err
	}
	v, err := parse(arg)
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	return del(client(control), ctx, v)
}

func cmdShutdown(args []string, stdout io.Writer) error {
	control, err := noArg("shutdown", args)
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	return client(control).Shutdown(ctx)
}

func cmdPorts(args []string, stdout io.Writer) error {
	return listing(args, stdout, "ports", (*api.Client).Ports, printPorts)
}

// listing runs a subcommand that fetches something from the daemon and
// prints it with table, or as JSON with --json.
func listing[T any](args []string, stdout io.Writer, name string,
	fetch func(*api.Client, context.Context) (T, error), table func(io.Writer, T)) error {
	fs := newFlags(name)
	asJSON := fs.Bool("json", false, "print JSON")
	control := controlFlag(fs)
	if err := parseNone(fs, args); err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	v, err := fetch(client(*control), ctx)
	return show(stdout, *asJSON, v, err, table)
}

// show prints v, just fetched with err, as JSON or with table.
func show[T any](w io.Writer, asJSON bool, v T, err error, table func(io.Writer, T)) error {
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(w, v)
	}
	table(w, v)
	return nil
}

// subcmd is a subcommand of a command: the names it answers to (usage
// messages list the first) and what runs it on the arguments after them.
type subcmd struct {
	names []string
	run   func(args []string, stdout io.Writer) error
}

// subcommand runs the one of subs that args[0] names on the rest of args,
// or returns a usage error listing them.
func subcommand(args []string, stdout io.Writer, subs []subcmd) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.names[0]
	}
	list := names[0]
	if n := len(names); n > 1 {
		list = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	if len(args) == 0 {
		return usagef("give a subcommand: %s", list)
	}
	for _, s := range subs {
		if slices.Contains(s.names, args[0]) {
			return s.run(args[1:], stdout)
		}
	}
	return usagef("unknown subcommand %q: %s", args[0], list)
}

// printTable prints rows under the tab-separated header as an aligned
// table, each row written by row as tab-separated fields ending in a newline.
func printTable[T any](w io.Writer, header string, rows []T, row func(w io.Writer, r T)) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		row(tw, r)
	}
	tw.Flush()
}

// printPorts prints ports as an aligned table.
func printPorts(w io.Writer, ports []api.Port) {
	printTable(w, "NAME\tIFNAME\tMAC\tIP\tVLAN\tRX-PKTS\tRX-BYTES\tTX-PKTS\tTX-BYTES\tDROPS\tPUBLISH\tIP6", ports, func(tw io.Writer, p api.Port) {
		ifname := p.IfName
		if ifname == "" {
			ifname = "-"
		}
		s := p.Stats
		pub := "-"
		if len(p.Publish) > 0 {
			pub = strings.Join(p.Publish, ",")
		}
		mac := p.MAC
		if p.AllowSpoof {
			mac += " (spoof ok)"
		}
		ip6 := p.IP6
		if ip6 == "" {
			ip6 = "-"
		}
		// IP6 last: scripts reading the columns before it by position
		// (VLAN is the fifth) still work.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Name, ifname, mac, p.IP, p.VLANs(),
			s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes, s.Drops(), pub, ip6)
	})
}

func cmdFDB(args []string, stdout io.Writer) error {
	return listing(args, stdout, "fdb", (*api.Client).FDB, printFDB)
}

// printFDB prints the MAC table as an aligned table, one entry a line as
// `bridge fdb show` does.
func printFDB(w io.Writer, entries []api.FDBEntry) {
	printTable(w, "MAC\tPORT\tVLAN\tAGE\tTYPE\tVTEP", entries, func(tw io.Writer, e api.FDBEntry) {
		age, typ := (time.Duration(e.Age * float64(time.Second))).Round(time.Second).String(), "learned"
		if e.Static {
			age, typ = "-", "static"
		}
		vlan := "-"
		if e.VLAN != 0 {
			vlan = strconv.Itoa(int(e.VLAN))
		}
		vtep := e.VTEP
		if vtep == "" {
			vtep = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.MAC, e.Port, vlan, age, typ, vtep)
	})
}

func cmdVersion(args []string, stdout io.Writer) error {
	control, err := noArg("version", args)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "client: tapswitch %s\n", api.Version)
	ctx, cancel := timeout()
	defer cancel()
	info, err := client(control).Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "daemon: tapswitch %s (pid %d, subnet %s, gateway %s)\n", info.Version, info.PID, info.Subnet, info.Gateway)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
