package dns

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// headerLen is what IPv4 and UDP put in front of an answer.
const headerLen = wire.IPv4MinLen + wire.UDPLen

// deliverUDP answers the UDP datagram h (an IPv4 datagram to the gateway's
// port 53, cut to its total length): at once when the answer needs no
// upstream, from a goroutine of its own otherwise. Datagrams with a bad UDP
// length or checksum are dropped and counted. UDP needs no connection
// state, so it skips the netstack, which would cost two goroutine
// hand-offs a query.
func (s *Server) deliverUDP(ns *netStack, h wire.IPv4) {
	u, err := wire.ParseUDP(h.Payload())
	if err != nil || u.Length() < wire.UDPLen || u.Length() > len(u) {
		s.stats.malformed.Add(1)
		return
	}
	u = u[:u.Length()]
	if u.Checksum() != 0 && checksum.Checksum(u, h.PseudoSum(len(u))) != 0 {
		s.stats.malformed.Add(1)
		return
	}
	src, sport := h.Src(), u.SrcPort()
	out, fwd := s.answerFast(u.Payload(), netip.AddrFrom4(src), false)
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
	hdr := wire.IPv4Header{
		TotalLen:  uint16(len(b)),
		ID:        uint16(ns.ipID.Add(1)),
		FlagsFrag: wire.IPv4FlagDF,
		TTL:       wire.DefaultTTL,
		Protocol:  wire.ProtoUDP,
		Src:       ns.addr,
		Dst:       dst,
	}
	hdr.Put(b)
	copy(b[headerLen:], payload)
	n := wire.UDPLen + len(payload)
	wire.PutUDP(b[wire.IPv4MinLen:], n, Port, dport, checksum.PseudoHeaderIPv4(ns.addr, dst, wire.ProtoUDP, uint16(n)))
	ns.link.send(b)
}
