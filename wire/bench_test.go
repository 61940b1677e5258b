package wire

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The benchmarks behind the package's choice (see doc.go): the same work
// done with this package's views and with gVisor's pkg/tcpip/header.

var sink uint32

func tcp4Frame() []byte {
	f := make([]byte, EthernetLen+IPv4MinLen+TCPMinLen+64)
	binary.BigEndian.PutUint16(f[12:], EtherTypeIPv4)
	(&IPv4Header{TotalLen: uint16(len(f) - EthernetLen), TTL: 64, Protocol: ProtoTCP, Src: [4]byte{10, 0, 0, 2}, Dst: [4]byte{10, 0, 0, 1}}).Put(f[EthernetLen:])
	t := f[EthernetLen+IPv4MinLen:]
	binary.BigEndian.PutUint16(t[0:], 1234)
	binary.BigEndian.PutUint16(t[2:], 80)
	t[12] = 5 << 4
	return f
}

// BenchmarkParseIPv4TCP validates an Ethernet/IPv4/TCP frame and reads
// what the switch and NAT read: addresses, protocol, fragment, ports.
func BenchmarkParseIPv4TCP(b *testing.B) {
	f := tcp4Frame()
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			typ, l3, _ := Ethernet(f).EtherType()
			h, err := ParseIPv4(f[l3:])
			if err != nil || typ != EtherTypeIPv4 || h.FragOff() != 0 {
				b.Fatal(err)
			}
			t, err := ParseTCP(h.Payload())
			if err != nil {
				b.Fatal(err)
			}
			s, d := h.Src(), h.Dst()
			sink += uint32(s[3]) + uint32(d[3]) + uint32(h.Protocol()) + uint32(t.SrcPort()) + uint32(t.DstPort())
		}
	})
	b.Run("gvisor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := header.Ethernet(f)
			if e.Type() != header.IPv4ProtocolNumber {
				b.Fatal("type")
			}
			h := header.IPv4(f[header.EthernetMinimumSize:])
			if !h.IsValid(len(h)) || h.FragmentOffset() != 0 {
				b.Fatal("invalid")
			}
			t := header.TCP(h.Payload())
			if len(t) < header.TCPMinimumSize || int(t.DataOffset()) < header.TCPMinimumSize || int(t.DataOffset()) > len(t) {
				b.Fatal("tcp")
			}
			s, d := h.SourceAddress().As4(), h.DestinationAddress().As4()
			sink += uint32(s[3]) + uint32(d[3]) + uint32(h.Protocol()) + uint32(t.SourcePort()) + uint32(t.DestinationPort())
		}
	})
}

// BenchmarkIPv6Upper walks an IPv6 packet's Hop-by-Hop, Destination
// Options and Fragment headers to its UDP header.
func BenchmarkIPv6Upper(b *testing.B) {
	p := unhex(b, ipv6Ext)
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h, err := ParseIPv6(p)
			if err != nil {
				b.Fatal(err)
			}
			u, err := h.Upper()
			if err != nil || u.Proto != ProtoUDP {
				b.Fatal(err)
			}
			sink += uint32(u.Offset)
		}
	})
	b.Run("gvisor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := header.IPv6(p)
			if !h.IsValid(len(p)) {
				b.Fatal("invalid")
			}
			it := header.MakeIPv6PayloadIterator(header.IPv6ExtensionHeaderIdentifier(h.NextHeader()), buffer.MakeWithData(h.Payload()))
			for {
				ext, done, err := it.Next()
				if err != nil || done {
					b.Fatal(err)
				}
				raw, ok := ext.(header.IPv6RawPayloadHeader)
				ext.Release()
				if ok {
					sink += uint32(raw.Identifier) + it.ParseOffset()
					break
				}
			}
			it.Release()
		}
	})
}
