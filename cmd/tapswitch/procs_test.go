package main

import (
	"runtime"
	"testing"
)

func TestSetProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })

	if got := setProcs(3); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("setProcs(3) = %d, GOMAXPROCS %d; want 3, 3", got, runtime.GOMAXPROCS(0))
	}

	// Without $GOMAXPROCS: the runtime's default less one, whatever was
	// set before (3 above).
	t.Setenv("GOMAXPROCS", "")
	runtime.SetDefaultGOMAXPROCS()
	want := max(1, runtime.GOMAXPROCS(0)-1)
	runtime.GOMAXPROCS(3)
	if got := setProcs(0); got != want || runtime.GOMAXPROCS(0) != want {
		t.Errorf("setProcs(0) without $GOMAXPROCS = %d, GOMAXPROCS %d; want %d (the runtime's default less one)", got, runtime.GOMAXPROCS(0), want)
	}

	// $GOMAXPROCS set: the runtime applied it at start; setProcs keeps
	// what is in force (here 5, as if the runtime had read it).
	t.Setenv("GOMAXPROCS", "5")
	runtime.GOMAXPROCS(5)
	if got := setProcs(0); got != 5 || runtime.GOMAXPROCS(0) != 5 {
		t.Errorf("setProcs(0) with $GOMAXPROCS=5 = %d, GOMAXPROCS %d; want 5, 5", got, runtime.GOMAXPROCS(0))
	}
}
