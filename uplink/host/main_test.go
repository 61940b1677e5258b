package host

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when goroutines of the uplink or its netstack
// outlive the tests: every uplink is closed by its test, and Close must end
// all it started.
func TestMain(m *testing.M) {
	code := m.Run()
	deadline := time.Now().Add(10 * time.Second)
	left := leftover()
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		left = leftover()
	}
	if len(left) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "%d goroutines of the uplink left after the tests:\n%s\n", len(left), strings.Join(left, "\n\n"))
		code = 1
	}
	os.Exit(code)
}

// leftover returns the stacks of the goroutines running code of this
// package or of gVisor, TestMain's own aside.
func leftover() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "host.TestMain") {
			continue
		}
		if strings.Contains(g, "tapswitch/uplink/host.") || strings.Contains(g, "gvisor.dev/gvisor") {
			out = append(out, g)
		}
	}
	return out
}
