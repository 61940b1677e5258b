package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ovsHost makes host an Open vSwitch host with the userspace (netdev)
// datapath and native tunnelling: its underlay address moves from u0 to
// br-phy, br-int has a vxlan port (VNI 42) per remote and a tap port moved
// into a container namespace with addr. ovsdb-server and ovs-vswitchd run
// inside host until the test ends. It returns the container.
func ovsHost(t *testing.T, host, local, addr string, remotes ...string) string {
	t.Helper()
	dir := t.TempDir()
	db, sock := filepath.Join(dir, "conf.db"), "unix:"+filepath.Join(dir, "db.sock")
	if out, err := exec.Command("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema").CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool: %v: %s", err, out)
	}
	start := func(args ...string) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", host}, args...)...)
		cmd.Env = append(cmd.Environ(), "OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
	}
	start("ovsdb-server", db, "--remote=p"+sock, "--unixctl="+filepath.Join(dir, "ovsdb.ctl"), "--no-chdir")
	vsctl := func(args ...string) {
		t.Helper()
		nsRun(t, host, append([]string{"ovs-vsctl", "--db=" + sock, "--timeout=10"}, args...)...)
	}
	eventually(t, 10*time.Second, "ovsdb-server answers", func() bool {
		return exec.Command("ip", "netns", "exec", host, "ovs-vsctl", "--db="+sock, "--timeout=1", "--no-wait", "init").Run() == nil
	})
	start("ovs-vswitchd", sock, "--no-chdir", "--unixctl="+filepath.Join(dir, "vswitchd.ctl"), "--log-file="+filepath.Join(dir, "vswitchd.log"))
	vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, a := range [][]string{{"dpif/show"}, {"tnl/neigh/show"}, {"ovs/route/show"}, {"fdb/show", "br-int"}} {
			out, _ := exec.Command("ip", append([]string{"netns", "exec", host, "ovs-appctl", "-t", filepath.Join(dir, "vswitchd.ctl")}, a...)...).CombinedOutput()
			t.Logf("ovs-appctl %v:\n%s", a, out)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "vswitchd.log"))
		t.Logf("vswitchd.log:\n%s", log)
	})
	vsctl("add-port", "br-phy", "u0")
	ipIn(t, host, "addr", "flush", "dev", "u0")
	ipIn(t, host, "addr", "add", local+"/24", "dev", "br-phy")
	ipIn(t, host, "link", "set", "br-phy", "up")
	vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
	for i, r := range remotes {
		port := "vx" + string(rune('a'+i))
		vsctl("add-port", "br-int", port, "--", "set", "interface", port, "type=vxlan", "options:remote_ip="+r, "options:key=42")
	}
	vsctl("add-port", "br-int", "tapo", "--", "set", "interface", "tapo", "type=tap")
	c := newNS(t)
	ipIn(t, host, "link", "set", "tapo", "netns", c)
	ipIn(t, c, "addr", "add", addr+"/16", "dev", "tapo")
	ipIn(t, c, "link", "set", "tapo", "mtu", "1450", "up")
	ipIn(t, c, "link", "set", "lo", "up")
	return c
}

// TestVXLANOVS joins a tapswitch host and an Open vSwitch host (userspace
// datapath) on VNI 42: the containers ping each other and 16 MiB cross
// with the same sha256 both ways.
func TestVXLANOVS(t *testing.T) {
	requireRoot(t, "ping", "ethtool", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovsdb-tool")
	u := newUnderlay(t)
	const ipA, ipO = "198.51.100.1", "198.51.100.4"
	hA, hO := u.host(t, ipA), u.host(t, ipO)
	// OVS reads the underlay with a packet socket, which over veth gets a
	// UDP GSO super-packet whole and the UDP checksum left partial (a NIC
	// would segment and checksum): have the kernel do both in software
	// before tapswitch's datagrams leave.
	nsRun(t, hA, "ethtool", "-K", "u0", "tx", "off", "tx-udp-segmentation", "off")
	dA := startDaemonIn(t, hA, "--subnet", "10.80.0.0/16", "--ip-range", "10.80.1.0/24",
		"--vxlan", "vni=42,local="+ipA+",remote="+ipO)
	o1 := ovsHost(t, hO, ipO, "10.80.4.2", ipA)
	a1 := newNS(t)
	pa := dA.attach(t, a1, "a1")
	eventually(t, 20*time.Second, "a1 reaches the OVS host's container", func() bool {
		return exec.Command("ip", "netns", "exec", a1, "ping", "-c", "1", "-W", "1", "10.80.4.2").Run() == nil
	})
	ping(t, o1, ip(pa))
	hashServer(t, a1, ip(pa)+":7000")
	hashServer(t, o1, "10.80.4.2:7000")
	upload(t, a1, "10.80.4.2:7000", 16<<20)
	upload(t, o1, ip(pa)+":7000", 16<<20)
}
