package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// topology is one switch between two namespaces: the client (a) and the
// server (b).
type topology interface {
	name() string
	setup(ctx context.Context) error
	teardown()
	client() string // namespace of the iperf3 client and of ping
	server() string // namespace of the iperf3 server
	serverIP() string
	serverIP6() string // the server's IPv6 address, for tcp1v6
	pids() []int       // the switch's processes, for CPU time; none for the kernel
}

// prefix names this run's namespaces; the PID keeps parallel runs apart.
var prefix = fmt.Sprintf("tsb%d", os.Getpid())

// have reports whether the command is installed.
func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

// available lists the topologies to run: the bridge, tapswitch and the
// overlay pairs (overlay.go) always, OVS and vde2 when installed; only, if
// set, picks by name.
func available(bin, only, variants string) []topology {
	all := []topology{
		&bridge{base: base{id: "br"}},
		&tapsw{base: base{id: "ts"}, bin: bin},
	}
	for i, v := range strings.Split(variants, ",") {
		switch v {
		case "nooffload":
			all = append(all, &tapsw{base: base{id: fmt.Sprintf("t%d", i)}, bin: bin, variant: v, env: []string{"TAPSWITCH_TAP_OFFLOADS=off"}})
		case "":
		default:
			progress("unknown variant %q (nooffload): ignored", v)
		}
	}
	if have("ovs-vswitchd") && have("ovsdb-server") && have("ovs-vsctl") && have("ovsdb-tool") {
		all = append(all, &ovs{base: base{id: "ov"}}, &ovs{base: base{id: "ot"}, tso: true})
	} else {
		progress("Open vSwitch not installed (make bench-deps): skipped")
	}
	if have("vde_switch") {
		all = append(all, &vde{base: base{id: "vd"}})
	} else {
		progress("vde2 not installed (make bench-deps): skipped")
	}
	all = append(all, overlays(bin)...)
	if only == "" {
		return all
	}
	var out []topology
	for _, t := range all {
		for _, n := range strings.Split(only, ",") {
			if n == t.name() {
				out = append(out, t)
			}
		}
	}
	return out
}

// base holds what every topology has: its namespaces, the processes it
// started and a temporary directory.
type base struct {
	id    string // short, in namespace names
	nss   []string
	procs []*exec.Cmd
	dir   string
}

func (b *base) ns(side string) string { return prefix + b.id + side }
func (b *base) client() string        { return b.ns("a") }
func (b *base) server() string        { return b.ns("b") }
func (b *base) serverIP() string      { return "198.51.100.2" }
func (b *base) serverIP6() string     { return "2001:db8:b::2" }

func (b *base) pids() []int {
	var p []int
	for _, c := range b.procs {
		p = append(p, c.Process.Pid)
	}
	return p
}

// addNS creates a namespace with lo up and remembers it for teardown.
func (b *base) addNS(side string) (string, error) {
	n := b.ns(side)
	if err := sh("ip", "netns", "add", n); err != nil {
		return "", err
	}
	b.nss = append(b.nss, n)
	if tcpCC != "" {
		if err := sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.tcp_congestion_control="+tcpCC); err != nil {
			return n, err
		}
	}
	return n, sh("ip", "-n", n, "link", "set", "lo", "up")
}

// switchNS makes the temporary directory and the namespace of the switch
// itself, and returns the namespace's name.
func (b *base) switchNS() (string, error) {
	if err := b.tempDir(); err != nil {
		return "", err
	}
	return b.addNS("s")
}

func (b *base) tempDir() error {
	d, err := os.MkdirTemp("", prefix+b.id)
	b.dir = d
	return err
}

// start starts a long-running process and remembers it for teardown.
func (b *base) start(name string, args ...string) (*exec.Cmd, error) {
	return b.startEnv(nil, name, args...)
}

// startEnv is start with env added to the environment.
func (b *base) startEnv(env []string, name string, args ...string) (*exec.Cmd, error) {
	c := exec.Command(name, args...)
	if env != nil {
		c.Env = append(os.Environ(), env...)
	}
	if b.dir != "" {
		f, err := os.Create(filepath.Join(b.dir, filepath.Base(name)+".log"))
		if err == nil {
			c.Stdout, c.Stderr = f, f
		}
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	b.procs = append(b.procs, c)
	return c, nil
}

// teardown stops the processes this topology started (by PID), deletes its
// namespaces and its directory.
func (b *base) teardown() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		c := b.procs[i]
		c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
	b.procs = nil
	for _, n := range b.nss {
		exec.Command("ip", "netns", "del", n).Run()
	}
	b.nss = nil
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// sh runs a command and returns its error with its output.
func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hostSide configures the interface dev already moved into namespace ns as
// the eth0 of container i (1 or 2): renamed, its IPv4 address
// 198.51.100.i/24 and IPv6 address 2001:db8:b::i/64 (without duplicate
// address detection, so that it works at once, as tapswitch's attach
// adds it), up.
func hostSide(ns, dev string, i int) error {
	if dev != "eth0" {
		if err := sh("ip", "-n", ns, "link", "set", dev, "name", "eth0"); err != nil {
			return err
		}
	}
	if err := sh("ip", "-n", ns, "addr", "add", fmt.Sprintf("198.51.100.%d/24", i), "dev", "eth0"); err != nil {
		return err
	}
	if err := sh("ip", "-n", ns, "addr", "add", fmt.Sprintf("2001:db8:b::%d/64", i), "dev", "eth0", "nodad"); err != nil {
		return err
	}
	return sh("ip", "-n", ns, "link", "set", "eth0", "up")
}

// bridge is the reference: a Linux bridge in its own namespace and a veth
// pair into each side.
type bridge struct{ base }

func (t *bridge) name() string { return "linux-bridge" }

func (t *bridge) setup(ctx context.Context) error {
	sw, err := t.addNS("s")
	if err != nil {
		return err
	}
	if err := sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := sh("ip", "-n", sw, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i, side := range []string{"a", "b"} {
		ns, err := t.addNS(side)
		if err != nil {
			return err
		}
		if err := sh("ip", "-n", sw, "link", "add", "v"+side, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
		if err := sh("ip", "-n", sw, "link", "set", "v"+side, "master", "br0", "up"); err != nil {
			return err
		}
		if err := hostSide(ns, "eth0", i+1); err != nil {
			return err
		}
	}
	return nil
}

// tapsw is tapswitch: the daemon in its own namespace, both sides attached.
type tapsw struct {
	base
	bin     string
	ip, ip6 string   // the server's addresses
	variant string   // "" or what -variants named
	env     []string // for the daemon, on top of ours
}

func (t *tapsw) name() string {
	if t.variant != "" {
		return "tapswitch-" + t.variant
	}
	return "tapswitch"
}
func (t *tapsw) serverIP() string  { return t.ip }
func (t *tapsw) serverIP6() string { return t.ip6 }

func (t *tapsw) setup(ctx context.Context) error {
	sw, err := t.switchNS()
	if err != nil {
		return err
	}
	sock := filepath.Join(t.dir, "ctl.sock")
	// `ip netns exec` execs the daemon: the PID is tapswitch's own.
	if _, err := t.startEnv(t.env, "ip", "netns", "exec", sw, t.bin, "run", "--control", sock, "--subnet", "198.51.100.0/24",
		"--ipv6", "--subnet6", "2001:db8:b::/64", "--uplink", "none", "--dns=false"); err != nil {
		return err
	}
	if err := waitDaemon(t.bin, sock); err != nil {
		return err
	}
	for _, side := range []string{"a", "b"} {
		ns, err := t.addNS(side)
		if err != nil {
			return err
		}
		if t.ip, t.ip6, err = attach(t.bin, sock, ns, side); err != nil {
			return err
		}
	}
	return nil
}

// ovs is Open vSwitch with the userspace (netdev) datapath and tap ports,
// its own ovsdb-server and ovs-vswitchd in a namespace of their own, with
// userspace-tso-enable or without.
type ovs struct {
	base
	tso bool
}

func (t *ovs) name() string {
	if t.tso {
		return "ovs-user-tso"
	}
	return "ovs-user"
}

func (t *ovs) setup(ctx context.Context) error {
	sw, err := t.switchNS()
	if err != nil {
		return err
	}
	db := filepath.Join(t.dir, "conf.db")
	sock := "unix:" + filepath.Join(t.dir, "db.sock")
	schema := "/usr/share/openvswitch/vswitch.ovsschema"
	if err := sh("ovsdb-tool", "create", db, schema); err != nil {
		return err
	}
	if _, err := t.start("ip", "netns", "exec", sw, "ovsdb-server", db, "--remote=p"+sock,
		"--unixctl="+filepath.Join(t.dir, "ovsdb.ctl"), "--no-chdir"); err != nil {
		return err
	}
	vsctl := func(args ...string) error {
		return sh("ovs-vsctl", append([]string{"--db=" + sock, "--timeout=10"}, args...)...)
	}
	var err2 error
	for i := 0; i < 100; i++ {
		if err2 = vsctl("--no-wait", "init"); err2 == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err2 != nil {
		return err2
	}
	if t.tso {
		if err := vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"); err != nil {
			return err
		}
	}
	if _, err := t.start("ip", "netns", "exec", sw, "ovs-vswitchd", sock, "--no-chdir",
		"--unixctl="+filepath.Join(t.dir, "vswitchd.ctl"), "--log-file="+filepath.Join(t.dir, "vswitchd.log")); err != nil {
		return err
	}
	if err := vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"); err != nil {
		return err
	}
	for i, side := range []string{"a", "b"} {
		tap := "tap" + side
		if err := vsctl("add-port", "br0", tap, "--", "set", "Interface", tap, "type=tap"); err != nil {
			return err
		}
		ns, err := t.addNS(side)
		if err != nil {
			return err
		}
		// ovs-vswitchd created the TAP in its namespace and keeps its
		// fd; the device itself moves to the container's namespace.
		if err := sh("ip", "-n", sw, "link", "set", tap, "netns", ns); err != nil {
			return err
		}
		if err := hostSide(ns, tap, i+1); err != nil {
			return err
		}
	}
	return nil
}

// vde is vde2's switch with a TAP per side (vde_switch -t).
type vde struct{ base }

func (t *vde) name() string { return "vde2" }

func (t *vde) setup(ctx context.Context) error {
	sw, err := t.switchNS()
	if err != nil {
		return err
	}
	c := exec.Command("ip", "netns", "exec", sw, "vde_switch", "-s", filepath.Join(t.dir, "sock"),
		"-M", filepath.Join(t.dir, "mgmt"), "-t", "tapa", "-t", "tapb")
	// vde_switch reads commands on stdin and exits at its end: give it a
	// pipe that stays open until teardown.
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	_ = stdin
	if err := c.Start(); err != nil {
		return err
	}
	t.procs = append(t.procs, c)
	for i, side := range []string{"a", "b"} {
		tap := "tap" + side
		ns, err := t.addNS(side)
		if err != nil {
			return err
		}
		var moveErr error
		for k := 0; k < 100; k++ {
			if moveErr = sh("ip", "-n", sw, "link", "set", tap, "netns", ns); moveErr == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if moveErr != nil {
			return moveErr
		}
		if err := hostSide(ns, tap, i+1); err != nil {
			return err
		}
	}
	return nil
}
