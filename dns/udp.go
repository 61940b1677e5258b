package dns

import (
	"encoding/binary"
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// IPv4 and UDP as the server reads and writes them (RFC 791, RFC 768).
const (
	protoUDP  = 17
	ipv4Len   = 20
	udpLen    = 8
	ttl       = 64
	ipv4DF    = 0x4000
	headerLen = ipv4Len + udpLen
)

// deliverUDP answers the UDP datagram d (an IPv4 datagram to the gateway's
// port 53 that the gateway has validated, cut to its total length): at
// once when the answer needs no upstream, from a goroutine of its own
// otherwise. Datagrams with a bad UDP length or checksum are dropped and
// counted. UDP needs no connection state, so it skips the netstack, which
// would cost two goroutine hand-offs a query.
func (s *Server) deliverUDP(ns *netStack, d []byte) {
	ihl := int(d[0]&0x0f) * 4
	if ihl < ipv4Len || len(d) < ihl+udpLen {
		s.stats.malformed.Add(1)
		return
	}
	u := d[ihl:]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	src := [4]byte(d[12:16])
	if ulen < udpLen || ulen > len(u) ||
		(binary.BigEndian.Uint16(u[6:8]) != 0 &&
			checksum.Checksum(u[:ulen], checksum.PseudoHeaderIPv4(src, [4]byte(d[16:20]), protoUDP, uint16(ulen))) != 0) {
		s.stats.malformed.Add(1)
		return
	}
	sport := binary.BigEndian.Uint16(u[0:2])
	out, fwd := s.answerFast(u[udpLen:ulen], netip.AddrFrom4(src), false)
	if fwd != nil {
		ok := ns.goForward(func() {
			if out := s.answerForwarded(fwd, false); out != nil {
				s.sendUDP(ns, src, sport, out)
			}
		})
		if !ok {
			s.inFlight.Add(-1) // closed: answerForwarded will not run
		}
		return
	}
	if out != nil {
		s.sendUDP(ns, src, sport, out)
	}
}

// sendUDP sends payload from the gateway's port 53 to dst:dport. finish
// keeps UDP answers within the MTU, so they are never fragmented.
func (s *Server) sendUDP(ns *netStack, dst [4]byte, dport uint16, payload []byte) {
	b := make([]byte, headerLen+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:6], uint16(ns.ipID.Add(1)))
	binary.BigEndian.PutUint16(b[6:8], ipv4DF)
	b[8] = ttl
	b[9] = protoUDP
	copy(b[12:16], ns.addr[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum.Checksum(b[:ipv4Len], 0))
	u := b[ipv4Len:]
	binary.BigEndian.PutUint16(u[0:2], Port)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[udpLen:], payload)
	c := checksum.Checksum(u, checksum.PseudoHeaderIPv4(ns.addr, dst, protoUDP, uint16(len(u))))
	if c == 0 {
		c = 0xffff // RFC 768: zero means none
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	ns.link.send(b)
}
