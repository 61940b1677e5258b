package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/daemon"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/uplink/host"
)

// stringList is a repeatable string flag (-p A -p B).
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// natFlags are the flags of `tapswitch run` for the uplink and NAT.
type natFlags struct {
	uplink                                 string
	max                                    int
	tcp, tcpTrans, udp, udpUnreplied, icmp time.Duration
	tcpPressure                            time.Duration
	eif                                    bool
	hostLoopback                           bool
}

func (f *natFlags) add(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}) {
	fs.StringVar(&f.uplink, "uplink", host.Name, "the uplink: "+uplink.Usage())
	fs.BoolVar(&f.hostLoopback, "host-loopback", false, "with the host uplink, let containers reach the host's 127.0.0.1 through the gateway's address")
	fs.IntVar(&f.max, "ct-max", nat.DefaultMaxEntries, "the most connections NAT tracks")
	fs.DurationVar(&f.tcp, "ct-tcp-timeout", nat.DefaultTCPEstablished, "idle timeout of an established TCP connection")
	fs.DurationVar(&f.tcpTrans, "ct-tcp-transitory-timeout", nat.DefaultTCPTransitory, "idle timeout of an opening or closing TCP connection")
	fs.DurationVar(&f.tcpPressure, "ct-tcp-pressure-timeout", nat.DefaultTCPPressure, "idle timeout of an opening TCP connection while the table is more than half full (a SYN flood)")
	fs.DurationVar(&f.udp, "ct-udp-timeout", nat.DefaultUDP, "idle timeout of a UDP flow that saw traffic both ways")
	fs.DurationVar(&f.udpUnreplied, "ct-udp-unreplied-timeout", nat.DefaultUDPUnreplied, "idle timeout of a UDP flow without a reply")
	fs.DurationVar(&f.icmp, "ct-icmp-timeout", nat.DefaultICMP, "idle timeout of an ICMP echo flow")
	fs.BoolVar(&f.eif, "ct-endpoint-independent-filtering", false, "let any outside address reach a live mapping (RFC 4787 REQ-8); default address and port dependent")
}

// apply checks the flags and sets them in cfg.
func (f *natFlags) apply(cfg *daemon.Config) error {
	spec, err := uplink.Parse(f.uplink)
	if err != nil {
		return usagef("--uplink: %v", err)
	}
	if f.hostLoopback {
		hc, ok := spec.(*host.Config)
		if !ok {
			return usagef("--host-loopback needs the host uplink (--uplink host)")
		}
		hc.HostLoopback = true
	}
	cfg.Uplink = spec
	if f.max < 1 {
		return usagef("--ct-max %d: must be at least 1", f.max)
	}
	for name, d := range map[string]time.Duration{
		"--ct-tcp-timeout": f.tcp, "--ct-tcp-transitory-timeout": f.tcpTrans, "--ct-udp-timeout": f.udp,
		"--ct-udp-unreplied-timeout": f.udpUnreplied, "--ct-icmp-timeout": f.icmp, "--ct-tcp-pressure-timeout": f.tcpPressure,
	} {
		if d <= 0 {
			return usagef("%s %s: must be positive", name, d)
		}
	}
	cfg.NAT = nat.Config{
		MaxEntries: f.max,
		Timeouts: nat.Timeouts{
			TCPEstablished: f.tcp, TCPTransitory: f.tcpTrans, UDP: f.udp, UDPUnreplied: f.udpUnreplied, ICMP: f.icmp,
			TCPPressure: f.tcpPressure,
		},
		EndpointIndependentFiltering: f.eif,
	}
	return nil
}

func cmdPublish(args []string, stdout io.Writer) error {
	fs := newFlags("publish")
	to := fs.String("to", "", "the container's port name")
	list := fs.Bool("list", false, "list the published ports instead")
	asJSON := fs.Bool("json", false, "print JSON")
	control := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := timeout()
	defer cancel()
	if *list {
		if err := noArgs(pos); err != nil {
			return err
		}
		ps, err := client(*control).Publishes(ctx)
		return show(stdout, *asJSON, ps, err, printPublishes)
	}
	if len(pos) != 1 {
		return usagef("give one published port, [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp], and --to NAME")
	}
	if *to == "" {
		return usagef("--to NAME is required: the container to publish to")
	}
	if _, err := nat.ParsePublish(pos[0]); err != nil {
		return usagef("%v", err)
	}
	p, err := client(*control).Publish(ctx, api.PublishRequest{Spec: pos[0], To: *to})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, p)
	}
	fmt.Fprintf(stdout, "published %s to %s (%s)\n", p.Spec, p.Port, p.Target)
	return nil
}

func printPublishes(w io.Writer, ps []api.Published) {
	printTable(w, "PUBLISH\tPORT\tTARGET", ps, func(tw io.Writer, p api.Published) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Spec, p.Port, p.Target)
	})
}

func cmdUnpublish(args []string, stdout io.Writer) error {
	control, arg, err := oneArg("unpublish", args, "give one host port: HOSTPORT[/tcp|/udp]")
	if err != nil {
		return err
	}
	port, proto, _ := strings.Cut(arg, "/")
	if proto == "" {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return usagef("%q: not a host port (1-65535), optionally followed by /tcp or /udp", arg)
	}
	if proto = strings.ToLower(proto); proto != "tcp" && proto != "udp" {
		return usagef("%q: the protocol must be tcp or udp", arg)
	}
	ctx, cancel := timeout()
	defer cancel()
	p, err := client(control).Unpublish(ctx, uint16(n), proto)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "unpublished %s from %s\n", p.Spec, p.Port)
	return nil
}

func cmdConntrack(args []string, stdout io.Writer) error {
	fs := newFlags("conntrack")
	asJSON := fs.Bool("json", false, "print JSON")
	flush := fs.Bool("flush", false, "remove every tracked connection")
	stats := fs.Bool("stats", false, "print the counters instead")
	fam := fs.String("f", "", "list only the connections of a family, ipv4 or ipv6 (as conntrack -L -f)")
	control := controlFlag(fs)
	if err := parseNone(fs, args); err != nil {
		return err
	}
	if *flush && *stats {
		return usagef("--flush and --stats do not go together")
	}
	if *fam != "" && *fam != "ipv4" && *fam != "ipv6" {
		return usagef("-f %q: the family is ipv4 or ipv6", *fam)
	}
	if *fam != "" && (*flush || *stats) {
		return usagef("-f lists: it does not go with --flush or --stats")
	}
	ctx, cancel := timeout()
	defer cancel()
	c := client(*control)
	switch {
	case *flush:
		n, err := c.FlushConntrack(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, api.FlushResult{Flushed: n})
		}
		fmt.Fprintf(stdout, "%d flow entries have been deleted.\n", n)
		return nil
	case *stats:
		s, err := c.ConntrackStats(ctx)
		return show(stdout, *asJSON, s, err, printConntrackStats)
	}
	entries, err := c.Conntrack(ctx)
	if *fam != "" {
		entries = slices.DeleteFunc(entries, func(e api.ConntrackEntry) bool { return e.Family != *fam })
	}
	return show(stdout, *asJSON, entries, err, printConntrack)
}

// printConntrack prints entries as `conntrack -L` does: protocol name and
// number, seconds left, state, then the original and the reply tuple.
func printConntrack(w io.Writer, entries []api.ConntrackEntry) {
	num := map[string]int{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
	for _, e := range entries {
		var b strings.Builder
		fmt.Fprintf(&b, "%-8s %d %d ", e.Proto, num[e.Proto], int(e.Timeout))
		if e.Proto == "tcp" || e.State == "UNREPLIED" {
			b.WriteString(e.State + " ")
		}
		tuple := func(t api.Tuple, packets, bytes uint64, id uint16) {
			fmt.Fprintf(&b, "src=%s dst=%s ", t.Src, t.Dst)
			if e.Proto == "icmp" || e.Proto == "icmpv6" {
				fmt.Fprintf(&b, "id=%d ", id)
			} else {
				fmt.Fprintf(&b, "sport=%d dport=%d ", t.Sport, t.Dport)
			}
			fmt.Fprintf(&b, "packets=%d bytes=%d ", packets, bytes)
		}
		tuple(e.Orig, e.OrigPackets, e.OrigBytes, e.Orig.Sport)
		tuple(e.Reply, e.ReplyPackets, e.ReplyBytes, e.Reply.Dport)
		fmt.Fprintln(w, strings.TrimSpace(b.String()))
	}
	fmt.Fprintf(w, "%d flow entries have been shown.\n", len(entries))
}

func printConntrackStats(w io.Writer, s api.ConntrackStats) {
	fmt.Fprintf(w, "entries %d (tcp %d, udp %d, icmp %d; ipv6 %d) of at most %d, mappings %d\n", s.Entries, s.TCP, s.UDP, s.ICMP, s.IPv6, s.Max, s.Mappings)
	fmt.Fprintf(w, "created %d expired %d evicted %d refused %d flushed %d\n", s.Created, s.Expired, s.Evicted, s.Refused, s.Flushed)
	fmt.Fprintf(w, "translated out %d in %d (icmp errors %d)\n", s.TranslatedOut, s.TranslatedIn, s.ICMPErrors)
	reasons := make([]string, 0, len(s.Drops))
	for r := range s.Drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "drop %s %d\n", r, s.Drops[r])
	}
}
