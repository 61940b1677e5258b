package main

import (
	"flag"
	"os"
	"runtime"
)

// procsFlag adds --procs to fs: how many OS threads may run the daemon's
// Go code at once (runtime.GOMAXPROCS).
func procsFlag(fs *flag.FlagSet) *int {
	return fs.Int("procs", 0, "how many CPUs may run the daemon's Go code at once (GOMAXPROCS; default: $GOMAXPROCS if set, else the CPUs less one, within the cgroup's CPU limit, at least 1)")
}

// setProcs sets GOMAXPROCS to n, or when n is 0 to the default: what
// $GOMAXPROCS says (the runtime read it already), else one less than the
// runtime's own default (the CPUs the process may use, within its
// cgroup's CPU limit), at least 1. A value set here stays: the runtime
// no longer follows changes of the affinity or the limit. The datapath's
// goroutines spend most of their time in system calls, which hand their
// P back; a P for every CPU left an idle P for the scheduler to spin on
// and wake threads for, on CPUs the containers' own kernel work needs.
// Measured on the VXLAN overlay (vxlan/doc.go, Speed). It returns the
// value set.
func setProcs(n int) int {
	if n == 0 {
		if os.Getenv("GOMAXPROCS") != "" {
			return runtime.GOMAXPROCS(0)
		}
		runtime.SetDefaultGOMAXPROCS()
		n = max(1, runtime.GOMAXPROCS(0)-1)
	}
	runtime.GOMAXPROCS(n)
	return n
}
