package gateway_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// fakeLocal is a LocalService that claims one UDP port and keeps copies
// of what it is given.
type fakeLocal struct {
	port uint16
	keep bool

	mu  sync.Mutex // guards got
	got [][]byte
}

func (f *fakeLocal) Claims(proto uint8, port uint16) bool { return proto == 17 && port == f.port }

func (f *fakeLocal) Deliver(d []byte) {
	if !f.keep {
		return
	}
	f.mu.Lock()
	f.got = append(f.got, append([]byte(nil), d...))
	f.mu.Unlock()
}

func TestLocalService(t *testing.T) {
	loc := &fakeLocal{port: 9999, keep: true}
	g, _ := newGateway(t, func(c *gateway.Config) { c.Local = loc })

	// UDP to a claimed port: handed over, no port unreachable.
	in := udpToGateway(t)
	write(t, g, in)
	expectNoReply(t, g)
	if len(loc.got) != 1 || !bytes.Equal(loc.got[0], in[14:]) {
		t.Fatalf("delivered %x, want the datagram %x", loc.got, in[14:])
	}
	// TCP to a port it does not claim: the usual reset.
	write(t, g, tcpSYN(t))
	if reply := decode(t, read(t, g)); reply.TransportLayer() == nil {
		t.Errorf("SYN to an unclaimed port: reply %v, want a TCP reset", reply)
	}

	// The service's answer reaches the container, whose MAC the gateway
	// learned from the query.
	out := append([]byte(nil), in[14:]...)
	copy(out[12:16], in[30:34]) // source: the gateway
	copy(out[16:20], in[26:30]) // destination: the container
	g.SendLocal(out)
	f := read(t, g)
	if !bytes.Equal(f[0:6], aMAC) || !bytes.Equal(f[6:12], gwMAC) || !bytes.Equal(f[14:], out) {
		t.Errorf("SendLocal: frame %x, want %x from %s to %s", f, out, gwMAC, aMAC)
	}
	// Not from the gateway's address, or not a datagram: dropped.
	before := g.Stats().Malformed
	g.SendLocal(in[14:])
	g.SendLocal([]byte{0x45})
	expectNoReply(t, g)
	if got := g.Stats().Malformed - before; got != 2 {
		t.Errorf("SendLocal of bad datagrams: Malformed +%d, want +2", got)
	}
	if st := g.Stats(); st.LocalIn != 1 || st.LocalOut != 1 {
		t.Errorf("LocalIn %d, LocalOut %d; want 1, 1", st.LocalIn, st.LocalOut)
	}
}

// TestLocalServiceAllocs pins the hook's cost on the frame path: none.
func TestLocalServiceAllocs(t *testing.T) {
	g, _ := newGateway(t, func(c *gateway.Config) { c.Local = &fakeLocal{port: 9999} })
	buf := withVnetHdr(udpToGateway(t))
	if n := testing.AllocsPerRun(1000, func() { g.Write(buf, vswitch.Headroom) }); n != 0 {
		t.Errorf("a datagram to the local service: %v allocations, want 0", n)
	}
}
