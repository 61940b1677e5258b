package wire

import (
	"testing"
)

// FuzzIPv4 checks that ParseIPv4 never reads out of bounds, that what it
// accepts is consistent (version 4, header within the total length, view
// cut to it), and that the fragments of an accepted datagram without
// options put its payload back together.
func FuzzIPv4(f *testing.F) {
	f.Add(udp4Packet(f), 100)
	f.Add([]byte{0x45, 0, 0, 20}, 28)
	f.Add([]byte{0x4f, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, 576)
	f.Fuzz(func(t *testing.T, b []byte, mtu int) {
		h, err := ParseIPv4(b)
		if err != nil {
			return
		}
		if h[0]>>4 != 4 || h.HeaderLen() < IPv4MinLen || h.HeaderLen() > len(h) || len(h) != h.TotalLen() || len(h) > len(b) {
			t.Fatalf("accepted an inconsistent header %x", b)
		}
		_, _, _, _ = h.Src(), h.Dst(), h.Payload(), h.IsFragment()
		mtu = IPv4MinLen + 8 + mtu%1500
		if mtu < 0 {
			mtu = -mtu
		}
		var fr Fragmenter
		if fr.Reset(h, mtu) != nil {
			return
		}
		dst := make([]byte, max(mtu, IPv4MinLen+8))
		var got []byte
		for n := fr.Next(dst); n > 0; n = fr.Next(dst) {
			p, err := ParseIPv4(dst[:n])
			if err != nil || n > mtu || !p.HeaderValid() {
				t.Fatalf("fragment %x: %v (mtu %d)", dst[:n], err, mtu)
			}
			got = append(got, p.Payload()...)
		}
		if string(got) != string(h.Payload()) {
			t.Fatalf("fragments lost bytes")
		}
	})
}

// FuzzIPv6 checks that ParseIPv6 and Upper never read out of bounds and
// that the upper-layer offset Upper returns lies within the packet.
func FuzzIPv6(f *testing.F) {
	f.Add(unhex(f, ipv6Ext))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseIPv6(b)
		if err != nil {
			return
		}
		if len(h) != IPv6Len+h.PayloadLen() {
			t.Fatalf("view of %d bytes, payload length %d", len(h), h.PayloadLen())
		}
		if u, err := h.Upper(); err == nil && (u.Offset < IPv6Len || u.Offset > len(h)) {
			t.Fatalf("upper-layer offset %d outside a packet of %d bytes", u.Offset, len(h))
		}
		// Fragments of at most 1280 bytes carry the packet whole.
		var f Fragmenter6
		if f.Reset(h, IPv6MinMTU, 7) != nil {
			return
		}
		dst := make([]byte, IPv6MinMTU)
		total := 0
		for n := f.Next(dst); n > 0; n = f.Next(dst) {
			p, err := ParseIPv6(dst[:n])
			if err != nil || n > IPv6MinMTU || len(p) != n {
				t.Fatalf("fragment of %d bytes: %v", n, err)
			}
			total += n - f.unfrag - IPv6FragmentLen
		}
		if total != len(h)-f.unfrag {
			t.Fatalf("fragments carry %d bytes of %d", total, len(h)-f.unfrag)
		}
	})
}

// FuzzL4 checks the Ethernet, ARP, TCP, UDP and ICMP parsers: no read out
// of bounds, and the lengths they promise hold.
func FuzzL4(f *testing.F) {
	f.Add([]byte{0x04, 0xd2, 0, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if tc, err := ParseTCP(b); err == nil {
			if tc.HeaderLen() < TCPMinLen || tc.HeaderLen() > len(tc) {
				t.Fatalf("TCP data offset %d in %d bytes", tc.HeaderLen(), len(tc))
			}
			_ = tc.Payload()
		}
		if u, err := ParseUDP(b); err == nil {
			_, _ = u.Payload(), u.Checksum()
		}
		if m, err := ParseICMP(b); err == nil {
			_, _ = m.Body(), m.Rest()
		}
		if a, err := ParseARP(b); err == nil {
			_, _ = a.SenderIP(), a.TargetMAC()
		}
		if typ, l3, ok := Ethernet(b).EtherType(); ok && (l3 > len(b) || (!IsVLAN(typ) && l3 < EthernetLen)) {
			t.Fatalf("EtherType %#x at %d in %d bytes", typ, l3, len(b))
		}
	})
}
