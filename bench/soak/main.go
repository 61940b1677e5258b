// Command soak runs a tapswitch daemon under a mixed load for a while and
// samples its resident memory, goroutines and open fds, as `make soak`
// runs it:
//
//	soak -bin bin/tapswitch [-duration 10m] [-samples 60] [-out bench/results]
//
// The load, all inside namespaces it creates (named tss<pid>-..., removed at
// the end, on failure or Ctrl-C too): containers attached and detached in
// a loop; short TCP connections from a "lan" namespace to a published port
// through the routed TAP uplink; an --allow-spoof port sending frames from
// new source MACs (a bounded MAC flood, 2000 a second); captures started
// and stopped. It prints a line per sample, then the curve's summary, and
// writes JSON and an SVG chart. Flat after warm-up is the goal.
//
// It needs root and ip.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/tapswitch", "tapswitch binary")
	duration := flag.Duration("duration", 10*time.Minute, "how long the load runs (env DURATION)")
	samples := flag.Int("samples", 60, "how many samples over the duration")
	out := flag.String("out", "bench/results", "directory for the JSON and SVG results")
	flag.Parse()
	if v := os.Getenv("DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: DURATION=%q: %v\n", v, err)
			os.Exit(2)
		}
		*duration = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *duration, *samples, *out); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}
