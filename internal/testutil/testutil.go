// Package testutil holds helpers that the tests of several packages share.
// It is imported by _test.go files only.
package testutil

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

// FreePort returns a port of network ("tcp", "tcp4", "tcp6", "udp", "udp4"
// or "udp6") that nothing is bound to on host (an IP address such as
// "127.0.0.1" or "::1") at the time of the call. Another process may take
// it before the caller binds it; tests use it on the loopback only.
func FreePort(t testing.TB, network, host string) uint16 {
	t.Helper()
	addr := net.JoinHostPort(host, "0")
	if strings.HasPrefix(network, "tcp") {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).AddrPort().Port()
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

// Listen listens on network and addr, failing the test if it cannot, and
// closes the listener when the test ends.
func Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// WantMode fails the test unless the file at path exists with permission
// bits perm (0o600 for a private file); what names the file in the message.
func WantMode(t testing.TB, what, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != perm {
		t.Errorf("%s mode: got %o, want %o", what, got, perm)
	}
}

// WantErr checks the error of a table test's case. With want empty the
// case must succeed: a non-nil err fails the test at once. Otherwise err
// must wrap target and its message contain want. It reports whether an
// error was wanted, after which the caller has nothing more to check.
func WantErr(t testing.TB, err, target error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !errors.Is(err, target) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error wrapping %q and containing %q", err, target, want)
	}
	return true
}

// ServeUDP answers each datagram read from pc with what reply returns for
// it (nothing when that is nil), sent back to its sender, until pc is
// closed. b is only valid during the call.
func ServeUDP(pc net.PacketConn, reply func(b []byte, from net.Addr) []byte) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if r := reply(buf[:n], from); r != nil {
			pc.WriteTo(r, from)
		}
	}
}
