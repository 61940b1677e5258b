package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile starts a CPU profile of the daemon into the file named by
// $TAPSWITCH_CPUPROFILE, if set, and returns the function that stops it
// (at exit); `go tool pprof bin/tapswitch FILE` reads it. It is how the
// datapath's remaining cost was found (issue 6); it costs nothing when
// unset.
func startProfile() (stop func(), err error) {
	path := os.Getenv("TAPSWITCH_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("TAPSWITCH_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("TAPSWITCH_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
