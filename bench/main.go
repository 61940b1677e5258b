// Command bench compares tapswitch with the Linux bridge (and Open vSwitch
// userspace and vde2 when installed) between two network namespaces, as
// `make bench` runs it:
//
//	bench -bin bin/tapswitch [-rounds 5] [-quick] [-out bench/results]
//
// For every switch it builds a topology of its own (namespaces named
// tsb<pid>..., addresses 198.51.100.0/24 inside them) and removes it at the
// end, on failure or on Ctrl-C too. Then, for each round, in a new random
// order of switches and tests: iperf3 TCP with 1 and 2 streams, and with 1
// stream over IPv6 (tcp1v6: every topology gives both sides an address in
// 2001:db8:b::/64 too, tapswitch with --ipv6), iperf3 UDP with 64-byte
// payloads unpaced (delivered packets/s) and a paced sweep for the highest
// rate without loss, and ping RTT; with the CPU time the switch's processes
// used (from /proc/PID/stat) and the machine's busy time (/proc/stat). It
// prints progress, then a table of medians [min-max] with the ratio to the
// Linux bridge, and writes JSON and an SVG chart.
//
// The overlay rows (overlay.go) run TCP with 1 stream container ->
// container across two hosts joined by VXLAN: tapswitch <-> tapswitch and
// tapswitch -> a Linux host, with ratios to kernel vxlan <-> kernel vxlan,
// interleaved with the rest (`-only vxlan-kernel,vxlan-tapswitch,vxlan-tapswitch-kernel`
// runs them alone, as `make bench-overlay` does).
//
// It needs root, ip, iperf3, ping, bridge and ethtool;
// ovs-vswitchd/ovsdb-server/ovs-vsctl and vde_switch are used when found.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/tapswitch", "tapswitch binary")
	rounds := flag.Int("rounds", envInt("ROUNDS", 5), "rounds (env ROUNDS)")
	quick := flag.Bool("quick", os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0", "short tests, 1 round unless -rounds is given (env QUICK=1)")
	out := flag.String("out", "bench/results", "directory for the JSON and SVG results")
	only := flag.String("only", "", "comma-separated switches to run (default: all found)")
	variants := flag.String("variants", os.Getenv("VARIANTS"), "comma-separated tapswitch variants to add: nooffload (TAPs without offloads) (env VARIANTS)")
	flag.StringVar(&tcpCC, "cc", os.Getenv("TCP_CC"), "TCP congestion control of every namespace the bench makes, e.g. cubic (env TCP_CC; default: the machine's, which new namespaces inherit)")
	flag.Parse()
	if *quick && os.Getenv("ROUNDS") == "" && !flagSet("rounds") {
		*rounds = 1
	}
	if err := run(*bin, *rounds, *quick, *out, *only, *variants); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

// params are the durations of one configuration (full or quick).
type params struct {
	tcpSecs   int // iperf3 -t for TCP and unpaced UDP
	sweepSecs int // iperf3 -t for each step of the paced sweep
	sweepStep int // steps of the bisection
	pings     int
}

func run(bin string, rounds int, quick bool, outDir, only, variants string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	for _, t := range []string{"ip", "iperf3", "ping", "bridge", "ethtool"} {
		if !have(t) {
			return fmt.Errorf("needs %s (make deps)", t)
		}
	}
	if err := checkCC(tcpCC); err != nil {
		return err
	}
	p := params{tcpSecs: 5, sweepSecs: 2, sweepStep: 5, pings: 200}
	if quick {
		p = params{tcpSecs: 2, sweepSecs: 1, sweepStep: 4, pings: 50}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	topos := available(abs, only, variants)
	var up []topology
	defer func() {
		for _, t := range up {
			t.teardown()
		}
	}()
	for _, t := range topos {
		progress("setting up %s", t.name())
		if err := t.setup(ctx); err != nil {
			t.teardown()
			if required(t) {
				return fmt.Errorf("%s: %w", t.name(), err)
			}
			progress("skipping %s: %v", t.name(), err)
			continue
		}
		// Warm up: ARP and ND, the switch's MAC table.
		for _, dst := range []string{t.serverIP(), t.serverIP6()} {
			exec.Command("ip", "netns", "exec", t.client(), "ping", "-c", "3", "-i", "0.05", "-W", "1", dst).Run()
		}
		up = append(up, t)
	}

	res := newResults(up, rounds, quick)
	start := time.Now()
	for r := 1; r <= rounds; r++ {
		// Interleave: every switch and every test once a round, in an
		// order shuffled anew each round.
		type job struct {
			t    topology
			test string
		}
		var jobs []job
		for _, t := range up {
			for _, test := range testsOf(t) {
				jobs = append(jobs, job{t, test})
			}
		}
		rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		for i, j := range jobs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m, err := measure(ctx, j.t, j.test, p)
			if err != nil {
				progress("[round %d/%d %2d/%d] %-14s %-8s error: %v", r, rounds, i+1, len(jobs), j.t.name(), j.test, err)
				continue
			}
			res.add(j.t.name(), j.test, m)
			progress("[round %d/%d %2d/%d %4.0fs] %-14s %-8s %s", r, rounds, i+1, len(jobs), time.Since(start).Seconds(), j.t.name(), j.test, m)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	fmt.Println()
	res.printTable(os.Stdout)
	files, err := res.write(outDir)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	return nil
}

// required reports whether the run fails without t: the references and
// tapswitch, alone and across the overlay; the other switches are skipped
// when they cannot be set up.
func required(t topology) bool {
	_, ok := t.(suite)
	return ok || t.name() == "linux-bridge" || t.name() == "tapswitch"
}

// testsOf returns the tests t runs: its own for a suite, else testOrder.
func testsOf(t topology) []string {
	if s, ok := t.(suite); ok {
		return s.tests()
	}
	return testOrder
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
