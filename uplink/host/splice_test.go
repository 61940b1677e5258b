package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// freePort4 returns a TCP port of 127.0.0.1 that nothing listens on.
func freePort4(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort().Port()
}

// publishLoopback publishes port on 127.0.0.1 and returns the address to
// dial.
func publishLoopback(t *testing.T, r *rig, port uint16) string {
	t.Helper()
	p := nat.Publish{Proto: nat.TCP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port, HostPortEnd: port, TargetPort: 80}
	if err := r.u.Publish(p); err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(p.HostIP, port).String()
}

// dialTo is a LocalDialer that connects to target (standing for the
// container's server) for host port, and counts its calls.
func dialTo(target netip.AddrPort, port uint16, calls *atomic.Int32) uplink.LocalDialer {
	return func(ctx context.Context, hostPort uint16) (*net.TCPConn, error) {
		calls.Add(1)
		if hostPort != port {
			return nil, fmt.Errorf("host port %d, want %d", hostPort, port)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", target.String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
}

// TestPublishedTCPSpliced: a client on 127.0.0.1 of a published port is
// joined to the LocalDialer's connection and the bytes spliced both ways,
// half-close included (the echo server closes after the client's FIN);
// counted as spliced, never through the netstack; nothing left after.
func TestPublishedTCPSpliced(t *testing.T) {
	r := newRig(t, Config{})
	srv := echoServer(t)
	port := freePort4(t)
	var calls atomic.Int32
	r.u.SetLocalDialer(dialTo(srv, port, &calls))
	addr := publishLoopback(t, r, port)
	base := runtime.NumGoroutine()

	for i := range 3 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		data := make([]byte, 4<<20>>i)
		rand.Read(data)
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("connection %d: read %d bytes (%v), want the %d sent back with sha256 equal", i, len(got), err, len(data))
		}
	}
	waitFor(t, "spliced connections ended", func() bool { return r.u.Stats().TCPActive == 0 })
	s := r.u.Stats()
	if s.PublishSpliced != 3 || s.TCPTotal != 3 || s.SpliceFailed != 0 || calls.Load() != 3 || s.TxPackets != 0 {
		t.Errorf("publish_spliced %d, tcp_total %d, splice_failed %d, dials %d, packets to the netstack %d: want 3, 3, 0, 3, 0",
			s.PublishSpliced, s.TCPTotal, s.SpliceFailed, calls.Load(), s.TxPackets)
	}
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base+2 })
}

// TestPublishedTCPSpliceFallback: when the dialer declines (ErrNoLocalPath),
// fails, or splice=off, a loopback client goes through the netstack as
// before and the container sees it as Loopback.
func TestPublishedTCPSpliceFallback(t *testing.T) {
	declined := func(context.Context, uint16) (*net.TCPConn, error) {
		return nil, fmt.Errorf("%w: a rule", uplink.ErrNoLocalPath)
	}
	failed := func(context.Context, uint16) (*net.TCPConn, error) {
		return nil, syscall.ECONNREFUSED
	}
	for _, tt := range []struct {
		name       string
		cfg        Config
		dial       uplink.LocalDialer
		wantFailed uint64
	}{
		{"declined", Config{}, declined, 0},
		{"failed", Config{}, failed, 1},
		{"splice=off", Config{NoSplice: true}, failed, 0},
		{"no dialer", Config{}, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			r.u.SetLocalDialer(tt.dial)
			port := freePort4(t)
			inner, err := gonet.ListenTCP(r.peer, r.full(netip.AddrPortFrom(r.u.Addr(), port)), ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer inner.Close()
			_, sc := dialAccept(t, "tcp4", publishLoopback(t, r, port), inner)
			if got := sc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != DefaultLoopback {
				t.Errorf("the container sees the client as %s, want %s", got, DefaultLoopback)
			}
			if s := r.u.Stats(); s.PublishSpliced != 0 || s.SpliceFailed != tt.wantFailed {
				t.Errorf("publish_spliced %d, splice_failed %d: want 0, %d", s.PublishSpliced, s.SpliceFailed, tt.wantFailed)
			}
		})
	}
}

// TestPublishedTCPSplicedReset: a reset from the container's side resets
// the client, counted once; Close resets a spliced connection still open.
func TestPublishedTCPSplicedReset(t *testing.T) {
	r := newRig(t, Config{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := freePort4(t)
	var calls atomic.Int32
	r.u.SetLocalDialer(dialTo(ln.Addr().(*net.TCPAddr).AddrPort(), port, &calls))
	addr := publishLoopback(t, r, port)

	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// Reset only once the splice holds the connection: a reset that
	// reaches the dialer's connect first fails the dial, and the client
	// goes through the netstack instead (splice_failed, not a reset).
	waitFor(t, "the connection spliced", func() bool { return r.u.Stats().TCPActive == 1 })
	sc.(*net.TCPConn).SetLinger(0)
	sc.Close() // a RST
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the container's reset: %v, want connection reset", err)
	}
	waitFor(t, "the reset connection ended", func() bool { return r.u.Stats().TCPActive == 0 })
	if s := r.u.Stats(); s.TCPResets != 1 {
		t.Errorf("tcp_resets %d, want 1", s.TCPResets)
	}

	c2, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	sc2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close()
	waitFor(t, "the connection spliced", func() bool { return r.u.Stats().TCPActive == 1 })
	r.close()
	if _, err := io.ReadAll(c2); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after Close: %v, want connection reset", err)
	}
}
