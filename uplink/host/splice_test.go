package host

import (
	"bytes"
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

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// publishLoopback publishes port on 127.0.0.1 and returns the address to
// dial.
func publishLoopback(t *testing.T, r *rig, port uint16) string {
	t.Helper()
	return publishAt(t, r, nat.Publish{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port})
}

// publishAt publishes p (TCP, one host port, to port 80) and returns the
// address to dial.
func publishAt(t *testing.T, r *rig, p nat.Publish) string {
	t.Helper()
	p.Proto, p.HostPortEnd, p.TargetPort = nat.TCP, p.HostPort, 80
	if err := r.u.Publish(p); err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(p.HostIP, p.HostPort).String()
}

// dialTo is a LocalDialer that connects to target (standing for the
// container's server) for host port and the family v6, and counts its
// calls.
func dialTo(target netip.AddrPort, port uint16, v6 bool, calls *atomic.Int32) uplink.LocalDialer {
	return func(ctx context.Context, hostPort uint16, gotV6 bool) (*net.TCPConn, error) {
		calls.Add(1)
		if hostPort != port || gotV6 != v6 {
			return nil, fmt.Errorf("host port %d, v6 %t; want %d, %t", hostPort, gotV6, port, v6)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target.String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
}

// TestPublishedTCPSpliced: a client on 127.0.0.1 or ::1 of a published
// port is joined to the LocalDialer's connection (asked for the
// container's IPv6 address only when the client is on ::1 and the
// container has one) and the bytes spliced both ways, 64 MiB, 1 MiB, one
// byte and none with their sha256 equal, half-close included (the echo server closes after the
// client's FIN); counted as spliced, never through the netstack; nothing
// left after.
func TestPublishedTCPSpliced(t *testing.T) {
	for _, tt := range []struct {
		name    string
		network string
		pub     nat.Publish
		wantV6  bool
	}{
		{"127.0.0.1", "tcp4", nat.Publish{HostIP: netip.MustParseAddr("127.0.0.1")}, false},
		{"::1 to the container's IPv6 address", "tcp6", nat.Publish{HostIP: netip.IPv6Loopback(), Target6: netip.MustParseAddr("fd00::2")}, true},
		{"::1 to a container without IPv6", "tcp6", nat.Publish{HostIP: netip.IPv6Loopback()}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{})
			srv := echoServerAt(t, tt.network, netip.AddrPortFrom(tt.pub.HostIP, 0).String())
			tt.pub.HostPort = testutil.FreePort(t, "tcp4", "127.0.0.1")
			var calls atomic.Int32
			r.u.SetLocalDialer(dialTo(srv, tt.pub.HostPort, tt.wantV6, &calls))
			addr := publishAt(t, r, tt.pub)
			base := runtime.NumGoroutine()

			for i, size := range []int{64 << 20, 1 << 20, 1, 0} {
				c, err := net.Dial(tt.network, addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(60 * time.Second))
				data := make([]byte, size)
				rand.Read(data)
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				h := sha256.New()
				n, err := io.Copy(h, c)
				c.Close()
				if want := sha256.Sum256(data); err != nil || n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
					t.Fatalf("connection %d: read %d bytes (%v), want the %d sent back with sha256 equal", i, n, err, size)
				}
			}
			waitFor(t, "spliced connections ended", func() bool { return r.u.Stats().TCPActive == 0 })
			s := r.u.Stats()
			if s.PublishSpliced != 4 || s.TCPTotal != 4 || s.SpliceFailed != 0 || calls.Load() != 4 || s.TxPackets != 0 {
				t.Errorf("publish_spliced %d, tcp_total %d, splice_failed %d, dials %d, packets to the netstack %d: want 4, 4, 0, 4, 0",
					s.PublishSpliced, s.TCPTotal, s.SpliceFailed, calls.Load(), s.TxPackets)
			}
			waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base+2 })
		})
	}
}

// TestPublishedTCPSpliceFallback: when the dialer declines (ErrNoLocalPath),
// fails, or splice=off, a loopback client goes through the netstack as
// before and the container sees it as Loopback.
func TestPublishedTCPSpliceFallback(t *testing.T) {
	declined := func(context.Context, uint16, bool) (*net.TCPConn, error) {
		return nil, fmt.Errorf("%w: a rule", uplink.ErrNoLocalPath)
	}
	failed := func(context.Context, uint16, bool) (*net.TCPConn, error) {
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
			port := testutil.FreePort(t, "tcp4", "127.0.0.1")
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
	ln := testutil.Listen(t, "tcp4", "127.0.0.1:0")
	port := testutil.FreePort(t, "tcp4", "127.0.0.1")
	var calls atomic.Int32
	r.u.SetLocalDialer(dialTo(ln.Addr().(*net.TCPAddr).AddrPort(), port, false, &calls))
	addr := publishLoopback(t, r, port)

	c, sc := dialAccept(t, "tcp4", addr, ln)
	c.SetDeadline(time.Now().Add(10 * time.Second))
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

	c2, _ := dialAccept(t, "tcp4", addr, ln)
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	waitFor(t, "the connection spliced", func() bool { return r.u.Stats().TCPActive == 1 })
	r.close()
	if _, err := io.ReadAll(c2); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after Close: %v, want connection reset", err)
	}
}

// TestSpliceAllocs: the bytes of a spliced connection allocate nothing
// once it is set up: 20 round trips of 256 KiB each through the splice
// (and back through it from the echo server) cost no allocation.
func TestSpliceAllocs(t *testing.T) {
	r := newRig(t, Config{})
	srv := echoServer(t)
	port := testutil.FreePort(t, "tcp4", "127.0.0.1")
	var calls atomic.Int32
	r.u.SetLocalDialer(dialTo(srv, port, false, &calls))
	c, err := net.Dial("tcp4", publishLoopback(t, r, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	out, in := make([]byte, 256<<10), make([]byte, 256<<10)
	rand.Read(out)
	round := func() {
		if err == nil {
			_, err = c.Write(out)
		}
		if err == nil {
			_, err = io.ReadFull(c, in)
		}
	}
	round() // the splice's goroutines and pipes exist from here on
	if n := testing.AllocsPerRun(20, round); n != 0 || err != nil {
		t.Errorf("%v allocations per 256 KiB round trip (%v), want 0", n, err)
	}
	if !bytes.Equal(in, out) {
		t.Error("the echo differs from what was sent")
	}
	if s := r.u.Stats(); s.PublishSpliced != 1 {
		t.Errorf("publish_spliced %d, want 1", s.PublishSpliced)
	}
}

// tcpPair returns the two ends of a TCP connection over 127.0.0.1.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

// TestSpliceCopySmallPipe: spliceCopy carries 4 MiB whole through a pipe
// of one page (as a user past pipe-user-pages-soft gets), the pipe full
// most of the time, and returns at the source's EOF; the pipe, empty,
// goes back for reuse.
func TestSpliceCopySmallPipe(t *testing.T) {
	for len(freePipes) > 0 {
		putPipe(<-freePipes, false)
	}
	p, err := getPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.size != splicePipeSize {
		t.Errorf("a new pipe holds %d bytes, want %d", p.size, splicePipeSize)
	}
	if p.size, err = unix.FcntlInt(uintptr(p.r), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	putPipe(p, true)

	client, in := tcpPair(t)
	out, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- spliceCopy(out, in) }()
	data := make([]byte, 4<<20)
	rand.Read(data)
	go func() {
		client.Write(data)
		client.CloseWrite()
	}()
	server.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %v; want the 4 MiB sent, equal", err)
	}
	if err := <-done; err != nil {
		t.Errorf("spliceCopy: %v, want nil at EOF", err)
	}
	if q := <-freePipes; q != p {
		t.Errorf("the pipe did not go back for reuse")
	}
}
