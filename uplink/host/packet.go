package host

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// ipHdrLen is the length of the IPv4 headers the uplink builds (no
// options).
const ipHdrLen = 20

// ipID numbers the datagrams the uplink builds (RFC 6864: unique per
// source, destination and protocol while fragments may be in flight).
var ipID atomic.Uint32

// putIPv4 writes an IPv4 header without options at b[:20] for a datagram of
// total length n, with its checksum.
func putIPv4(b []byte, n int, proto uint8, src, dst [4]byte, id uint16, frag uint16) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], frag)
	b[8], b[9] = 64, proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum.Checksum(b[:ipHdrLen], 0))
}

// deliverUDP builds a UDP datagram from src to dst around the payload,
// which is at b[28:28+n], and hands it to the gateway, in fragments of at
// most the MTU when it is larger (RFC 791 3.2).
func (u *Uplink) deliverUDP(b []byte, n int, src [4]byte, sport uint16, dst [4]byte, dport uint16) {
	ul := 8 + n
	udp := b[ipHdrLen : ipHdrLen+ul]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(ul))
	udp[6], udp[7] = 0, 0
	cs := checksum.Checksum(udp, checksum.PseudoHeaderIPv4(src, dst, protoUDP, uint16(ul)))
	if cs == 0 {
		cs = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(udp[6:8], cs)
	id := uint16(ipID.Add(1))
	if ipHdrLen+ul <= u.cfg.MTU {
		putIPv4(b, ipHdrLen+ul, protoUDP, src, dst, id, 0)
		u.deliver(b[:ipHdrLen+ul])
		return
	}
	u.fragment(b[ipHdrLen:ipHdrLen+ul], protoUDP, src, dst, id)
}

// fragment hands payload (an L4 header and its data) to the gateway as
// IPv4 fragments of at most the MTU.
func (u *Uplink) fragment(payload []byte, proto uint8, src, dst [4]byte, id uint16) {
	chunk := (u.cfg.MTU - ipHdrLen) &^ 7
	fp := u.getBuf()
	defer u.putBuf(fp)
	f := *fp
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000 // MF
		}
		n := copy(f[ipHdrLen:], payload[off:end])
		putIPv4(f, ipHdrLen+n, proto, src, dst, id, fo)
		u.deliver(f[:ipHdrLen+n])
	}
}
