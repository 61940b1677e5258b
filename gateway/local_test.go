package gateway_test

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/internal/testutil"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// fakeLocal is a LocalService that claims one UDP port and keeps copies
// of what it is given.
type fakeLocal struct {
	port            uint16
	keep            bool
	testutil.Frames // what it was given, when keep
}

func (f *fakeLocal) Claims(proto uint8, port uint16) bool { return proto == 17 && port == f.port }

func (f *fakeLocal) Deliver(d, _ []byte) int {
	if !f.keep {
		return 0
	}
	f.Add(d)
	return 0
}

func TestLocalService(t *testing.T) {
	loc := &fakeLocal{port: 9999, keep: true}
	g, _ := newGateway(t, func(c *gateway.Config) { c.Local = loc })

	// UDP to a claimed port: handed over, no port unreachable.
	in := udpToGateway(t)
	write(t, g, in)
	expectNoReply(t, g)
	if got := loc.Take(); len(got) != 1 || !bytes.Equal(got[0], in[14:]) {
		t.Fatalf("delivered %x, want the datagram %x", got, in[14:])
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

// udp6ToGateway builds a UDP/IPv6 frame from container A (aMAC, aIP6) to
// port 9999 of the gateway's global address, with a valid checksum.
func udp6ToGateway(t testing.TB) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64, SrcIP: aIP6.AsSlice(), DstIP: gwNet6.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: aMAC, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv6}, ip, udp, gopacket.Payload("hello"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLocalService6: with IPv6, a claimed port of the gateway's global
// address reaches the service, and its answers reach the container at the
// MAC its query came from (the IPv6 neighbour cache learnt it); an answer
// to an address never heard from waits for a neighbor solicitation.
func TestLocalService6(t *testing.T) {
	loc := &fakeLocal{port: 9999, keep: true}
	g := newGateway6(t, func(c *gateway.Config) { c.Local = loc })
	drainStart(t, g)
	in := udp6ToGateway(t)
	write(t, g, in)
	expectNoReply(t, g) // no port unreachable
	if got := loc.Take(); len(got) != 1 || !bytes.Equal(got[0], in[14:]) {
		t.Fatalf("delivered %x, want the packet %x", got, in[14:])
	}

	out := append([]byte(nil), in[14:]...)
	copy(out[8:24], in[14+24:14+40]) // source: the gateway
	copy(out[24:40], in[14+8:14+24]) // destination: the container
	g.SendLocal(out)
	f := read(t, g)
	if !bytes.Equal(f[0:6], aMAC) || !bytes.Equal(f[6:12], gwMAC) || f[12] != 0x86 || f[13] != 0xdd || !bytes.Equal(f[14:], out) {
		t.Errorf("SendLocal: frame %x, want %x from %s to %s", f, out, gwMAC, aMAC)
	}

	stranger := append([]byte(nil), out...)
	stranger[39] = 0x77 // fd42:1::77, which never asked
	g.SendLocal(stranger)
	ns := read(t, g) // the answer waits for the neighbour, asked for with a solicitation
	if want := []byte{0x33, 0x33, 0xff, 0, 0, 0x77}; !bytes.Equal(ns[0:6], want) || len(ns) < 14+40+1 || ns[14+40] != 135 {
		t.Errorf("answer to an address never heard from: frame %x, want a neighbor solicitation to %x", ns, want)
	}
	if st := g.Stats(); st.LocalIn != 1 || st.LocalOut != 2 {
		t.Errorf("LocalIn %d, LocalOut %d; want 1, 2", st.LocalIn, st.LocalOut)
	}

	// Without the service the same packet gets port unreachable.
	g2 := newGateway6(t, nil)
	drainStart(t, g2)
	write(t, g2, in)
	if _, _, _, ic := reply6(t, g2); ic.TypeCode.Type() != layers.ICMPv6TypeDestinationUnreachable {
		t.Errorf("UDP to the gateway without a service: %v, want destination unreachable", ic.TypeCode)
	}
}

// echoLocal is a LocalService that answers every datagram at once, when
// given room, with the datagram sent back from the gateway (addresses
// swapped; the UDP checksum does not change).
type echoLocal struct{ fakeLocal }

func (e *echoLocal) Deliver(d, ans []byte) int {
	if ans == nil || len(ans) < len(d) {
		return 0
	}
	n := copy(ans, d)
	copy(ans[12:16], d[16:20])
	copy(ans[16:20], d[12:16])
	return n
}

// TestLocalServiceAnswer: through WriteAnswer (vswitch.Answerer) the
// service's answer at once comes back in the caller's buffer, to the MAC
// the query came from, and nothing is queued or allocated.
func TestLocalServiceAnswer(t *testing.T) {
	g, _ := newGateway(t, func(c *gateway.Config) { c.Local = &echoLocal{fakeLocal{port: 9999}} })
	in := udpToGateway(t)
	buf := withVnetHdr(in)
	ans := make([]byte, vswitch.Headroom+vswitch.MaxFrame)
	_, n, err := g.WriteAnswer(buf, vswitch.Headroom, ans, vswitch.Headroom)
	if err != nil || n == 0 {
		t.Fatalf("WriteAnswer: answer of %d bytes, %v; want one", n, err)
	}
	f := ans[vswitch.Headroom : vswitch.Headroom+n]
	if hdr := f[:vswitch.VnetHdrLen]; !bytes.Equal(hdr, make([]byte, vswitch.VnetHdrLen)) {
		t.Errorf("virtio_net_hdr %x, want zeros", hdr)
	}
	eth := f[vswitch.VnetHdrLen:]
	if !bytes.Equal(eth[0:6], aMAC) || !bytes.Equal(eth[6:12], gwMAC) || len(eth) != len(in) || !bytes.Equal(eth[14+12:14+16], in[14+16:14+20]) {
		t.Errorf("answer frame %x: want the datagram back to %s from %s", eth, aMAC, gwMAC)
	}
	decode(t, eth) // checksums
	expectNoReply(t, g)
	if st := g.Stats(); st.LocalIn != 1 || st.LocalOut != 1 {
		t.Errorf("LocalIn %d, LocalOut %d; want 1, 1", st.LocalIn, st.LocalOut)
	}
	if a := testing.AllocsPerRun(1000, func() { g.WriteAnswer(buf, vswitch.Headroom, ans, vswitch.Headroom) }); a != 0 {
		t.Errorf("an answered datagram: %v allocations, want 0", a)
	}
	// Through Write the same service answers later (SendLocal), not at
	// once: nothing queued by the gateway here.
	write(t, g, in)
	expectNoReply(t, g)
}
