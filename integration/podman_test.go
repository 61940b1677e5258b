package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// podman is podman 4.3 with a configuration of the test's own: the CNI
// backend with conflists in the test's directory (--cni-config-dir), its
// storage (vfs) under the test's directory, and a containers.conf given by
// CONTAINERS_CONF. Nothing under /etc is read for networks or changed.
type podman struct {
	dir  string
	conf string // CONTAINERS_CONF
	// as is put in front of podman's command line (rootless: setpriv to
	// nobody), with env added to its environment; nil for root.
	as  []string
	env []string
}

// podmanConf is the test's containers.conf. What it changes from Debian's
// defaults, and why:
//   - network_backend "cni": podman 4.3's netavark does not run CNI plugins;
//   - enable_port_reservation false: podman would otherwise bind every
//     published host port itself after ADD, which tapswitch's own listener
//     already holds ("address already in use"); the listener reserves it;
//   - runtime "runc": crun 1.8 refuses this machine's hybrid cgroup layout;
//   - default_ulimits empty: the default 1048576 files is above root's hard
//     limit here (no CAP_SYS_RESOURCE), which stops every container;
//   - cgroup_manager cgroupfs and events_logger file: no systemd here.
const podmanConf = `[containers]
default_ulimits = []

[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
enable_port_reservation = false
`

// newPodman writes the configuration, the conflist of network "tsnet" on
// the daemon at sock, and imports the image "localhost/tsbusybox" built
// from the static busybox. With rootless, podman runs as nobody, with its
// home and runtime directory in the test's directory. The test's cleanup
// removes every container and the storage.
func newPodman(t *testing.T, sock string, rootless bool) *podman {
	t.Helper()
	requireRoot(t, "podman", "runc", "conmon")
	busybox := requireStaticBusybox(t)
	// Open to nobody; removed after podman's own cleanup below.
	p := &podman{dir: tempDir(t, "tspodman")}
	netd := filepath.Join(p.dir, "net.d")
	if err := os.MkdirAll(netd, 0o755); err != nil {
		t.Fatal(err)
	}
	if rootless {
		// Without /etc/subuid ranges podman maps nobody alone; vfs
		// then cannot chown the image's files.
		run := filepath.Join(p.dir, "run")
		if err := os.Mkdir(run, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{p.dir, run} {
			if err := os.Chown(d, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p.as = asNobody
		p.env = []string{"HOME=" + p.dir, "XDG_RUNTIME_DIR=" + run}
	}
	p.conf = filepath.Join(p.dir, "containers.conf")
	writeFile(t, p.conf, fmt.Sprintf(podmanConf, cniPluginDir(t), netd))
	writeFile(t, filepath.Join(netd, "tsnet.conflist"), fmt.Sprintf(
		`{"cniVersion":"1.0.0","name":"tsnet","plugins":[{"type":"tapswitch","control":%q,"capabilities":{"portMappings":true,"ips":true}}]}`, sock))
	t.Cleanup(func() {
		// Removing the containers runs DEL; nothing else of podman's
		// lives outside p.dir but their namespaces, which rm removes.
		if out, err := p.cmd("rm", "-a", "-f", "-t", "0"); err != nil {
			t.Errorf("podman rm -a -f: %v: %s", err, out)
		}
		p.cmd("system", "reset", "-f")
	})
	img := filepath.Join(p.dir, "img.tar")
	writeImage(t, img, busybox)
	if rootless {
		err := filepath.WalkDir(p.dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, nobody, nobody)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	p.must(t, "import", img, "localhost/tsbusybox")
	return p
}

// cmd runs podman with the test's configuration and returns its combined
// output.
func (p *podman) cmd(args ...string) (string, error) {
	line := append(slices.Clone(p.as), "podman", "--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--storage-driver", "vfs", "--cni-config-dir", filepath.Join(p.dir, "net.d"))
	if p.as != nil {
		line = append(line, "--storage-opt", "vfs.ignore_chown_errors=true")
	}
	c := exec.Command(line[0], append(line[1:], args...)...)
	c.Env = append(append(os.Environ(), "CONTAINERS_CONF="+p.conf), p.env...)
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (p *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.cmd(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ podman %s\n%s", strings.Join(args, " "), out)
	return out
}

// requireStaticBusybox returns the path of a statically linked busybox
// (Debian's busybox-static), which the image is made of.
func requireStaticBusybox(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("busybox")
	if err == nil {
		var f *elf.File
		if f, err = elf.Open(path); err == nil {
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					err = fmt.Errorf("%s is dynamically linked", path)
				}
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: needs a static busybox (busybox-static; make deps installs it): %v", err)
		}
		t.Skipf("needs a static busybox (busybox-static): %v", err)
	}
	return path
}

// writeImage writes a root file system tar for `podman import`: busybox
// and its applets, and /www/index.html for httpd.
func writeImage(t *testing.T, path, busybox string) {
	t.Helper()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for _, d := range []string{"bin", "www", "etc", "tmp"} {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, app := range []string{"sh", "httpd", "ping", "ip", "cat", "sleep", "wget", "nslookup"} {
		add(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	page := []byte("hello from tapswitch\n")
	add(&tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(page))}, page)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, buf.String())
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fetchPage fetches http://addr/ from the namespace ns with a bare HTTP/1.0
// request and returns the body.
func fetchPage(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	c, err := dialTCP(t, ns, addr, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("connect to %s from %s: %w", addr, ns, err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", fmt.Errorf("GET http://%s/: %w", addr, err)
	}
	_, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	return body, nil
}

// pageServed waits until http://addr/ from ns serves the test page. The
// published port's listener is tapswitch's and accepts at once; the
// container's httpd may start listening a little after podman returns,
// so a connection before that is reset.
func pageServed(t *testing.T, ns, addr string) {
	t.Helper()
	eventually(t, 10*time.Second, "the page served at "+addr, func() bool {
		body, err := fetchPage(t, ns, addr)
		return err == nil && body == "hello from tapswitch\n"
	})
}

// TestPodman runs the walkthrough of the README's "With podman" section with
// real podman: two containers on the tapswitch network, their addresses in
// podman inspect (one chosen with --ip), ping between them, -p (a port and
// a range) reaching httpd from the host's loopback, restart, a container
// that exits by itself (DEL from podman's cleanup process), network
// disconnect while a container runs, and rm -f leaving no port, listener
// or namespace. The daemon runs in a namespace of the
// test's own (its "host"), so its listeners are there.
func TestPodman(t *testing.T) {
	requireRoot(t, "podman")
	// DNS on, with an upstream that is the host namespace's own loopback
	// (nothing listens there): only local names are asked below.
	d, host, _ := startHost(t, false, "--dns-upstream", "127.0.0.1:9")
	p := newPodman(t, d.sock, false)

	// web2 asks for its address (--ip, the "ips" capability the conflist
	// declares) and publishes a range, which podman sends port by port.
	p.must(t, "run", "-d", "--network", "tsnet", "-p", "18180:80", "--name", "web1", "localhost/tsbusybox", "httpd", "-f", "-p", "80", "-h", "/www")
	p.must(t, "run", "-d", "--network", "tsnet", "--ip", "10.90.0.77", "-p", "18190-18191:80-81", "--name", "web2", "localhost/tsbusybox", "httpd", "-f", "-p", "80", "-h", "/www")
	var sandboxes []string // the containers' namespaces, /run/netns/netns-UUID
	for _, c := range []string{"web1", "web2"} {
		sb := p.must(t, "inspect", "-f", "{{.NetworkSettings.SandboxKey}}", c)
		if !strings.HasPrefix(sb, "/") {
			t.Fatalf("podman inspect %s: sandbox %q, want a namespace path", c, sb)
		}
		sandboxes = append(sandboxes, sb)
	}
	ip1 := p.must(t, "inspect", "-f", "{{.NetworkSettings.Networks.tsnet.IPAddress}}", "web1")
	ip2 := p.must(t, "inspect", "-f", "{{.NetworkSettings.Networks.tsnet.IPAddress}}", "web2")
	for name, addr := range map[string]string{"web1": ip1, "web2": ip2} {
		port, ok := d.portNamed(t, name)
		if !ok {
			t.Fatalf("no port %s in tapswitch ports: %v", name, d.ports(t))
		}
		if got := strings.SplitN(port.IP, "/", 2)[0]; got != addr {
			t.Errorf("podman inspect %s: %q, tapswitch's port has %s", name, addr, got)
		}
	}
	ports := cliJSON[[]struct {
		Name    string   `json:"name"`
		Publish []string `json:"publish"`
	}](t, d, "ports", "--json")
	t.Logf("tapswitch ports: %+v", ports)
	if ip2 != "10.90.0.77" {
		t.Errorf("web2 run with --ip 10.90.0.77 has %q", ip2)
	}
	for name, want := range map[string][]string{"web1": {"18180:80/tcp"}, "web2": {"18190-18191:80-81/tcp"}} {
		if port, _ := d.portNamed(t, name); !slices.Equal(port.Publish, want) {
			t.Errorf("%s publishes %v, want %v", name, port.Publish, want)
		}
	}
	if out := p.must(t, "port", "web1"); !strings.Contains(out, "18180") {
		t.Errorf("podman port web1 = %q, want 18180", out)
	}
	p.must(t, "exec", "web1", "ping", "-c", "2", "-W", "2", ip2)
	p.must(t, "exec", "web2", "ping", "-c", "2", "-W", "2", ip1)
	// The CNI result names the embedded DNS server: podman writes it into
	// the container's resolv.conf, and it answers the other's name.
	if rc := p.must(t, "exec", "web1", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 10.90.0.1") || !regexp.MustCompile(`(?m)^search .*\btapswitch\b`).MatchString(rc) {
		t.Errorf("web1's resolv.conf = %q, want nameserver 10.90.0.1 and search tapswitch", rc)
	}
	if out := p.must(t, "exec", "web1", "nslookup", "web2", "10.90.0.1"); !strings.Contains(out, ip2) {
		t.Errorf("nslookup web2 10.90.0.1 in web1 = %q, want %s", out, ip2)
	}
	for _, hp := range []string{"18180", "18190"} {
		pageServed(t, host, "127.0.0.1:"+hp)
	}

	// restart is DEL then ADD: the port comes back under the same name.
	p.must(t, "restart", "-t", "0", "web1")
	if _, ok := d.portNamed(t, "web1"); !ok {
		t.Errorf("no port web1 after podman restart: %v", d.ports(t))
	}
	pageServed(t, host, "127.0.0.1:18180")

	// A container that exits by itself: podman's cleanup process runs DEL,
	// with the conflist only.
	p.must(t, "run", "-d", "--network", "tsnet", "--name", "once", "localhost/tsbusybox", "sleep", "1")
	eventually(t, 30*time.Second, "port of the exited container removed by podman's cleanup", func() bool {
		_, ok := d.portNamed(t, "once")
		return !ok
	})

	// network disconnect runs DEL while the container lives on.
	p.must(t, "network", "disconnect", "tsnet", "web2")
	if _, ok := d.portNamed(t, "web2"); ok {
		t.Errorf("port web2 still there after podman network disconnect")
	}
	if st := p.must(t, "inspect", "-f", "{{.State.Running}}", "web2"); st != "true" {
		t.Errorf("web2 running = %q after disconnect, want true", st)
	}
	if c, err := dialTCP(t, host, "127.0.0.1:18190", 2*time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:18190 still accepts after disconnect")
	}

	p.must(t, "rm", "-f", "-t", "0", "web1", "web2", "once")
	if got := d.ports(t); len(got) != 1 || got[0].Kind != "gateway" {
		t.Errorf("tapswitch ports after podman rm -f = %+v, want the gateway only", got)
	}
	if c, err := dialTCP(t, host, "127.0.0.1:18180", 2*time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:18180 still accepts after rm -f")
	}
	for _, sb := range sandboxes {
		if _, err := os.Stat(sb); !os.IsNotExist(err) {
			t.Errorf("namespace %s after rm -f: %v, want it gone", sb, err)
		}
	}
}

// TestPodmanRootless runs rootless podman (as nobody) on the CNI network of
// an unprivileged daemon. Rootless podman runs the plugin inside its own
// mount namespace, where the container's namespace is a bind mount the
// daemon cannot see: the plugin then names it by its own /proc/PID/fd/N.
// The port is published with `tapswitch publish`, not podman's -p: rootless
// podman binds -p ports itself (rootlessport) in the user's namespace,
// where a daemon of the user's own already listens on them.
func TestPodmanRootless(t *testing.T) {
	requireRootless(t, "podman")
	d, host := startRootlessDaemon(t, "--uplink", "host")
	if out, err := exec.Command("ip", "-n", host, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", host, err, out)
	}
	p := newPodman(t, d.sock, true)
	p.must(t, "run", "-d", "--network", "tsnet", "--name", "rl1", "localhost/tsbusybox", "httpd", "-f", "-p", "80", "-h", "/www")
	if out, errOut, code := d.cli(t, "publish", "18480:80", "--to", "rl1"); code != 0 {
		t.Fatalf("tapswitch publish 18480:80 --to rl1: exit %d: %s%s", code, out, errOut)
	}
	addr := p.must(t, "inspect", "-f", "{{.NetworkSettings.Networks.tsnet.IPAddress}}", "rl1")
	port, ok := d.portNamed(t, "rl1")
	if !ok {
		t.Fatalf("no port rl1: %v", d.ports(t))
	}
	if got := strings.SplitN(port.IP, "/", 2)[0]; got != addr {
		t.Errorf("podman inspect rl1: %q, tapswitch's port has %s", addr, got)
	}
	p.must(t, "exec", "rl1", "ping", "-c", "2", "-W", "2", gatewayIP)
	pageServed(t, host, "127.0.0.1:18480")
	p.must(t, "rm", "-f", "-t", "0", "rl1")
	if _, ok := d.portNamed(t, "rl1"); ok {
		t.Errorf("port rl1 still there after podman rm -f")
	}
	if c, err := dialTCP(t, host, "127.0.0.1:18480", 2*time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:18480 still accepts after rm -f")
	}
}
