package gateway_test

import (
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// BenchmarkRouteEcho routes a container's echo request out through NAT and
// the uplink and its reply back to the container: what every routed
// packet costs the gateway, neighbour learning (out) and lookup (back)
// included.
func BenchmarkRouteEcho(b *testing.B) {
	tbl := newNAT(b)
	up := &fakeUplink{mtu: 1500, keep: true}
	g, _ := newGateway(b, func(c *gateway.Config) { c.NAT, c.Uplink = tbl, up })
	in := withVnetHdr(toElsewhere(b, lanIP, 16))
	if _, err := g.Write(in, vswitch.Headroom); err != nil {
		b.Fatal(err)
	}
	sent := up.Take()
	if len(sent) != 1 {
		b.Fatalf("uplink got %d datagrams", len(sent))
	}
	up.keep = false
	reply := withEth(append([]byte(nil), sent[0]...))
	r := reply[14:]
	copy(r[12:16], lanIP.AsSlice())
	copy(r[16:20], extIP.AsSlice())
	r[20] = 0 // echo reply
	id := binary.BigEndian.Uint16(sent[0][24:26])
	binary.BigEndian.PutUint16(r[24:26], id)
	fixChecksums(reply)
	pkt := make([]byte, len(r))
	out := make([]byte, vswitch.MaxFrame)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Write(in, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
		copy(pkt, r)
		g.FromUplink(pkt)
		if _, err := g.Read(out, 0); err != nil {
			b.Fatal(err)
		}
	}
	if s := g.Stats(); s.ToContainer < uint64(b.N) {
		b.Fatalf("delivered %d of %d", s.ToContainer, b.N)
	}
}
