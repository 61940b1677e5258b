package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTapIOUring runs a daemon whose TAPs use the io_uring backend
// (TAPSWITCH_TAP_IO=uring, switch/tap/uringio_linux.go) and sends a ping
// and an iperf3 TCP stream, with offloads, between two namespaces through
// it.
func TestTapIOUring(t *testing.T) {
	requireRoot(t, "ping", "iperf3")
	for _, io := range []string{"uring", "uring-enter"} {
		t.Run(io, func(t *testing.T) {
			t.Setenv("TAPSWITCH_TAP_IO", io)
			d := startDaemon(t)
			ns, ports := d.attachN(t, 2, "u")
			if n := uringFds(t, d.cmd.Process.Pid); n < 2*len(ports) {
				t.Errorf("daemon has %d io_uring fds, want at least %d (2 per TAP)", n, 2*len(ports))
			}
			ping(t, ns[0], ip(ports[1]))
			ping(t, ns[1], "10.90.0.1")

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srv := exec.CommandContext(ctx, "ip", "netns", "exec", ns[1], "iperf3", "-s", "-1", "-B", ip(ports[1]))
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer srv.Wait()
			defer srv.Process.Kill()
			var out []byte
			var err error
			// The server may not listen yet: retry the connection.
			for try := 0; try < 50; try++ {
				out, err = exec.CommandContext(ctx, "ip", "netns", "exec", ns[0], "iperf3", "-c", ip(ports[1]), "-t", "1", "-J").Output()
				if err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("iperf3 -c %s: %v\n%s", ip(ports[1]), err, out)
			}
			var res struct {
				End struct {
					SumReceived struct {
						Bytes         int64   `json:"bytes"`
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("iperf3 JSON: %v\n%s", err, out)
			}
			if got := res.End.SumReceived.Bytes; got < 1<<20 {
				t.Errorf("iperf3 receiver got %d bytes in 1 s, want at least 1 MiB", got)
			}
			t.Logf("iperf3 through the %s backend: %.2f Gbit/s (load: %s)", io, res.End.SumReceived.BitsPerSecond/1e9, loadavg())
		})
	}
}

// uringFds counts the io_uring instances among the fds of process pid.
func uringFds(t *testing.T, pid int) int {
	t.Helper()
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == "anon_inode:[io_uring]" {
			n++
		}
	}
	return n
}

// loadavg returns the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	var a, b1, c string
	fmt.Sscan(string(b), &a, &b1, &c)
	return a + " " + b1 + " " + c
}
