package integration

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// TestAttachByPID attaches the namespace of a process (`unshare --net`,
// as a container runtime leaves one), pings through it, and checks that the
// port goes away when the process, and with it the namespace, dies.
func TestAttachByPID(t *testing.T) {
	requireRoot(t, "ping", "unshare", "nsenter")
	d := startDaemon(t)
	peerNS, _ := d.attachN(t, 1, "peer")

	proc := exec.Command("unshare", "--net", "sleep", "120")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { proc.Wait(); close(exited) }()
	t.Cleanup(func() {
		proc.Process.Kill()
		<-exited
	})
	pid := strconv.Itoa(proc.Process.Pid)
	// unshare has created the namespace once /proc/PID/ns/net differs
	// from ours: wait for that before attaching.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "unshare created its namespace", func() bool {
		theirs, err := os.Readlink("/proc/" + pid + "/ns/net")
		return err == nil && theirs != self
	})

	p := cliJSON[api.Port](t, d, "attach", "--pid", pid, "--json")
	if p.Name != "pid-"+pid || p.Netns != "/proc/"+pid+"/ns/net" {
		t.Errorf("port: got name %q netns %q, want pid-%s in /proc/%s/ns/net", p.Name, p.Netns, pid, pid)
	}
	if out, err := exec.Command("nsenter", "-t", pid, "-n", "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.90.0.1").CombinedOutput(); err != nil {
		t.Errorf("ping the gateway from the process's namespace: %v\n%s", err, out)
	}
	ping(t, peerNS[0], ip(p))

	proc.Process.Kill()
	<-exited
	eventually(t, 10*time.Second, "port removed after its process died", func() bool {
		for _, q := range d.ports(t) {
			if q.Name == p.Name {
				return false
			}
		}
		return true
	})
}
