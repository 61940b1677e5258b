package gateway_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// FuzzWrite feeds arbitrary frames (virtio_net_hdr included) to Write. It
// must never panic, every reply it queues must be counted, decode with
// gopacket with valid IPv4, ICMP and TCP checksums, come from the gateway
// and fit in the MTU; ICMP errors must fit in 576 bytes.
func FuzzWrite(f *testing.F) {
	seeds := [][]byte{
		arpRequest(f),
		echoRequest(f),
		udpToGateway(f),
		tcpSYN(f),
		toElsewhere(f, netip.MustParseAddr("192.0.2.7"), 8),
		toElsewhere(f, netip.MustParseAddr("192.0.2.7"), 1000),
		toElsewhere(f, netip.MustParseAddr("10.90.255.255"), 8),
	}
	for _, s := range seeds {
		f.Add(append(make([]byte, vswitch.VnetHdrLen), s...))
	}
	f.Add([]byte{})
	f.Add(make([]byte, vswitch.VnetHdrLen))

	f.Fuzz(func(t *testing.T, in []byte) {
		g, _ := newGateway(t, func(c *gateway.Config) { c.QueueLen = 8 })
		orig := append([]byte(nil), in...)
		_, err := g.Write(in, 0)
		if err != nil && !errors.Is(err, vswitch.ErrFrameTooBig) {
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(in, orig) {
			t.Fatalf("Write modified its input")
		}
		st := g.Stats()
		replies := st.ARPReplies + st.EchoReplies + st.ICMPErrors + st.TCPResets
		if replies > 1 || uint64(g.Queued()) != replies {
			t.Fatalf("%d replies queued, counters say %d (stats %+v)", g.Queued(), replies, st)
		}
		for range replies {
			reply := read(t, g)
			if err := checkPacket(reply); err != nil {
				t.Fatalf("reply %x: %v", reply, err)
			}
			if len(reply) > 14+g.MTU() {
				t.Fatalf("reply of %d bytes is over the MTU", len(reply))
			}
			p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
			eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if eth.SrcMAC.String() != gwMAC.String() {
				t.Fatalf("reply from %s, want %s", eth.SrcMAC, gwMAC)
			}
			if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				if ip.SrcIP.String() != gwIP.String() || ip.TTL != 64 {
					t.Fatalf("reply from %s TTL %d, want %s TTL 64", ip.SrcIP, ip.TTL, gwIP)
				}
				icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if ok && icmp.TypeCode.Type() == layers.ICMPv4TypeDestinationUnreachable && ip.Length > 576 {
					t.Fatalf("ICMP error of %d bytes", ip.Length)
				}
			}
		}
	})
}
