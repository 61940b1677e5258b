package gso

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// Protocol numbers and EtherTypes this package reads.
const (
	protoTCP = 6
	protoUDP = 17

	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	ethHdrLen  = 14
	vlanTagLen = 4
)

// TCP flags in byte 13 of the TCP header (RFC 9293 section 3.1).
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
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
	off := HdrLen + 12
	if len(frame) < off+2 {
		return l, ErrMalformed
	}
	typ := binary.BigEndian.Uint16(frame[off:])
	for tags := 0; (typ == etherVLAN || typ == etherQinQ) && tags < 2; tags++ {
		off += vlanTagLen
		if len(frame) < off+2 {
			return l, ErrMalformed
		}
		typ = binary.BigEndian.Uint16(frame[off:])
	}
	l.l3 = off + 2
	ip := frame[l.l3:]
	switch typ {
	case etherIPv4:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return l, ErrMalformed
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || total < ihl || total > len(ip) {
			return l, ErrMalformed
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			// A fragment (MF set or an offset) has no transport
			// header of its own to segment or checksum.
			return l, ErrMalformed
		}
		l.l4, l.end, l.proto = l.l3+ihl, l.l3+total, ip[9]
	case etherIPv6:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return l, ErrMalformed
		}
		total := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if total > len(ip) {
			return l, ErrMalformed
		}
		l.l4, l.end, l.proto, l.v6 = l.l3+40, l.l3+total, ip[6], true
	default:
		return l, ErrUnsupported
	}
	switch l.proto {
	case protoTCP:
		if l.end-l.l4 < 20 {
			return l, ErrMalformed
		}
		doff := int(frame[l.l4+12]>>4) * 4
		if doff < 20 || doff > l.end-l.l4 {
			return l, ErrMalformed
		}
		l.pay = l.l4 + doff
	case protoUDP:
		if l.end-l.l4 < 8 {
			return l, ErrMalformed
		}
		l.pay = l.l4 + 8
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
		if l.v6 || l.proto != protoTCP {
			return ErrMalformed
		}
	case TypeTCPv6:
		if !l.v6 || l.proto != protoTCP {
			return ErrMalformed
		}
	case TypeUDPL4:
		if l.proto != protoUDP || h.GSOType&TypeECN != 0 {
			return ErrMalformed
		}
	default:
		return ErrUnsupported
	}
	if h.GSOSize == 0 {
		return ErrMalformed
	}
	s.frame, s.l, s.mss, s.next = frame, l, int(h.GSOSize), l.pay
	if l.proto == protoTCP {
		s.seq = binary.BigEndian.Uint32(frame[l.l4+4:])
	}
	if !l.v6 {
		s.id = binary.BigEndian.Uint16(frame[l.l3+4:])
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
	l := s.l
	if s.frame == nil || (s.i > 0 && s.next >= l.end) {
		return 0
	}
	plen := min(s.mss, l.end-s.next)
	last := s.next+plen >= l.end
	n := l.pay + plen
	dst = dst[:n]
	clear(dst[:HdrLen])
	copy(dst[HdrLen:l.pay], s.frame[HdrLen:l.pay])
	copy(dst[l.pay:], s.frame[s.next:s.next+plen])

	ip := dst[l.l3:]
	l4len := n - l.l4
	var pseudo uint32
	if l.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(n-l.l3-40))
		pseudo = checksum.Sum(ip[8:40], uint32(l.proto)+uint32(l4len))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(n-l.l3))
		binary.BigEndian.PutUint16(ip[4:], s.id+uint16(s.i))
		binary.BigEndian.PutUint16(ip[10:], 0)
		ihl := l.l4 - l.l3
		binary.BigEndian.PutUint16(ip[10:], checksum.Checksum(ip[:ihl], 0))
		pseudo = checksum.Sum(ip[12:20], uint32(l.proto)+uint32(l4len))
	}

	t := dst[l.l4:]
	if l.proto == protoTCP {
		binary.BigEndian.PutUint32(t[4:], s.seq+uint32(s.next-l.pay))
		if !last {
			t[13] &^= tcpFIN | tcpPSH
		}
		if s.i > 0 {
			t[13] &^= tcpCWR
		}
		binary.BigEndian.PutUint16(t[16:], 0)
		binary.BigEndian.PutUint16(t[16:], checksum.Checksum(t, pseudo))
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(l4len))
		binary.BigEndian.PutUint16(t[6:], 0)
		c := checksum.Checksum(t, pseudo)
		if c == 0 {
			c = 0xffff // RFC 768: 0 would mean "no checksum"
		}
		binary.BigEndian.PutUint16(t[6:], c)
	}
	s.next += plen
	s.i++
	return n
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
	if start < HdrLen+ethHdrLen || field+2 > len(frame) {
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
