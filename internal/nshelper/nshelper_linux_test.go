package nshelper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
	"github.com/tapswitch/tapswitch/switch/tap"
)

func TestWatchPID(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := WatchPID(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Exited() {
		t.Fatal("Exited() = true for a running process")
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	cmd.Process.Kill()
	cmd.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait after the process exited: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of the exit")
	}
	if !p.Exited() {
		t.Error("Exited() = false after the exit")
	}
}

func TestWatchPIDClose(t *testing.T) {
	p, err := WatchPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Wait after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of Close")
	}
}

func TestWatchPIDNoProcess(t *testing.T) {
	// Above the kernel's largest pid_max (PID_MAX_LIMIT, 2^22).
	if _, err := WatchPID(1 << 23); !errors.Is(err, ErrNoProcess) {
		t.Errorf("WatchPID(no such pid): %v, want ErrNoProcess", err)
	}
}

// TestCreateBadNamespace checks the errors Create gives before it starts a
// helper.
func TestCreateBadNamespace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := tap.Config{Name: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 90, 0, 2}}
	tests := []struct {
		netns string
		want  error
		msg   string
	}{
		{"/nonexistent/netns", tap.ErrNetnsNotFound, "/nonexistent/netns"},
		{file, tap.ErrNotNetns, "not a network namespace"},
		{"/proc/self/ns/uts", tap.ErrNotNetns, "not a network namespace"},
	}
	if os.Geteuid() != 0 {
		// Without root, the caller's own namespace is not its own to
		// change.
		tests = append(tests, struct {
			netns string
			want  error
			msg   string
		}{"/proc/self/ns/net", ErrNotOwned, "run tapswitch as root"})
	}
	for _, tt := range tests {
		cfg.Netns = tt.netns
		_, err := Create(context.Background(), "/nonexistent/tapswitch", cfg, os.Geteuid() == 0)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Create(netns %s): %v, want %v containing %q", tt.netns, err, tt.want, tt.msg)
		}
	}
}

// TestReceive checks the reply protocol: a JSON reply with a descriptor in
// SCM_RIGHTS, and an error reply without one.
func TestReceive(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "ours")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Sendmsg(fds[1], []byte(`{"offloads":3}`), unix.UnixRights(p[0]), nil, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, fd, err := receive(ctx, uc)
	if err != nil || fd < 0 || rep.Offloads != 3 || rep.Err != "" {
		t.Fatalf("receive = %+v, %d, %v; want offloads 3 and a descriptor", rep, fd, err)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor flags %#x, %v: want FD_CLOEXEC", flags, err)
	}
	unix.Close(fd)

	if err := unix.Sendmsg(fds[1], []byte(`{"error":"create tap eth0: boom","kind":"exists"}`), nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	rep, fd, err = receive(ctx, uc)
	if err != nil || fd != -1 || rep.Err != "create tap eth0: boom" || rep.Kind != "exists" {
		t.Fatalf("receive = %+v, %d, %v; want the error reply without a descriptor", rep, fd, err)
	}
}

// TestDialProtocol runs a Dialer against the helper's request loop in this
// process (no namespace change): concurrent dials each get their own
// connected socket, a refused connect comes back as the helper's reason,
// and a helper gone is ErrHelperGone.
func TestDialProtocol(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "dial")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	ours, theirs := conn(fds[0]), conn(fds[1])
	served := make(chan struct{})
	go func() { serveDials(theirs, io.Discard); close(served) }()
	d := &Dialer{h: &helper{conn: ours, stderr: new(bytes.Buffer)}, path: "test", exited: make(chan struct{})}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go netnsutil.Serve(ln, func(c net.Conn) { c.Write([]byte(c.RemoteAddr().String())) })
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			c, err := d.Dial(ctx, target)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			// The server names the connection's source: ours.
			got, err := io.ReadAll(c)
			if err == nil && string(got) != c.LocalAddr().String() {
				err = fmt.Errorf("server saw %s, the socket is %s", got, c.LocalAddr())
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	ln2, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := ln2.Addr().(*net.TCPAddr).AddrPort()
	ln2.Close()
	if _, err := d.Dial(ctx, closed); err == nil || !strings.Contains(err.Error(), "refused") || errors.Is(err, ErrHelperGone) {
		t.Errorf("dial a closed port: %v, want the helper's connection refused", err)
	}

	theirs.Close()
	<-served
	close(d.exited)
	if _, err := d.Dial(ctx, target); !errors.Is(err, ErrHelperGone) {
		t.Errorf("dial after the helper went: %v, want ErrHelperGone", err)
	}
}

// TestServeGSO checks the helper's side of a gso request, in this
// process's own namespace (nothing there is changed): a bound out of
// range and a bad MAC are "invalid", an interface that is not there is
// "gone" (ErrGone for the daemon), and none of them sends a TAP.
func TestServeGSO(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (entering a namespace) in CI")
		}
		t.Skip("needs root: the helper enters its namespace (setns)")
	}
	missing := fmt.Sprintf("tswgso%d", os.Getpid())
	tests := []struct {
		req  string
		kind string
	}{
		{`{"op":"gso","name":"eth0","mac":"02:00:00:00:00:01","gso_max_segs":0}`, "invalid"},
		{`{"op":"gso","name":"eth0","mac":"02:00:00:00:00:01","gso_max_segs":65536}`, "invalid"},
		{`{"op":"gso","name":"eth0","mac":"nope","gso_max_segs":44}`, "invalid"},
		{`{"op":"gso","name":"` + missing + `","mac":"02:00:00:00:00:01","gso_max_segs":44}`, "gone"},
	}
	for _, tt := range tests {
		rep, d := serve(strings.NewReader(tt.req))
		if d != nil {
			d.Close()
			t.Errorf("serve(%s) sent a TAP", tt.req)
		}
		if rep.Err == "" || rep.Kind != tt.kind {
			t.Errorf("serve(%s) = %+v, want an error of kind %q", tt.req, rep, tt.kind)
		}
	}
	if sendsTAP(opGSO) || sendsTAP(opRemove) || !sendsTAP(opAdopt) || !sendsTAP("") {
		t.Error("sendsTAP: only create and adopt answer with a TAP")
	}
}
