package vswitch

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// Hand-built frames for the stage tests, each a zero virtio_net_hdr then
// an Ethernet frame padded to 60 bytes. export_test.go shares them with
// the package's external tests.

// tag is one VLAN tag: its TPID and VLAN ID.
type tag struct{ tpid, vid uint16 }

// ethFrame builds hdr + dst, src, tags, EtherType, payload.
func ethFrame(dst, src fdb.MAC, tags []tag, etype uint16, payload []byte) []byte {
	f := make([]byte, VnetHdrLen, VnetHdrLen+64+len(payload))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	for _, t := range tags {
		f = binary.BigEndian.AppendUint16(f, t.tpid)
		f = binary.BigEndian.AppendUint16(f, t.vid)
	}
	f = binary.BigEndian.AppendUint16(f, etype)
	f = append(f, payload...)
	for len(f) < VnetHdrLen+60 {
		f = append(f, 0)
	}
	return f
}

// ipv4 builds an IPv4 header (no options, DF) with a valid checksum in
// front of l4.
func ipv4(src, dst [4]byte, proto uint8, l4 []byte) []byte {
	h := []byte{
		0x45, 0, 0, 0, // version, IHL, TOS, total length (below)
		0, 1, 0x40, 0, // identification, DF
		64, proto, 0, 0, // TTL, protocol, checksum (below)
	}
	h = append(h, src[:]...)
	h = append(h, dst[:]...)
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(h[10:], checksum.Checksum(h, 0))
	return append(h, l4...)
}

// l4 builds a TCP (20-byte header, SYN) or UDP header with n bytes of
// payload; checksums are left zero (no stage reads them).
func l4(proto uint8, sport, dport uint16, n int) []byte {
	var h []byte
	if proto == wire.ProtoTCP {
		h = make([]byte, 20)
		h[12], h[13] = 5<<4, 0x02
	} else {
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[4:], uint16(8+n))
	}
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	return append(h, make([]byte, n)...)
}

// arp builds an Ethernet/IPv4 ARP packet (RFC 826).
func arp(op uint16, sha fdb.MAC, spa [4]byte, tha fdb.MAC, tpa [4]byte) []byte {
	a := []byte{0, 1, 0x08, 0, 6, 4, 0, 0}
	binary.BigEndian.PutUint16(a[6:], op)
	a = append(a, sha[:]...)
	a = append(a, spa[:]...)
	a = append(a, tha[:]...)
	return append(a, tpa[:]...)
}

// tcp4 is a whole untagged TCP/IPv4 frame.
func tcp4(dst, src fdb.MAC, sip, dip [4]byte, sport, dport uint16) []byte {
	return ethFrame(dst, src, nil, wire.EtherTypeIPv4, ipv4(sip, dip, wire.ProtoTCP, l4(wire.ProtoTCP, sport, dport, 0)))
}
