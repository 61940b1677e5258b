package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The overlay rows: TCP container -> container across two hosts joined by
// VXLAN (VNI 42), each pair of hosts a topology of its own:
//
//	vxlan-kernel            kernel vxlan <-> kernel vxlan (the reference)
//	vxlan-tapswitch         tapswitch <-> tapswitch
//	vxlan-tapswitch-kernel  tapswitch -> kernel vxlan
//
// A pair is an underlay namespace (u) with a bridge, two hosts (h1, h2) on
// it by veth (198.51.100.1 and .2), and a container on each (a on h1, the
// client; b on h2, the server) in 10.80.0.0/16. A tapswitch host runs the
// daemon with --vxlan and attaches its container; a kernel host has a
// Linux bridge with a vxlan device and its container on a veth, MTU 1450
// (the underlay's less 50). A kernel host paired with tapswitch checksums
// in software (ethtool -K u0 tx off): on a veth underlay the kernel would
// hand the tunnel inner TCP checksums left partial, which no real NIC does.

// suite is a topology that runs its own tests, not testOrder, and whose
// ratios are to another topology than the Linux bridge: the overlay pairs.
type suite interface {
	tests() []string
	reference() string // the name of the topology its ratios are to
	label() string     // its row in the table
}

// overlayTests are what the overlay pairs run.
var overlayTests = []string{"tcp1"}

// overlayRef is the overlay pairs' reference.
const overlayRef = "vxlan-kernel"

// groupTitles name the suite groups by their reference, in the table and
// the chart.
var groupTitles = map[string]string{overlayRef: "across a VXLAN overlay"}

// overlays returns the three overlay pairs. With $BASE_BIN set (another
// tapswitch binary, say main's build), the two tapswitch pairs are also
// run with it, named with -base: a change measured against its base in
// the same run.
func overlays(bin string) []topology {
	ts := []topology{
		&overlay{base: base{id: "vk"}, bin: bin},
		&overlay{base: base{id: "vt"}, bin: bin, ts: [2]bool{true, true}},
		&overlay{base: base{id: "vx"}, bin: bin, ts: [2]bool{true, false}},
	}
	if b := os.Getenv("BASE_BIN"); b != "" {
		ts = append(ts,
			&overlay{base: base{id: "wt"}, bin: b, ts: [2]bool{true, true}, tag: "-base"},
			&overlay{base: base{id: "wx"}, bin: b, ts: [2]bool{true, false}, tag: "-base"})
	}
	return ts
}

// overlay is two hosts joined by VXLAN, each tapswitch or kernel.
type overlay struct {
	base
	bin string
	ts  [2]bool // whether h1 (client side) and h2 run tapswitch
	tag string  // added to the name: "-base" for $BASE_BIN
	ip  string  // the server container's address
}

var (
	_ topology = (*overlay)(nil)
	_ suite    = (*overlay)(nil)
)

func (t *overlay) name() string {
	switch t.ts {
	case [2]bool{true, true}:
		return "vxlan-tapswitch" + t.tag
	case [2]bool{true, false}:
		return "vxlan-tapswitch-kernel" + t.tag
	case [2]bool{false, false}:
		return overlayRef
	}
	return "vxlan-kernel-tapswitch" + t.tag
}

func (t *overlay) label() string {
	side := func(ts bool) string {
		if ts {
			return "tapswitch"
		}
		return "kernel vxlan"
	}
	arrow := " <-> "
	if t.ts[0] != t.ts[1] {
		arrow = " -> "
	}
	l := side(t.ts[0]) + arrow + side(t.ts[1])
	if t.tag != "" {
		l += " (BASE_BIN)"
	}
	return l
}

func (t *overlay) tests() []string   { return overlayTests }
func (t *overlay) reference() string { return overlayRef }
func (t *overlay) serverIP() string  { return t.ip }

// underlay addresses of h1 and h2.
var overlayHosts = [2]string{"198.51.100.1", "198.51.100.2"}

// begin makes the topology's directory and its first namespace.
func (b *base) begin(side string) (string, error) {
	if err := b.tempDir(); err != nil {
		return "", err
	}
	return b.addNS(side)
}

func (t *overlay) setup(ctx context.Context) error {
	u, err := t.begin("u")
	if err != nil {
		return err
	}
	if err := shAll([][]string{
		{"ip", "-n", u, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", u, "link", "set", "br0", "up"},
	}); err != nil {
		return err
	}
	for i := range 2 {
		h, err := t.addNS(fmt.Sprintf("h%d", i+1))
		if err != nil {
			return err
		}
		if _, err := t.addNS(string(rune('a' + i))); err != nil {
			return err
		}
		p := fmt.Sprintf("p%d", i+1)
		if err := shAll([][]string{
			{"ip", "-n", h, "link", "add", "u0", "type", "veth", "peer", "name", p, "netns", u},
			{"ip", "-n", u, "link", "set", p, "master", "br0", "up"},
			{"ip", "-n", h, "addr", "add", overlayHosts[i] + "/24", "dev", "u0"},
			{"ip", "-n", h, "link", "set", "u0", "up"},
		}); err != nil {
			return err
		}
	}
	for i := range 2 {
		var ip string
		if t.ts[i] {
			ip, err = t.tapswitchHost(i)
		} else {
			ip, err = t.kernelHost(i)
		}
		if err != nil {
			return err
		}
		if i == 1 {
			t.ip = ip
		}
	}
	return nil
}

// host and container return the namespaces of host i and of its container.
func (t *overlay) host(i int) string      { return t.ns(fmt.Sprintf("h%d", i+1)) }
func (t *overlay) container(i int) string { return t.ns(string(rune('a' + i))) }

// kernelHost makes host i a Linux host: a bridge with a vxlan device that
// replicates to the other host, and the container on a veth. It returns
// the container's address.
func (t *overlay) kernelHost(i int) (string, error) {
	h, c := t.host(i), t.container(i)
	ip := fmt.Sprintf("10.80.%d.2", i+1)
	cmds := [][]string{
		{"ip", "-n", h, "link", "add", "vx42", "type", "vxlan", "id", "42", "local", overlayHosts[i], "dstport", "4789", "dev", "u0"},
		{"ip", "-n", h, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", h, "link", "set", "vx42", "master", "br0", "up"},
		{"ip", "netns", "exec", h, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx42", "dst", overlayHosts[1-i]},
		{"ip", "-n", h, "link", "add", "kv0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", c},
		{"ip", "-n", h, "link", "set", "kv0", "master", "br0", "up"},
		{"ip", "-n", h, "link", "set", "br0", "up"},
		{"ip", "-n", c, "addr", "add", ip + "/16", "dev", "eth0"},
		{"ip", "-n", c, "link", "set", "eth0", "mtu", "1450", "up"},
	}
	if t.ts[1-i] {
		cmds = append([][]string{{"ip", "netns", "exec", h, "ethtool", "-K", "u0", "tx", "off"}}, cmds...)
	}
	return ip, shAll(cmds)
}

// tapswitchHost starts a daemon with a VXLAN tunnel to the other host in
// host i and attaches the container; it returns the container's address.
// With $TAPSWITCH_CPUPROFILE set, the daemon writes its CPU profile to
// that path followed by .NAME.hI (bench/overlay.go's names) when it stops.
func (t *overlay) tapswitchHost(i int) (string, error) {
	h := t.host(i)
	sock := filepath.Join(t.dir, fmt.Sprintf("h%d.sock", i+1))
	var env []string
	if p := os.Getenv("TAPSWITCH_CPUPROFILE"); p != "" {
		env = []string{fmt.Sprintf("TAPSWITCH_CPUPROFILE=%s.%s.h%d", p, t.name(), i+1)}
	}
	// `ip netns exec` execs the daemon: the PID is tapswitch's own.
	if _, err := t.startEnv(env, "ip", "netns", "exec", h, t.bin, "run", "--control", sock, "--uplink", "none", "--dns=false",
		"--subnet", "10.80.0.0/16", "--ip-range", fmt.Sprintf("10.80.%d.0/24", i+1),
		"--vxlan", fmt.Sprintf("vni=42,local=%s,remote=%s", overlayHosts[i], overlayHosts[1-i])); err != nil {
		return "", err
	}
	if err := waitDaemon(t.bin, sock); err != nil {
		return "", err
	}
	ip, _, err := attach(t.bin, sock, t.container(i), "c")
	return ip, err
}

// waitDaemon waits for the daemon at the control socket sock to answer.
func waitDaemon(bin, sock string) error {
	for i := 0; ; i++ {
		if exec.Command(bin, "ports", "--control", sock).Run() == nil {
			return nil
		}
		if i == 200 {
			return fmt.Errorf("daemon did not answer on %s", sock)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// attach attaches the namespace ns to the daemon at sock as port name and
// returns the addresses it was given (IPv6 "" without --ipv6).
func attach(bin, sock, ns, name string) (ip, ip6 string, err error) {
	out, err := exec.Command(bin, "attach", "--netns", "/run/netns/"+ns, "--name", name, "--control", sock, "--json").Output()
	if err != nil {
		return "", "", fmt.Errorf("attach %s: %w", ns, err)
	}
	var p struct{ IP, IP6 string }
	if err := json.Unmarshal(out, &p); err != nil {
		return "", "", fmt.Errorf("attach %s: %w", ns, err)
	}
	ip, _, _ = strings.Cut(p.IP, "/")
	ip6, _, _ = strings.Cut(p.IP6, "/")
	return ip, ip6, nil
}

// shAll runs the commands in turn and stops at the first error.
func shAll(cmds [][]string) error {
	for _, c := range cmds {
		if err := sh(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}
