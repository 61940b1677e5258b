package host

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tapswitch/tapswitch/wire"
)

// rig is an uplink under test with a "container" in front of it: a second
// netstack whose address is the uplink's, so that its packets look like
// NAT's translated ones (source: the uplink's address) and the uplink's
// replies reach it directly, and whose IPv6 address is peer6 (IPv6 is not
// translated). No NAT and no gateway are in between.
type rig struct {
	u      *Uplink
	peer   *stack.Stack
	ep     *channel.Endpoint
	in     chan []byte
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// gsoSeen counts super-segments larger than the MTU (newRigGSO).
	gsoSeen *atomic.Int64
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	return newRigGSO(t, cfg, false)
}

// newRigGSO is newRig with, when gso is set, the uplink's super-segments
// (SetGSOHandler) handed to the peer whole; the peer then trusts
// checksums (RX checksum offload), as the container's kernel does for a
// NEEDS_CSUM frame from its TAP.
func newRigGSO(t *testing.T, cfg Config, gso bool) *rig {
	t.Helper()
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{u: u, in: make(chan []byte, 4096)}
	r.peer = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocolWithOptions(ipv6.Options{})},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	r.ep = channel.New(4096, uint32(u.MTU()), "")
	if gso {
		r.ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
		r.gsoSeen = new(atomic.Int64)
		u.SetGSOHandler(func(parts [][]byte, mss int) {
			var pkt []byte
			for _, p := range parts {
				pkt = append(pkt, p...)
			}
			if len(pkt) > u.MTU() {
				r.gsoSeen.Add(1)
			}
			r.in <- pkt
		})
	}
	if err := r.peer.CreateNIC(1, r.ep); err != nil {
		t.Fatal(err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(u.Addr().As4()).WithPrefix()}
	if err := r.peer.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	pa6 := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom16(peer6.As16()).WithPrefix()}
	if err := r.peer.AddProtocolAddress(1, pa6, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	r.peer.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}, {Destination: header.IPv6EmptySubnet, NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	u.Start(func(pkt []byte) {
		select {
		case r.in <- append([]byte(nil), pkt...):
		default:
		}
	}, nil)
	r.wg.Add(2)
	go func() { // peer -> uplink
		defer r.wg.Done()
		for {
			pkt := r.ep.ReadContext(ctx)
			if pkt == nil {
				return
			}
			var b []byte
			for _, s := range pkt.AsSlices() {
				b = append(b, s...)
			}
			pkt.DecRef()
			if wire.IPVersion(b) == 6 {
				r.u.Send6(b, 0)
			} else {
				r.u.Send(b, 0)
			}
		}
	}()
	go func() { // uplink -> peer
		defer r.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-r.in:
				pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
				proto := ipv4.ProtocolNumber
				if wire.IPVersion(b) == 6 {
					proto = ipv6.ProtocolNumber
				}
				r.ep.InjectInbound(proto, pb)
				pb.DecRef()
			}
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	r.u.Close()
	r.cancel()
	r.wg.Wait()
	r.peer.Close()
	r.peer.Wait()
}

// full returns the peer-side address of a host address: the uplink's
// Loopback for 127.0.0.1.
func (r *rig) full(ap netip.AddrPort) tcpip.FullAddress {
	a := ap.Addr()
	if a.IsLoopback() {
		a = r.u.Config().Loopback
	}
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(a.As4()), Port: ap.Port()}
}

// peer6 is the rig's peer's IPv6 address, a container's.
var peer6 = netip.MustParseAddr("fd42:1::2")

// full6 is full for IPv6: the uplink's Loopback6 for ::1.
func (r *rig) full6(ap netip.AddrPort) tcpip.FullAddress {
	a := ap.Addr()
	if a.IsLoopback() {
		a = r.u.Config().Loopback6
	}
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom16(a.As16()), Port: ap.Port()}
}

// watch replaces the container's side of the uplink's output with a
// channel of copies of the packets it hands over (four are kept; later ones
// are dropped while those are unread), for tests that read them whole
// rather than through the peer stack.
func (r *rig) watch() <-chan []byte {
	got := make(chan []byte, 4)
	r.u.handle.Store(ptr(func(p []byte) {
		select {
		case got <- append([]byte(nil), p...):
		default:
		}
	}))
	return got
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
