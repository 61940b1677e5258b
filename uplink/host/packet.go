package host

import (
	"sync/atomic"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// ipHdrLen is the length of the IPv4 headers the uplink builds (no
// options).
const ipHdrLen = wire.IPv4MinLen

// ipID numbers the datagrams the uplink builds (RFC 6864: unique per
// source, destination and protocol while fragments may be in flight).
var ipID atomic.Uint32

// putIPv4 writes an IPv4 header without options at b[:20] for a datagram of
// total length n (flags and fragment offset frag), with its checksum.
func putIPv4(b []byte, n int, proto uint8, src, dst [4]byte, id, frag uint16) {
	h := wire.IPv4Header{TotalLen: uint16(n), ID: id, FlagsFrag: frag, TTL: wire.DefaultTTL, Protocol: proto, Src: src, Dst: dst}
	h.Put(b)
}

// deliverUDP builds a UDP datagram from src to dst around the payload,
// which is at b[28:28+n], and hands it to the gateway, in fragments of at
// most the MTU when it is larger (RFC 791 3.2).
func (u *Uplink) deliverUDP(b []byte, n int, src [4]byte, sport uint16, dst [4]byte, dport uint16) {
	ul := wire.UDPLen + n
	wire.PutUDP(b[ipHdrLen:], ul, sport, dport, checksum.PseudoHeaderIPv4(src, dst, wire.ProtoUDP, uint16(ul)))
	u.deliverIPv4(b, ul, wire.ProtoUDP, src, dst)
}

// deliverIPv4 puts an IPv4 header from src to dst in front of the l4 bytes
// of proto at b[20:20+l4] and hands the datagram to the gateway, in
// fragments of at most the MTU when it is larger (RFC 791 3.2).
func (u *Uplink) deliverIPv4(b []byte, l4 int, proto uint8, src, dst [4]byte) {
	n := ipHdrLen + l4
	putIPv4(b, n, proto, src, dst, uint16(ipID.Add(1)), 0)
	if n <= u.cfg.MTU {
		u.deliver(b[:n])
		return
	}
	var f wire.Fragmenter
	if f.Reset(wire.IPv4(b[:n]), u.cfg.MTU) != nil {
		u.stats.otherDropped.Add(1)
		return
	}
	u.deliverFragments(f.Next)
}

// deliverFragments hands the gateway every fragment next (a fragmenter's
// Next) cuts.
func (u *Uplink) deliverFragments(next func(dst []byte) int) {
	fp := u.getBuf()
	defer u.putBuf(fp)
	for m := next(*fp); m > 0; m = next(*fp) {
		u.deliver((*fp)[:m])
	}
}
