package dns

import (
	"net/netip"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// headerLen and headerLen6 are what IPv4 or IPv6, and UDP, put in front of
// an answer.
const (
	headerLen  = wire.IPv4MinLen + wire.UDPLen
	headerLen6 = wire.IPv6Len + wire.UDPLen
)

// udpHeaderLen returns what the headers of a UDP answer to client take.
func udpHeaderLen(client netip.Addr) int {
	if client.Is4() {
		return headerLen
	}
	return headerLen6
}

// deliverUDP answers the UDP datagram h (an IPv4 datagram to the gateway's
// port 53, cut to its total length) as serveUDP does. Datagrams with a bad
// UDP length or checksum are dropped and counted. UDP needs no connection
// state, so it skips the netstack, which would cost two goroutine
// hand-offs a query.
func (s *Server) deliverUDP(ns *netStack, h wire.IPv4, answer []byte) int {
	u, err := wire.ParseUDP(h.Payload())
	if err != nil || u.Length() < wire.UDPLen || u.Length() > len(u) {
		s.stats.malformed.Add(1)
		return 0
	}
	u = u[:u.Length()]
	if u.Checksum() != 0 && checksum.Checksum(u, h.PseudoSum(len(u))) != 0 {
		s.stats.malformed.Add(1)
		return 0
	}
	return s.serveUDP(ns, netip.AddrFrom4(h.Dst()), netip.AddrFrom4(h.Src()), u.SrcPort(), u.Payload(), answer)
}

// deliverUDP6 is deliverUDP for an IPv6 packet h whose UDP header is at
// off. A zero UDP checksum is invalid over IPv6 (RFC 8200 8.1).
func (s *Server) deliverUDP6(ns *netStack, h wire.IPv6, off int, answer []byte) int {
	u, err := wire.ParseUDP(h[off:])
	if err != nil || u.Length() < wire.UDPLen || u.Length() > len(u) {
		s.stats.malformed.Add(1)
		return 0
	}
	u = u[:u.Length()]
	if checksum.Checksum(u, h.PseudoSum(wire.ProtoUDP, len(u))) != 0 {
		s.stats.malformed.Add(1)
		return 0
	}
	return s.serveUDP(ns, netip.AddrFrom16(h.Dst()), netip.AddrFrom16(h.Src()), u.SrcPort(), u.Payload(), answer)
}

// serveUDP answers the query a client at client:sport sent to local. An
// answer that needs no upstream is built at once: into answer, when it is
// not nil (at least the MTU long), and its length returned; otherwise in a
// buffer of the pool and sent. A query that needs an upstream is answered
// from a goroutine of its own, and serveUDP returns 0.
func (s *Server) serveUDP(ns *netStack, local, client netip.Addr, sport uint16, query, answer []byte) int {
	b := answer
	var bp *[]byte
	if b == nil {
		bp = ns.bufs.Get().(*[]byte)
		defer ns.bufs.Put(bp)
		b = *bp
	}
	out, fwd := s.answerFast(query, client, false, b[udpHeaderLen(client):])
	if fwd != nil {
		ok := ns.goForward(func() {
			if out := s.answerForwarded(fwd, client, false); out != nil {
				s.sendUDP(ns, local, client, sport, out)
			}
		})
		if !ok {
			s.inFlight.Add(-1) // closed: answerForwarded will not run
		}
		return 0
	}
	if out == nil {
		return 0
	}
	n := buildUDP(ns, b, local, client, sport, out)
	if bp == nil || n == 0 {
		return n
	}
	ns.link.send(b[:n])
	return 0
}

// sendUDP sends payload from local's port 53 to dst:dport, built in a
// buffer of the pool.
func (s *Server) sendUDP(ns *netStack, local, dst netip.Addr, dport uint16, payload []byte) {
	bp := ns.bufs.Get().(*[]byte)
	defer ns.bufs.Put(bp)
	if n := buildUDP(ns, *bp, local, dst, dport, payload); n > 0 {
		ns.link.send((*bp)[:n])
	}
}

// buildUDP builds in b the packet of payload from local's port 53 to
// dst:dport (payload may be in place in b already, behind room for the
// headers) and returns its length; 0 when it does not fit. finish keeps
// UDP answers within the MTU, so they are never fragmented.
func buildUDP(ns *netStack, b []byte, local, dst netip.Addr, dport uint16, payload []byte) int {
	hl := udpHeaderLen(dst)
	if hl+len(payload) > len(b) {
		return 0
	}
	copy(b[hl:], payload)
	n := wire.UDPLen + len(payload)
	u := b[hl-wire.UDPLen : hl+len(payload)]
	if dst.Is4() {
		src, d := local.As4(), dst.As4()
		hdr := wire.IPv4Header{
			TotalLen:  uint16(hl + len(payload)),
			ID:        uint16(ns.ipID.Add(1)),
			FlagsFrag: wire.IPv4FlagDF,
			TTL:       wire.DefaultTTL,
			Protocol:  wire.ProtoUDP,
			Src:       src,
			Dst:       d,
		}
		hdr.Put(b)
		wire.PutUDP(u, n, Port, dport, checksum.PseudoHeaderIPv4(src, d, wire.ProtoUDP, uint16(n)))
		return hl + len(payload)
	}
	src, d := local.As16(), dst.As16()
	hdr := wire.IPv6Header{PayloadLen: uint16(n), NextHeader: wire.ProtoUDP, HopLimit: wire.DefaultTTL, Src: src, Dst: d}
	hdr.Put(b)
	wire.PutUDP(u, n, Port, dport, checksum.PseudoHeaderIPv6(src, d, wire.ProtoUDP, uint32(n)))
	return hl + len(payload)
}
