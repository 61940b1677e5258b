package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"

	"github.com/tapswitch/tapswitch/internal/testutil"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/wire"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec string
		want string // String() of the result, or a substring of the error
		ok   bool
	}{
		{"none", "none", true},
		{"", "none", true},
		{"tap,netns=/run/netns/lan,ifname=ts0,ip=198.51.100.2/24,gw=198.51.100.1",
			"tap,netns=/run/netns/lan,ifname=ts0,ip=198.51.100.2/24,gw=198.51.100.1,mac=02:42:c6:33:64:02,mtu=1500", true},
		{"tap,netns=/x,ip=198.51.100.2/24", "tap,netns=/x,ifname=ts0,ip=198.51.100.2/24,mac=02:42:c6:33:64:02,mtu=1500", true},
		{"tap,netns=/x,ip=198.51.100.2/24,mtu=1400,mac=02:00:00:00:00:09", "mac=02:00:00:00:00:09,mtu=1400", true},
		{"host", "parsed by package uplink/host", false},
		{"vxlan,netns=/x", "kind must be host, none or tap", false},
		{"tap,ip=198.51.100.2/24", "netns=PATH is required", false},
		{"tap,netns=/x", "ip=ADDR/LEN is required", false},
		{"tap,netns=/x,ip=198.51.100.2", "ip=198.51.100.2: not an address with a prefix", false},
		{"tap,netns=/x,ip=198.51.100.0/24", "network or broadcast", false},
		{"tap,netns=/x,ip=198.51.100.255/24", "network or broadcast", false},
		{"tap,netns=/x,ip=fd00::2/64", "only IPv4", false},
		{"tap,netns=/x,ip=198.51.100.2/24,gw=203.0.113.1", "gw=203.0.113.1: not on the link", false},
		{"tap,netns=/x,ip=198.51.100.2/24,gw=198.51.100.2", "own address", false},
		{"tap,netns=/x,ip=198.51.100.2/24,gw=nope", "gw=nope: not an IP", false},
		{"tap,netns=/x,ip=198.51.100.2/24,mtu=100", "mtu=100", false},
		{"tap,netns=/x,ip=198.51.100.2/24,mac=01:00:5e:00:00:01", "not a unicast", false},
		{"tap,netns=/x,ip=198.51.100.2/24,color=red", `unknown key "color"`, false},
		{"tap,netns=/x,netns=/y,ip=198.51.100.2/24", "netns given twice", false},
		{"tap,netns", "want key=value", false},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) { parseSpecCase(t, tt.spec, tt.want, tt.ok) })
	}
}

// parseSpecCase wants ParseSpec(spec) to fail with an ErrInvalidSpec
// containing want when ok is false, and else to succeed with a Config whose
// String() contains want; it returns the Config (nil after a failure).
func parseSpecCase(t *testing.T, spec, want string, ok bool) *Config {
	t.Helper()
	c, err := ParseSpec(spec)
	wantErr := ""
	if !ok {
		wantErr = want
	}
	if testutil.WantErr(t, err, ErrInvalidSpec, wantErr) {
		return nil
	}
	if got := c.String(); !strings.Contains(got, want) {
		t.Errorf("ParseSpec(%q).String() = %q, want it to contain %q", spec, got, want)
	}
	return c
}

// fakeDev is an in-memory device: Write records frames, Read returns what
// the test injects.
type fakeDev struct {
	testutil.Frames // what Write was given, unless discard
	in              chan []byte
	closed          chan struct{}
	once            sync.Once
	mu              sync.Mutex // guards discard
	// discard makes Write drop frames instead of keeping them.
	discard bool
}

func newFakeDev() *fakeDev { return &fakeDev{in: make(chan []byte, 16), closed: make(chan struct{})} }

func (d *fakeDev) Read(buf []byte, off int) (int, error) {
	select {
	case f := <-d.in:
		return copy(buf[off:], f), nil
	case <-d.closed:
		return 0, net.ErrClosed
	}
}

func (d *fakeDev) Write(buf []byte, off int) (int, error) {
	d.mu.Lock()
	discard := d.discard
	d.mu.Unlock()
	if !discard {
		d.Add(buf[off:])
	}
	return len(buf) - off, nil
}

func (d *fakeDev) Close() error { d.once.Do(func() { close(d.closed) }); return nil }

var (
	lanMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	lanIP  = netip.MustParseAddr("198.51.100.1")
)

func newTestTAP(t testing.TB) (*TAP, *fakeDev, *int64) {
	t.Helper()
	c, err := ParseSpec("tap,netns=/x,ip=198.51.100.2/24,gw=198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	dev := newFakeDev()
	now := new(int64)
	u := newTAP(*c, dev, func() int64 { return *now })
	return u, dev, now
}

// arpFrame builds a virtio_net_hdr + Ethernet + ARP frame.
func arpFrame(t *testing.T, op arp.Operation, sha [6]byte, spa netip.Addr, tpa netip.Addr, dst [6]byte) []byte {
	t.Helper()
	p := arp.Packet{HardwareType: 1, ProtocolType: wire.EtherTypeIPv4, HardwareAddrLength: 6, IPLength: 4, Operation: op,
		SenderHardwareAddr: net.HardwareAddr(sha[:]), SenderIP: spa, TargetHardwareAddr: make(net.HardwareAddr, 6), TargetIP: tpa}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, Headroom+len(b))
	wire.PutEthernet(f[vswitch.VnetHdrLen:], dst, sha, wire.EtherTypeARP)
	copy(f[Headroom:], b)
	return f
}

// ipPacket returns a buffer with Headroom and a minimal IPv4 header to dst.
func ipPacket(dst netip.Addr) []byte {
	b := make([]byte, Headroom+28)
	p := b[Headroom:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], 28)
	p[8] = 64
	p[9] = 17
	copy(p[12:16], []byte{198, 51, 100, 2})
	a := dst.As4()
	copy(p[16:20], a[:])
	return b
}

func TestResolveQueueAndSend(t *testing.T) {
	u, dev, _ := newTestTAP(t)
	// Off-link destination: the next hop is the gateway, unknown yet.
	pkt := ipPacket(netip.MustParseAddr("203.0.113.7"))
	if err := u.Send(pkt, Headroom); err != nil {
		t.Fatalf("Send: %v", err)
	}
	fs := dev.Take()
	if len(fs) != 1 || binary.BigEndian.Uint16(fs[0][vswitch.VnetHdrLen+12:]) != wire.EtherTypeARP {
		t.Fatalf("after Send to an unresolved hop: %d frames, want one ARP request", len(fs))
	}
	var req arp.Packet
	if err := req.UnmarshalBinary(fs[0][Headroom:]); err != nil || req.Operation != arp.OperationRequest || req.TargetIP != lanIP {
		t.Fatalf("ARP request %+v (%v), want a request for %s", req, err, lanIP)
	}
	if s := u.Stats(); s.PendingQueued != 1 {
		t.Errorf("PendingQueued = %d, want 1", s.PendingQueued)
	}
	// The reply releases the queued packet, addressed to the gateway's MAC.
	u.input(arpFrame(t, arp.OperationReply, lanMAC, lanIP, u.Addr(), u.mac), nil)
	fs = dev.Take()
	if len(fs) != 1 || [6]byte(fs[0][vswitch.VnetHdrLen:]) != lanMAC || !bytes.Equal(fs[0][Headroom:], pkt[Headroom:]) {
		t.Fatalf("after the ARP reply: frames %x, want the queued packet to %x", fs, lanMAC)
	}
	// Resolved: sent at once, without allocating.
	dev.mu.Lock()
	dev.discard = true
	dev.mu.Unlock()
	allocs := testing.AllocsPerRun(100, func() {
		if err := u.Send(pkt, Headroom); err != nil {
			t.Fatal(err)
		}
	})
	dev.Take()
	if allocs != 0 {
		t.Errorf("Send to a resolved hop: %v allocations, want 0", allocs)
	}
}

func TestQueueBoundAndExpiry(t *testing.T) {
	u, dev, now := newTestTAP(t)
	pkt := ipPacket(netip.MustParseAddr("198.51.100.9")) // on-link
	for range PendingPerHop + 5 {
		u.Send(pkt, Headroom)
	}
	if s := u.Stats(); s.PendingQueued != PendingPerHop || s.PendingDropped != 5 {
		t.Errorf("queued %d dropped %d, want %d and 5", s.PendingQueued, s.PendingDropped, PendingPerHop)
	}
	if n := len(dev.Take()); n != 1 {
		t.Errorf("%d ARP requests for a burst, want 1 (at most one a second)", n)
	}
	*now += int64(ResolveTimeout)
	u.expire(*now)
	if s := u.Stats(); s.PendingExpired != PendingPerHop {
		t.Errorf("PendingExpired = %d, want %d", s.PendingExpired, PendingPerHop)
	}
}

func TestAnswersARPAndDeliversIPv4(t *testing.T) {
	u, dev, _ := newTestTAP(t)
	u.input(arpFrame(t, arp.OperationRequest, lanMAC, lanIP, u.Addr(), wire.BroadcastMAC), nil)
	fs := dev.Take()
	if len(fs) != 1 {
		t.Fatalf("%d frames after an ARP request for our address, want a reply", len(fs))
	}
	var rep arp.Packet
	if err := rep.UnmarshalBinary(fs[0][Headroom:]); err != nil || rep.Operation != arp.OperationReply ||
		rep.SenderIP != u.Addr() || [6]byte(rep.SenderHardwareAddr) != u.mac || [6]byte(fs[0][vswitch.VnetHdrLen:]) != lanMAC {
		t.Fatalf("reply %+v (%v)", rep, err)
	}
	// The requester was learned: a packet to it goes out at once.
	if err := u.Send(ipPacket(lanIP), Headroom); err != nil || len(dev.Take()) != 1 {
		t.Errorf("Send to the learned requester: %v", err)
	}
	// A request for another address is not answered.
	u.input(arpFrame(t, arp.OperationRequest, lanMAC, lanIP, netip.MustParseAddr("198.51.100.77"), wire.BroadcastMAC), nil)
	if n := len(dev.Take()); n != 0 {
		t.Errorf("%d frames after an ARP request for another host, want 0", n)
	}

	var got []byte
	frame := make([]byte, Headroom+28+6) // Ethernet padding after the datagram
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv4)
	copy(frame[Headroom:], ipPacket(u.Addr())[Headroom:])
	u.input(frame, func(p []byte) { got = append([]byte(nil), p...) })
	if len(got) != 28 {
		t.Errorf("handler got %d bytes, want the 28-byte datagram without padding", len(got))
	}
	// Not for our MAC: ignored.
	got = nil
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], lanMAC, lanMAC, wire.EtherTypeIPv4)
	u.input(frame, func(p []byte) { got = p })
	if got != nil {
		t.Errorf("a datagram to another MAC reached the handler")
	}
}

func TestNoRouteAndMTU(t *testing.T) {
	c, _ := ParseSpec("tap,netns=/x,ip=198.51.100.2/24,mtu=576")
	u := newTAP(*c, newFakeDev(), nil)
	if err := u.Send(ipPacket(netip.MustParseAddr("203.0.113.7")), Headroom); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Send off-link without a gateway: %v, want ErrNoRoute", err)
	}
	big := make([]byte, Headroom+600)
	copy(big, ipPacket(lanIP))
	if err := u.Send(big, Headroom); !errors.Is(err, vswitch.ErrFrameTooBig) {
		t.Errorf("Send over the MTU: %v, want ErrFrameTooBig", err)
	}
}

func TestStartClose(t *testing.T) {
	u, dev, _ := newTestTAP(t)
	got := make(chan int, 1)
	u.Start(func(p []byte) { got <- len(p) }, func(error) { t.Error("gone called") })
	frame := make([]byte, Headroom+28)
	wire.PutEthernet(frame[vswitch.VnetHdrLen:], u.mac, lanMAC, wire.EtherTypeIPv4)
	copy(frame[Headroom:], ipPacket(u.Addr())[Headroom:])
	dev.in <- frame
	select {
	case n := <-got:
		if n != 28 {
			t.Errorf("got %d bytes", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}
