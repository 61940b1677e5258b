package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAFPacketPorts runs a daemon whose containers get veth pairs read
// through AF_PACKET rings (TAPSWITCH_TAP_IO=afpacket, switch/afpacket),
// inside a namespace of its own where the switch's ends of the pairs
// live, and sends pings and an iperf3 TCP stream, with offloads, between
// two namespaces through it; detaching a port deletes its pair.
func TestAFPacketPorts(t *testing.T) {
	requireRoot(t, "ping", "iperf3")
	t.Setenv("TAPSWITCH_TAP_IO", "afpacket")
	host := newNS(t)
	d := startDaemonIn(t, host)
	ns, ports := d.attachN(t, 2, "p")
	if got := links(t, ns[0]); !strings.Contains(strings.Join(got, " "), "eth0") {
		t.Fatalf("links in %s = %v, want eth0", ns[0], got)
	}
	out, err := exec.Command("ip", "-n", ns[0], "-d", "link", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "veth") {
		t.Errorf("eth0 in %s is not a veth (%v):\n%s", ns[0], err, out)
	}
	if n := packetSockets(t, d.cmd.Process.Pid); n < len(ports) {
		t.Errorf("daemon has %d packet sockets, want at least %d (1 per port)", n, len(ports))
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
	t.Logf("iperf3 through afpacket ports: %.2f Gbit/s", res.End.SumReceived.BitsPerSecond/1e9)

	before := len(links(t, host))
	if _, stderr, code := d.cli(t, "detach", "p1"); code != 0 {
		t.Fatalf("detach p1: exit %d: %s", code, stderr)
	}
	if got := links(t, ns[0]); strings.Contains(strings.Join(got, " "), "eth0") {
		t.Errorf("links in %s after detach = %v, want no eth0", ns[0], got)
	}
	if got := len(links(t, host)); got != before-1 {
		t.Errorf("%d links in the daemon's namespace after detach, want %d (the pair's end gone)", got, before-1)
	}
}

// packetSockets counts the AF_PACKET sockets among the fds of process pid
// (/proc/net/packet lists them by inode, in the process's namespace).
func packetSockets(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/packet", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			inodes["socket:["+f[len(f)-1]+"]"] = true
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[l] {
			n++
		}
	}
	return n
}
