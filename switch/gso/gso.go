package gso

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

// layout holds the offsets of an IP packet's headers inside a frame, counted
// from the start of the frame (its virtio_net_hdr included).
type layout struct {
	l3, l4 int // IP header, transport header
	pay    int // transport payload
	end    int // end of the IP packet (a frame may be longer: padding)
	v6     bool
	proto  uint8
}

// parseIP finds the IP and transport headers of frame (virtio_net_hdr, then
// Ethernet with up to two VLAN tags, IPv4 or IPv6 without extension headers,
// TCP or UDP) and checks every length against the frame's.
func parseIP(frame []byte) (layout, error) {
	var l layout
	if len(frame) < HdrLen {
		return l, ErrMalformed
	}
	typ, l3, ok := wire.Ethernet(frame[HdrLen:]).EtherType()
	if !ok || (wire.IsVLAN(typ) && l3 < wire.EthernetLen+wire.MaxVLANTags*wire.VLANTagLen) {
		return l, ErrMalformed // too short, or a tag cut short
	}
	l.l3 = HdrLen + l3
	switch typ {
	case wire.EtherTypeIPv4:
		ip, err := wire.ParseIPv4(frame[l.l3:])
		if err != nil {
			return l, ErrMalformed
		}
		if ip.IsFragment() {
			// A fragment (MF set or an offset) has no transport
			// header of its own to segment or checksum.
			return l, ErrMalformed
		}
		l.l4, l.end, l.proto = l.l3+ip.HeaderLen(), l.l3+len(ip), ip.Protocol()
	case wire.EtherTypeIPv6:
		ip, err := wire.ParseIPv6(frame[l.l3:])
		if err != nil {
			return l, ErrMalformed
		}
		l.l4, l.end, l.proto, l.v6 = l.l3+wire.IPv6Len, l.l3+len(ip), ip.NextHeader(), true
	default:
		return l, ErrUnsupported
	}
	switch l.proto {
	case wire.ProtoTCP:
		t, err := wire.ParseTCP(frame[l.l4:l.end])
		if err != nil {
			return l, ErrMalformed
		}
		l.pay = l.l4 + t.HeaderLen()
	case wire.ProtoUDP:
		if _, err := wire.ParseUDP(frame[l.l4:l.end]); err != nil {
			return l, ErrMalformed
		}
		l.pay = l.l4 + wire.UDPLen
	default:
		// Includes IPv6 extension headers, which the kernel does not
		// put in front of a GSO frame's transport header either.
		return l, ErrUnsupported
	}
	return l, nil
}

// Segmenter cuts one GSO frame into ordinary frames, one per call to Next,
// the way the kernel's tcp_gso_segment (TCP) and __udp_gso_segment (UDP_L4)
// do:
//
//   - every segment carries Hdr.GSOSize bytes of payload but the last, which
//     carries the rest; all headers are copied from the frame;
//   - IPv4 total length and IPv6 payload length are those of the segment, the
//     IPv4 identification grows by one per segment, the IPv4 header checksum
//     is recomputed;
//   - a TCP segment's sequence number is the frame's plus the payload bytes
//     before it; FIN and PSH are kept only on the last segment, CWR only on
//     the first;
//   - the UDP length is the segment's;
//   - the transport checksum of every segment is complete, and its
//     virtio_net_hdr is zero (GSO_NONE, no flags).
//
// The zero value is ready for Reset. A Segmenter keeps a reference to the
// frame given to Reset until the next Reset; it does not modify the frame.
// It is not safe for concurrent use.
type Segmenter struct {
	frame []byte
	l     layout
	mss   int
	next  int // offset in frame of the next segment's payload
	i     int // index of the next segment
	seq   uint32
	id    uint16
}

// Reset prepares s to segment frame (virtio_net_hdr first). It returns
// ErrMalformed or ErrUnsupported if the frame cannot be segmented, and then
// Next returns 0.
func (s *Segmenter) Reset(frame []byte) error {
	*s = Segmenter{}
	if len(frame) < HdrLen {
		return ErrMalformed
	}
	h := ParseHdr(frame)
	l, err := parseIP(frame)
	if err != nil {
		return err
	}
	switch h.GSOType &^ TypeECN {
	case TypeTCPv4:
		if l.v6 || l.proto != wire.ProtoTCP {
			return ErrMalformed
		}
	case TypeTCPv6:
		if !l.v6 || l.proto != wire.ProtoTCP {
			return ErrMalformed
		}
	case TypeUDPL4:
		if l.proto != wire.ProtoUDP || h.GSOType&TypeECN != 0 {
			return ErrMalformed
		}
	default:
		return ErrUnsupported
	}
	if h.GSOSize == 0 {
		return ErrMalformed
	}
	s.frame, s.l, s.mss, s.next = frame, l, int(h.GSOSize), l.pay
	if l.proto == wire.ProtoTCP {
		s.seq = wire.TCP(frame[l.l4:]).Seq()
	}
	if !l.v6 {
		s.id = wire.IPv4(frame[l.l3:]).ID()
	}
	return nil
}

// MaxLen returns the length of the longest segment Next will write: the
// size dst must have.
func (s *Segmenter) MaxLen() int {
	if s.frame == nil {
		return 0
	}
	return s.l.pay + min(s.mss, s.l.end-s.l.pay)
}

// Next writes the next segment into dst, a virtio_net_hdr (zero) followed
// by an Ethernet frame, and returns its length; it returns 0 when every
// segment has been written (or Reset failed). A frame whose payload fits in
// one segment yields one segment. dst must not overlap the frame and must
// have at least MaxLen bytes; Next panics otherwise.
func (s *Segmenter) Next(dst []byte) int {
	n, pay := s.NextHeader(dst)
	if n == 0 {
		return 0
	}
	return n + copy(dst[n:], pay)
}

// HeaderLen returns the length of every segment's virtio_net_hdr and
// headers (what NextHeader writes), or 0 if Reset failed.
func (s *Segmenter) HeaderLen() int {
	if s.frame == nil {
		return 0
	}
	return s.l.pay
}

// NextHeader is Next without the payload: it writes the next segment's
// virtio_net_hdr (zero) and headers into dst and returns their length
// (HeaderLen) and the segment's payload, a slice of the frame given to
// Reset, to be sent after them (as with writev: the VXLAN tunnel hands both
// to sendmsg, and so copies no payload). The headers are those of the
// complete segment, its checksum included. It returns 0, nil when every
// segment has been written. dst must not overlap the frame and must have at
// least HeaderLen bytes; NextHeader panics otherwise.
func (s *Segmenter) NextHeader(dst []byte) (int, []byte) {
	l := s.l
	if s.frame == nil || (s.i > 0 && s.next >= l.end) {
		return 0, nil
	}
	plen := min(s.mss, l.end-s.next)
	last := s.next+plen >= l.end
	pay := s.frame[s.next : s.next+plen]
	n := l.pay + plen // the segment's length
	h := dst[:l.pay]
	clear(h[:HdrLen])
	copy(h[HdrLen:], s.frame[HdrLen:l.pay])

	l4len := n - l.l4
	var pseudo uint32
	if l.v6 {
		ip := wire.IPv6(h[l.l3:])
		ip.SetPayloadLen(n - l.l3 - wire.IPv6Len)
		pseudo = ip.PseudoSum(l.proto, l4len)
	} else {
		ip := wire.IPv4(h[l.l3:])
		ip.SetTotalLen(n - l.l3)
		ip.SetID(s.id + uint16(s.i))
		ip.UpdateChecksum()
		pseudo = ip.PseudoSum(l4len)
	}

	// The transport header is even-sized: the payload, which may be odd,
	// comes last in the sum as RFC 1071 padding wants.
	if l.proto == wire.ProtoTCP {
		t := wire.TCP(h[l.l4:])
		t.SetSeq(s.seq + uint32(s.next-l.pay))
		f := t.Flags()
		if !last {
			f &^= wire.TCPFlagFIN | wire.TCPFlagPSH
		}
		if s.i > 0 {
			f &^= wire.TCPFlagCWR
		}
		t.SetFlags(f)
		t.SetChecksum(0)
		t.SetChecksum(checksum.Checksum(pay, checksum.Sum(t, pseudo)))
	} else {
		u := wire.UDP(h[l.l4:])
		u.SetLength(l4len)
		u.SetChecksum(0)
		c := checksum.Checksum(pay, checksum.Sum(u, pseudo))
		if c == 0 {
			c = 0xffff // RFC 768: a computed 0 is sent as all ones
		}
		u.SetChecksum(c)
	}
	s.next += plen
	s.i++
	return l.pay, pay
}

// CompleteChecksum completes in place the partial transport checksum of a
// frame whose virtio_net_hdr has FlagNeedsCsum, as skb_checksum_help does:
// the field at CsumStart+CsumOffset holds the pseudo-header sum, and gets
// the checksum of everything from CsumStart to the end of the frame (0
// becomes 0xffff, CSUM_MANGLED_0). It then zeroes the virtio_net_hdr: the
// frame is an ordinary one (gso_type must be GSO_NONE). A frame without
// the flag is left alone. It returns ErrMalformed if the offsets lie
// outside the frame.
func CompleteChecksum(frame []byte) error {
	if len(frame) < HdrLen {
		return ErrMalformed
	}
	if frame[0]&FlagNeedsCsum == 0 {
		return nil
	}
	h := ParseHdr(frame)
	start := HdrLen + int(h.CsumStart)
	field := start + int(h.CsumOffset)
	if start < HdrLen+wire.EthernetLen || field+2 > len(frame) {
		return ErrMalformed
	}
	c := checksum.Checksum(frame[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	clear(frame[:HdrLen])
	return nil
}
