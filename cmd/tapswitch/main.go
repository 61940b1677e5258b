// Command tapswitch is a userspace virtual switch for containers: `tapswitch
// run` is the daemon, and every other subcommand is a client of its control
// socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/nshelper"
)

const usage = `tapswitch: a userspace virtual switch for containers

Usage:
  tapswitch run [--subnet CIDR] [--gateway IP] [--ipv6 [--subnet6 PREFIX/64] [--ra=false]] [--mtu N] [--fdb-ageing DURATION] [--fdb-max N] [--control PATH] [--metrics ADDR]
                [--attach-helper]
                [--uplink host[,addr=ADDR][,loopback=ADDR][,mtu=N][,splice=off]|none|tap,netns=PATH,ip=ADDR/LEN[,gw=ADDR][,ifname=ts0][,mac=MAC][,mtu=N]]
                [--host-loopback]
                [--ct-max N] [--ct-tcp-timeout D] [--ct-tcp-transitory-timeout D] [--ct-udp-timeout D]
                [--ct-udp-unreplied-timeout D] [--ct-icmp-timeout D] [--ct-tcp-pressure-timeout D]
                [--ct-endpoint-independent-filtering]
                [--mode learning|hub] [--icc=true|false] [--gateway-vlan N] [--state PATH] [--live-restore]
                [--vxlan vni=N,local=ADDR,remote=ADDR[,remote=ADDR...][,port=4789][,mtu=N][,vlan=N][,suppress=on|off]]...
                [--vxlan-allow CIDR]... [--ip-range CIDR]
                [--dns=true|false] [--dns-domain tapswitch] [--dns-upstream ADDR[:PORT]]... [--dns-rate N]
  tapswitch attach (--netns PATH | --pid PID) [--name NAME] [--ifname eth0] [--ip IP] [--ip6 IP6] [--mac MAC] [--mtu N]
                [--vlan N] [--trunk N,M...] [--allow-spoof] [--allow-ra] [--alias NAME]... [--no-resolv-conf]
                [-p [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp]]... [--json]
  tapswitch publish SPEC --to NAME | tapswitch publish --list [--json]
  tapswitch unpublish HOSTPORT[/tcp|/udp]
  tapswitch conntrack [--json] [-f ipv4|ipv6] | --flush | --stats
  tapswitch detach NAME
  tapswitch shutdown
  tapswitch alias NAME [ALIAS...]
  tapswitch ports [--json]
  tapswitch fdb [--json]
  tapswitch capture PORT[,PORT...]|--all -w FILE|- [-c N] [--duration D] [--format pcapng|pcap] [-s SNAPLEN] [FILTER...]
  tapswitch stats [--json]
  tapswitch rule add [--port P] [--src-port P] [--dst-port P] [--vlan N] [--src-mac M] [--dst-mac M]
                [--ethertype ipv4|arp|ipv6|0xNNNN] [--src CIDR] [--dst CIDR] [--proto tcp|udp|icmp|N]
                [--sport N[-M]] [--dport N[-M]] allow|drop|count|mirror PORT
  tapswitch rule list [--json]
  tapswitch rule del ID
  tapswitch pipeline [--json]
  tapswitch vxlan add vni=N,local=ADDR,remote=ADDR[,...] | vxlan list [--json] | vxlan del VNI
  tapswitch vxlan fdb add VNI MAC VTEP | vxlan fdb del VNI MAC | vxlan neigh VNI [--json]
  tapswitch version
  tapswitch demo

Every subcommand but run and demo talks to the daemon's control socket:
--control PATH, else $TAPSWITCH_SOCK, else /run/tapswitch/tapswitch.sock as
root or $XDG_RUNTIME_DIR/tapswitch.sock otherwise. --control may also come
before the subcommand (tapswitch --control PATH ports); given both, the one
after the subcommand wins.
`

// errUsage marks an error in the command line: exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain runs one command line and returns the exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, io.Writer) error{
		"run":      cmdRun,
		"attach":   cmdAttach,
		"alias":    cmdAlias,
		"detach":   cmdDetach,
		"shutdown": cmdShutdown,
		"ports":    cmdPorts,
		"fdb":      cmdFDB,
		"capture":  cmdCapture,
		"stats":    cmdStats,
		"version":  cmdVersion,
		"demo":     cmdDemo,

		"publish":   cmdPublish,
		"unpublish": cmdUnpublish,
		"conntrack": cmdConntrack,

		"rule":     cmdRule,
		"pipeline": cmdPipeline,

		"vxlan": cmdVXLAN,
	}
	switch args[0] {
	case nshelper.Command:
		// Not for people: the daemon runs it inside a container's
		// namespaces to create a TAP there (internal/nshelper).
		return nshelper.Main(os.Stdin, stderr)
	case nshelper.DialCommand:
		// Nor this: it connects inside a container's namespaces for
		// the daemon, for published ports' loopback clients.
		return nshelper.DialMain(stderr)
	}
	args, err := globalFlags(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "tapswitch: %v\n", errors.Unwrap(err))
		return 2
	case len(args) == 0:
		fmt.Fprint(stderr, usage)
		return 2
	}
	name := args[0]
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "tapswitch: unknown command %q (tapswitch help lists the commands)\n", name)
		return 2
	}
	err = cmd(args[1:], stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "tapswitch %s: %v\n", name, errors.Unwrap(err))
		return 2
	default:
		fmt.Fprintf(stderr, "tapswitch %s: %v\n", name, err)
		return 1
	}
}

// globalFlags takes the flags given before the subcommand (`tapswitch
// --control PATH ports`, as `docker -H` and `ip -n`) and puts them among the
// subcommand's own, so that each subcommand parses them as if they came
// after it: args returned start with the subcommand. They go first, so that
// the same flag after the subcommand wins; for a subcommand with
// subcommands of its own (rule, vxlan), after those. Only --control is global:
// every subcommand that talks to the daemon takes it, and so does run,
// which serves it.
func globalFlags(args []string) ([]string, error) {
	fs := newFlags("")
	control := controlFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	rest := fs.Args()
	if len(rest) == 0 || fs.NFlag() == 0 {
		return rest, nil
	}
	global := "--control=" + *control
	switch name := rest[0]; {
	case name == "demo":
		return nil, usagef("--control: demo runs a daemon of its own and takes no control socket")
	case name == "rule" || name == "vxlan":
		if len(rest) == 1 {
			return rest, nil // the command says what is missing
		}
		return slices.Concat(rest[:2], []string{global}, rest[2:]), nil
	default:
		return slices.Concat(rest[:1], []string{global}, rest[1:]), nil
	}
}

// usageError wraps a command-line mistake.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
func (e usageError) Is(target error) bool {
	return target == errUsage
}

func usagef(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tapswitch "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// (`tapswitch detach c1 --control x`), and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stdout)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// controlFlag adds --control to fs.
func controlFlag(fs *flag.FlagSet) *string {
	return fs.String("control", "", "control socket (default $TAPSWITCH_SOCK, /run/tapswitch/tapswitch.sock as root, $XDG_RUNTIME_DIR/tapswitch.sock otherwise)")
}

func client(control string) *api.Client {
	if control == "" {
		control = api.DefaultSocket()
	}
	return api.NewClient(control)
}

func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

// parseNone parses args with fs and rejects positional arguments.
func parseNone(fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	return noArgs(pos)
}

// parseOne parses args with fs and returns the one positional argument,
// or a usage error that says what to give.
func parseOne(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageError{errors.New(what)}
	}
	return pos[0], nil
}

// controlArgs parses the flags of a subcommand that takes nothing but
// --control and positional arguments, and returns both.
func controlArgs(name string, args []string) (control string, pos []string, err error) {
	fs := newFlags(name)
	c := controlFlag(fs)
	pos, err = parse(fs, args)
	return *c, pos, err
}

// noArg parses the flags of a subcommand that takes nothing but --control,
// and returns it.
func noArg(name string, args []string) (control string, err error) {
	control, pos, err := controlArgs(name, args)
	if err != nil {
		return "", err
	}
	return control, noArgs(pos)
}

// oneArg parses the flags of a subcommand that takes nothing but
// --control and exactly one positional argument, and returns both.
func oneArg(name string, args []string, what string) (control, arg string, err error) {
	fs := newFlags(name)
	c := controlFlag(fs)
	arg, err = parseOne(fs, args, what)
	return *c, arg, err
}
