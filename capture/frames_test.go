package capture

import (
	"encoding/binary"
	"net/netip"
)

// Test frames, built field by field.

var (
	macA  = []byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02}
	macB  = []byte{0x02, 0x42, 0x0a, 0x5a, 0x00, 0x03}
	bcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// eth returns an Ethernet header (dst, src, EtherType) followed by payload.
func eth(dst, src []byte, etherType uint16, payload []byte) []byte {
	b := append(append(append([]byte{}, dst...), src...), byte(etherType>>8), byte(etherType))
	return append(b, payload...)
}

// vlan returns an 802.1Q-tagged frame.
func vlan(id uint16, etherType uint16, payload []byte) []byte {
	tag := []byte{byte(id >> 8), byte(id), byte(etherType >> 8), byte(etherType)}
	return eth(macB, macA, etherVLAN, append(tag, payload...))
}

// ipv4 returns an IPv4 header of ihl 32-bit words (5 or more: options are
// zero) followed by payload. fragOff is the 13-bit fragment offset.
func ipv4(src, dst string, proto uint8, ihl int, fragOff uint16, payload []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(payload)))
	binary.BigEndian.PutUint16(h[6:], fragOff&0x1fff)
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

// ipv6 returns a fixed IPv6 header followed by payload.
func ipv6(src, dst string, next uint8, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, payload...)
}

// l4 returns the first 8 bytes of a TCP, UDP or SCTP header: the ports,
// then zeros.
func l4(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

// icmpEcho is an ICMP echo request header with 8 bytes of data.
var icmpEcho = []byte{8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}

// arp returns an Ethernet/IPv4 ARP packet (op 1 request, 2 reply).
func arp(op uint16, sha []byte, spa string, tpa string) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	b = append(b, sha...)
	s := netip.MustParseAddr(spa).As4()
	b = append(b, s[:]...)
	b = append(b, make([]byte, 6)...)
	t := netip.MustParseAddr(tpa).As4()
	return append(b, t[:]...)
}

// testFrames are named frames the filter tests use.
func testFrames() map[string][]byte {
	return map[string][]byte{
		"echo a>b":         eth(macB, macA, etherIPv4, ipv4("10.90.0.2", "10.90.0.3", protoICMP, 5, 0, icmpEcho)),
		"echo b>a":         eth(macA, macB, etherIPv4, ipv4("10.90.0.3", "10.90.0.2", protoICMP, 5, 0, icmpEcho)),
		"tcp a:40000>b:80": eth(macB, macA, etherIPv4, ipv4("10.90.0.2", "10.90.0.3", protoTCP, 5, 0, l4(40000, 80))),
		"tcp opts b:80>a":  eth(macA, macB, etherIPv4, ipv4("10.90.0.3", "10.90.0.2", protoTCP, 7, 0, l4(80, 40000))),
		"tcp fragment":     eth(macB, macA, etherIPv4, ipv4("10.90.0.2", "10.90.0.3", protoTCP, 5, 100, l4(40000, 80))),
		"udp 53":           eth(macB, macA, etherIPv4, ipv4("10.90.0.2", "198.51.100.1", protoUDP, 5, 0, l4(5353, 53))),
		"arp request":      eth(bcast, macA, etherARP, arp(1, macA, "10.90.0.2", "10.90.0.3")),
		"udp6 443":         eth(macB, macA, etherIPv6, ipv6("2001:db8::2", "2001:db8::3", protoUDP, l4(50000, 443))),
		"icmp6":            eth(bcast, macA, etherIPv6, ipv6("fe80::1", "ff02::1", protoICMP6, icmpEcho)),
		"vlan 5 ip":        vlan(5, etherIPv4, ipv4("10.90.0.2", "10.90.0.3", protoICMP, 5, 0, icmpEcho)),
		"truncated ip":     eth(macB, macA, etherIPv4, []byte{0x45, 0}),
		"runt":             {1, 2, 3},
	}
}
