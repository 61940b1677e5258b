package nat

import (
	"encoding/binary"
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// IPv6 addresses of the tests (documentation prefix 2001:db8::/32 and a
// unique local /64 for the containers).
const (
	extIP6   = "2001:db8:ffff::2"
	subnet6  = "fd42:1::/64"
	c16      = "fd42:1::2"
	c26      = "fd42:1::3"
	remote6  = "2001:db8:1::7"
	remote26 = "2001:db8:1::8"
	router6  = "2001:db8:ffff::1"
)

// ap joins an address and a port: "[v6]:port" or "a.b.c.d:port".
func ap(addr string, port uint16) string {
	return Endpoint{Addr: ep(addr).Addr, Port: port}.String()
}

// build6 returns the IPv6 packet of s with its L4 part l4, checksums
// computed in full.
func build6(s spec, src, dst Endpoint, l4 []byte) []byte {
	pkt := make([]byte, 40+len(l4))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(l4)))
	pkt[6], pkt[7] = byte(s.proto), 64
	a, b := src.Addr.As16(), dst.Addr.As16()
	copy(pkt[8:24], a[:])
	copy(pkt[24:40], b[:])
	copy(pkt[40:], l4)
	fixChecksums6(pkt, s.noCsum)
	return pkt
}

// l4Sum6 returns the L4 part of an IPv6 packet (no extension headers), its
// protocol and its pseudo-header sum, or ok false.
func l4Sum6(pkt []byte) (l4 []byte, proto Proto, ph uint32, ok bool) {
	if len(pkt) < 40 {
		return nil, 0, 0, false
	}
	total := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
	if total > len(pkt) {
		return nil, 0, 0, false
	}
	l4, proto = pkt[40:total], Proto(pkt[6])
	return l4, proto, checksum.PseudoHeaderIPv6([16]byte(pkt[8:24]), [16]byte(pkt[24:40]), byte(proto), uint32(len(l4))), true
}

// csumOffset6 is the offset of the checksum of an L4 header of proto.
func csumOffset6(proto Proto) (int, int) {
	switch proto {
	case TCP:
		return 16, 20
	case UDP:
		return 6, 8
	case ICMPv6:
		return 2, 8
	}
	return -1, 0
}

// fixChecksums6 is fixChecksums for IPv6 (no extension headers); for an
// ICMPv6 error also the quoted packet's L4 checksum when it is whole.
func fixChecksums6(pkt []byte, keepZeroUDP bool) {
	l4, proto, ph, ok := l4Sum6(pkt)
	off, hl := csumOffset6(proto)
	if !ok || off < 0 || len(l4) < hl || (proto == UDP && keepZeroUDP && get16(l4[6:]) == 0) {
		return
	}
	if proto == ICMPv6 && l4[0] < 128 {
		fixChecksums6(l4[8:], false)
	}
	put16(l4[off:], 0)
	c := checksum.Checksum(l4, ph)
	if c == 0 && proto == UDP {
		c = 0xffff
	}
	put16(l4[off:], c)
}

// checkChecksums6 is checkChecksums for IPv6: the L4 checksum by a full
// recompute and gopacket's, the quoted packet's of an ICMPv6 error when it
// is whole.
func checkChecksums6(pkt []byte) error {
	l4, proto, ph, ok := l4Sum6(pkt)
	if !ok {
		return fmt.Errorf("not an IPv6 packet")
	}
	off, hl := csumOffset6(proto)
	if off < 0 || len(l4) < hl {
		return fmt.Errorf("short or unknown L4 header")
	}
	if checksum.Checksum(l4, ph) != 0 {
		return fmt.Errorf("%v checksum %#04x is wrong", proto, get16(l4[off:]))
	}
	if proto == ICMPv6 && l4[0] < 128 && len(l4) >= 48 {
		in := l4[8:]
		if _, _, _, whole := l4Sum6(in); whole && 40+int(binary.BigEndian.Uint16(in[4:])) == len(in) {
			if err := checkChecksums6(in); err != nil {
				return fmt.Errorf("embedded: %w", err)
			}
		}
	}
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
	if _, bad := p.VerifyChecksums(); len(bad) > 0 {
		return fmt.Errorf("gopacket: %v checksum %#x, want %#x", bad[0].Layer.LayerType(), bad[0].Actual, bad[0].Correct)
	}
	return nil
}
