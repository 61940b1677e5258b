package integration

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// TestTSOTransfer sends 64 MiB between two containers whose TAPs have TSO
// on: the hashes match, and the sender's port received frames larger than
// the MTU on average, so super-frames crossed the switch whole.
func TestTSOTransfer(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a, b, pb := d.attachAB(t)
	sent, got := transfer(t, a, b, ip(pb), 64<<20, nil)
	if sent != got {
		t.Fatalf("sha256: sent %x, received %x", sent, got)
	}
	for _, p := range d.ports(t) {
		if p.Name != "a" {
			continue
		}
		avg := p.Stats.RxBytes / max(p.Stats.RxPackets, 1)
		t.Logf("port a: %d frames, %d bytes, %d bytes a frame on average", p.Stats.RxPackets, p.Stats.RxBytes, avg)
		if avg <= 1514 {
			t.Errorf("port a: %d bytes a frame on average, want more than 1514 (TSO super-frames)", avg)
		}
	}
}

// TestTCPToGateway connects from a container with TSO and checksum offload
// on to a port of the gateway, where nothing listens: the SYN leaves the
// container with a partial checksum, the switch completes it for the
// gateway (which has no offloads), and the gateway's RST comes back as a
// refused connection instead of a timeout.
func TestTCPToGateway(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	a := newNS(t)
	pa := d.attach(t, a, "a")
	info, err := d.client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var dialErr error
	if err := netnsutil.Do(netnsutil.Path(a), func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(info.Gateway, "9"), 5*time.Second)
		if c != nil {
			c.Close()
		}
		dialErr = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(dialErr, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s:9 from %s (%s): got %v, want connection refused (the gateway's RST)", info.Gateway, a, pa.IP, dialErr)
	}
}
