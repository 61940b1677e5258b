package testutil

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestFreePort binds each kind of port FreePort hands out, which fails if
// the port was not free or not of that network and host.
func TestFreePort(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6", "udp", "udp6"} {
		host := "127.0.0.1"
		if strings.HasSuffix(network, "6") {
			host = "::1"
		}
		t.Run(network, func(t *testing.T) {
			p := FreePort(t, network, host)
			if p == 0 {
				t.Fatal("port 0")
			}
			addr := net.JoinHostPort(host, strconv.Itoa(int(p)))
			if network[0] == 't' {
				ln, err := net.Listen(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return
			}
			c, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

// TestFrames: Add copies, Take returns in order and empties.
func TestFrames(t *testing.T) {
	var f Frames
	b := []byte{1, 2}
	f.Add(b)
	b[0] = 9
	f.Add(b)
	got := f.Take()
	if len(got) != 2 || got[0][0] != 1 || got[1][0] != 9 {
		t.Fatalf("Take() = %v, want [[1 2] [9 2]]", got)
	}
	if got := f.Take(); got != nil {
		t.Fatalf("second Take() = %v, want nil", got)
	}
}

// TestWantErr: the two passing outcomes (the failing ones end the test).
func TestWantErr(t *testing.T) {
	sentinel := errors.New("sentinel")
	if WantErr(t, nil, sentinel, "") {
		t.Error("WantErr(nil, want nothing) = true")
	}
	if !WantErr(t, fmt.Errorf("field x: %w", sentinel), sentinel, "field x") {
		t.Error("WantErr(a wrapped error, want it) = false")
	}
}
