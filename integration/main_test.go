package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// bin is the tapswitch binary under test, built by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tapswitch-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "tapswitch")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "../cmd/tapswitch")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tapswitch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips the test without root and the tools it needs, or fails
// it when CI=true: in CI a missing privilege is a failure, not a skip.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		miss("needs root to create network namespaces and TAP devices")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			miss(fmt.Sprintf("needs %s (make deps installs it)", tool))
		}
	}
}

var nsSeq int

// newNS creates a uniquely named namespace for the test and deletes it when
// the test ends. It returns the name.
func newNS(t *testing.T) string {
	t.Helper()
	nsSeq++
	name := fmt.Sprintf("tswi%d-%d", os.Getpid(), nsSeq)
	if err := netnsutil.Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(netnsutil.Path(name)); err == nil {
			if err := netnsutil.Del(name); err != nil {
				t.Error(err)
			}
		}
	})
	return name
}

// syncBuffer is a bytes.Buffer safe for the daemon's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is a `tapswitch run` process started by a test.
type daemon struct {
	cmd    *exec.Cmd
	sock   string
	log    *syncBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
	client *api.Client
	// as is put in front of the CLI's command line (cli): e.g. setpriv
	// to run it as another user. nil runs it as the test.
	as []string
}

// startDaemon runs `tapswitch run` with args on a fresh control socket and
// waits until it answers. The test's cleanup stops it.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemonIn(t, "", args...)
}

// startDaemonIn is startDaemon with the daemon running inside the
// namespace ns (`ip netns exec NS tapswitch run`), so that ns is its host;
// "" means the test's own namespace.
func startDaemonIn(t *testing.T, ns string, args ...string) *daemon {
	t.Helper()
	dir := tempDir(t, "tsw")
	var prefix []string
	if ns != "" {
		prefix = []string{"ip", "netns", "exec", ns}
	}
	return startDaemonWith(t, dir, prefix, args...)
}

// tempDir returns a new directory in os.TempDir() whose name starts with
// prefix, removed when the test ends. Unlike t.TempDir()'s, whose parent
// is 0700, it is open to the user nobody (rootless daemons, podman).
func tempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemonWith is startDaemon with the control socket in dir and the
// command line put after prefix (e.g. `ip netns exec NS setpriv ...`).
func startDaemonWith(t *testing.T, dir string, prefix []string, args ...string) *daemon {
	t.Helper()
	return startDaemonExe(t, bin, dir, prefix, args...)
}

// startDaemonExe is startDaemonWith running the binary exe.
func startDaemonExe(t *testing.T, exe, dir string, prefix []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "ctl.sock"), log: &syncBuffer{}, exited: make(chan struct{})}
	line := append(append(append([]string{}, prefix...), exe, "run", "--control", d.sock), withUplink(args)...)
	d.cmd = exec.Command(line[0], line[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	d.client = api.NewClient(d.sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.client.Info(ctx)
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("daemon exited (%v): %s", d.err, d.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer within 10s: %v\n%s", err, d.log.String())
		}
	}
}

// withUplink returns args with `--uplink none` added when they choose no
// uplink: the tests of the switch alone predate the host uplink, which is
// tapswitch run's default, and must not open host sockets in the test's
// namespace.
func withUplink(args []string) []string {
	args = withoutDNS(args)
	for _, a := range args {
		if a == "--uplink" || strings.HasPrefix(a, "--uplink=") {
			return args
		}
	}
	return append([]string{"--uplink", "none"}, args...)
}

// withoutDNS returns args with `--dns=false` added when they say nothing
// of DNS: the embedded DNS server would forward to the machine's own
// resolvers, which tests must never query. The DNS tests name an upstream
// of their own with --dns-upstream.
func withoutDNS(args []string) []string {
	for _, a := range args {
		if strings.HasPrefix(a, "--dns") {
			return args
		}
	}
	return append([]string{"--dns=false"}, args...)
}

// stop sends SIGTERM and waits for the daemon to exit; it returns Wait's
// error. It is safe to call more than once.
func (d *daemon) stop(t *testing.T) error {
	t.Helper()
	select {
	case <-d.exited:
		return d.err
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("daemon did not exit within 10s of SIGTERM")
	}
	return d.err
}

// cli runs the tapswitch CLI against d and returns stdout, stderr and the
// exit status.
func (d *daemon) cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runAs(t, d.as, append(args, "--control", d.sock)...)
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runAs(t, nil, args...)
}

// runAs runs the tapswitch CLI after the command line prefix (nil: as the
// test) and returns stdout, stderr and the exit status.
func runAs(t *testing.T, prefix []string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	line := append(append(append([]string{}, prefix...), bin), args...)
	cmd := exec.Command(line[0], line[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// cliJSON runs `tapswitch args...` (args include --json) against d, fails
// the test unless it exits 0, and decodes its output into a T.
func cliJSON[T any](t *testing.T, d *daemon, args ...string) T {
	t.Helper()
	var v T
	out, errOut, code := d.cli(t, args...)
	if code != 0 {
		t.Fatalf("tapswitch %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("tapswitch %s: output %q: %v", strings.Join(args, " "), out, err)
	}
	return v
}

// attach attaches the namespace ns as a port called name and returns it.
func (d *daemon) attach(t *testing.T, ns, name string, extra ...string) api.Port {
	t.Helper()
	return cliJSON[api.Port](t, d, append([]string{"attach", "--netns", netnsutil.Path(ns), "--name", name, "--json"}, extra...)...)
}

// attachAB attaches two new namespaces as ports a and b and returns the
// namespaces and b's port.
func (d *daemon) attachAB(t *testing.T) (a, b string, pb api.Port) {
	t.Helper()
	a, b = newNS(t), newNS(t)
	d.attach(t, a, "a")
	return a, b, d.attach(t, b, "b")
}

// attachN attaches n new namespaces as ports prefix1..prefixN.
func (d *daemon) attachN(t *testing.T, n int, prefix string) ([]string, []api.Port) {
	t.Helper()
	var ns []string
	var ports []api.Port
	for i := range n {
		ns = append(ns, newNS(t))
		ports = append(ports, d.attach(t, ns[i], fmt.Sprintf("%s%d", prefix, i+1)))
	}
	return ns, ports
}

func (d *daemon) ports(t *testing.T) []api.Port {
	t.Helper()
	return cliJSON[[]api.Port](t, d, "ports", "--json")
}

// ip returns the address of a port without its prefix length.
func ip(p api.Port) string { return strings.SplitN(p.IP, "/", 2)[0] }

// ping runs ping inside ns and fails the test if no reply comes back.
func ping(t *testing.T, ns, addr string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", addr).CombinedOutput()
	if err != nil {
		t.Errorf("ping %s from %s: %v\n%s", addr, ns, err, out)
	}
}

// links lists the interface names of a namespace ("" for the test's own).
func links(t *testing.T, ns string) []string {
	t.Helper()
	args := []string{"-o", "link", "show"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
