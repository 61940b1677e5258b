package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
)

func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "ts.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WantMode(t, "socket", path, 0o600)
	testutil.WantMode(t, "directory", dir, 0o700)
	if _, err := Listen(path); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen: got %v, want ErrRunning", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestListenStale replaces a socket file left by a daemon that died (no
// lock held), as after a SIGKILL.
func TestListenStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ts.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file not there: %v", err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

// TestControlLimits: past the cap, the oldest idle connection makes room,
// and without one a connection is refused with a sentence; idle
// connections and slow bodies are cut; the API answers throughout; stats
// and metrics count the connections closed and refused.
func TestControlLimits(t *testing.T) {
	saved := controlLimits
	// The read timeout is long enough for the idle connections below to
	// be still there, under load, when the request that evicts one comes.
	controlLimits = limits{read: time.Second, write: 5 * time.Second, idle: time.Second, conns: 3}
	t.Cleanup(func() { controlLimits = saved })
	d := newTestDaemon(t, Config{})
	path := filepath.Join(t.TempDir(), "ts.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	readAll := func(c net.Conn) string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v (the server did not close the connection)", err)
		}
		return string(b)
	}
	// Three requests whose bodies stop coming fill the cap: a fourth
	// connection is refused with a sentence.
	var slow []net.Conn
	for range 3 {
		c := dial()
		// The handler reading the body answers 100 Continue: the
		// request is then in progress.
		fmt.Fprintf(c, "POST /v1/ports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("slow request: got %q, %v; want 100 Continue", line, err)
		}
		fmt.Fprintf(c, "{\"netns\":")
		slow = append(slow, c)
	}
	if got := d.Stats().Control; got != (api.ControlStats{Connections: 3}) {
		t.Errorf("stats with the cap full: got %+v, want 3 connections", got)
	}
	if got := value(scrape(t, d.MetricsHandler()), "tapswitch_control_connections"); got != 3 {
		t.Errorf("tapswitch_control_connections with the cap full: got %v, want 3", got)
	}
	if got := readAll(dial()); !strings.HasPrefix(got, "HTTP/1.1 503") || !strings.Contains(got, "too many control connections") {
		t.Errorf("fourth connection: got %q, want a 503 saying too many control connections", got)
	}
	if got := d.Stats().Control.Refused; got != 1 {
		t.Errorf("stats: %d refused, want 1", got)
	}
	// The slow bodies are cut.
	for i, c := range slow {
		if got := readAll(c); strings.Contains(got, "201 Created") {
			t.Errorf("slow body %d: got %q, want it cut", i, got)
		}
	}
	// Idle connections make room for a request: the oldest is closed.
	var idle []net.Conn
	for range 3 {
		idle = append(idle, dial())
		time.Sleep(10 * time.Millisecond) // distinct ages
	}
	c := api.NewClient(path)
	if _, err := c.Ports(context.Background()); err != nil {
		t.Errorf("ports with the idle connections at the cap: %v", err)
	}
	if got := readAll(idle[0]); got != "" {
		t.Errorf("oldest idle connection: got %q, want it closed without an answer", got)
	}
	mf := scrape(t, d.MetricsHandler())
	for _, m := range []struct {
		reason string
		want   float64
	}{{"idle_longest", 1}, {"refused", 1}} {
		if got := value(mf, "tapswitch_control_connections_closed_total", "reason", m.reason); got != m.want {
			t.Errorf("tapswitch_control_connections_closed_total{reason=%q}: got %v, want %v", m.reason, got, m.want)
		}
	}
	// The others are cut by the read timeout.
	for i, c := range idle[1:] {
		if got := readAll(c); got != "" {
			t.Errorf("idle connection %d: got %q, want it closed without an answer", i+1, got)
		}
	}
	if _, err := c.Ports(context.Background()); err != nil {
		t.Errorf("ports after the limits: %v", err)
	}
}
