package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// Addresses used by the tests: the uplink address and the containers'
// subnet, and outside hosts from the documentation ranges.
const (
	extIP   = "203.0.113.2"
	subnet  = "10.90.0.0/16"
	c1      = "10.90.0.2"
	c2      = "10.90.0.3"
	remote  = "198.51.100.7"
	remote2 = "198.51.100.8"
	router  = "198.51.100.1"
)

var sec = int64(time.Second)

func testConfig() Config {
	return Config{External: netip.MustParseAddr(extIP), Internal: netip.MustParsePrefix(subnet)}
}

func newTable(t testing.TB, mod func(*Config)) *Table {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func ep(s string) Endpoint {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return Endpoint{Addr: netip.MustParseAddr(s)}
	}
	e, _ := EndpointFrom(ap)
	return e
}

// spec describes a test packet.
type spec struct {
	proto    Proto
	src, dst string // "a.b.c.d:port" or "[v6]:port" (ICMP: address only); IPv6 builds an IPv6 packet
	flags    uint8  // TCP flags
	icmpType uint8  // ICMP
	icmpCode uint8
	id       uint16 // ICMP echo identifier
	payload  []byte
	noCsum   bool   // UDP: checksum 0
	ipID     uint16 // IPv4 identification
	fragOff  uint16 // fragment offset field (flags and offset), host order
}

// build returns the packet with every checksum computed in full.
func build(s spec) []byte {
	src, dst := ep(s.src), ep(s.dst)
	l4 := buildL4(s, src, dst)
	if src.Addr.Is6() {
		return build6(s, src, dst, l4)
	}
	pkt := make([]byte, 20+len(l4))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], s.ipID)
	binary.BigEndian.PutUint16(pkt[6:], s.fragOff)
	pkt[8] = 64
	pkt[9] = byte(s.proto)
	a, b := src.Addr.As4(), dst.Addr.As4()
	copy(pkt[12:16], a[:])
	copy(pkt[16:20], b[:])
	copy(pkt[20:], l4)
	fixChecksums(pkt, s.noCsum)
	return pkt
}

// buildL4 returns the L4 header and payload of s, checksum zero.
func buildL4(s spec, src, dst Endpoint) []byte {
	var l4 []byte
	switch s.proto {
	case TCP:
		l4 = make([]byte, 20+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], src.Port)
		binary.BigEndian.PutUint16(l4[2:], dst.Port)
		binary.BigEndian.PutUint32(l4[4:], 1000)
		binary.BigEndian.PutUint32(l4[8:], 2000)
		l4[12] = 5 << 4
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], s.payload)
	case UDP:
		l4 = make([]byte, 8+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], src.Port)
		binary.BigEndian.PutUint16(l4[2:], dst.Port)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], s.payload)
	case ICMP, ICMPv6:
		l4 = make([]byte, 8+len(s.payload))
		l4[0], l4[1] = s.icmpType, s.icmpCode
		if s.icmpType == echoRequest(s.proto) || s.icmpType == echoReply(s.proto) {
			binary.BigEndian.PutUint16(l4[4:], s.id)
			binary.BigEndian.PutUint16(l4[6:], 1)
		}
		copy(l4[8:], s.payload)
	}
	return l4
}

// fixChecksums computes every checksum of pkt in full, as far as pkt can be
// parsed (for fuzz inputs): IPv4 header, TCP, UDP (unless keepZeroUDP and
// it is zero), ICMP; for an ICMP error also the embedded IPv4 header and the
// embedded L4 checksum when the quote is complete.
func fixChecksums(pkt []byte, keepZeroUDP bool) {
	if len(pkt) >= 40 && pkt[0]>>4 == 6 {
		fixChecksums6(pkt, keepZeroUDP)
		return
	}
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return
	}
	ihl := int(pkt[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < 20 || total < ihl || total > len(pkt) {
		return
	}
	put16(pkt[10:], 0)
	put16(pkt[10:], checksum.Checksum(pkt[:ihl], 0))
	if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 { // fragments: leave L4 alone
		return
	}
	l4 := pkt[ihl:total]
	switch Proto(pkt[9]) {
	case TCP:
		if len(l4) >= 20 {
			put16(l4[16:], 0)
			put16(l4[16:], checksum.Checksum(l4, checksum.PseudoHeaderIPv4([4]byte(pkt[12:16]), [4]byte(pkt[16:20]), 6, uint16(len(l4)))))
		}
	case UDP:
		if len(l4) >= 8 && !(keepZeroUDP && get16(l4[6:]) == 0) {
			put16(l4[6:], 0)
			c := checksum.Checksum(l4, checksum.PseudoHeaderIPv4([4]byte(pkt[12:16]), [4]byte(pkt[16:20]), 17, uint16(len(l4))))
			if c == 0 {
				c = 0xffff
			}
			put16(l4[6:], c)
		}
	case ICMP:
		if len(l4) >= 8 {
			if l4[0] == 3 || l4[0] == 11 || l4[0] == 12 {
				fixInner(l4[8:])
			}
			put16(l4[2:], 0)
			put16(l4[2:], checksum.Checksum(l4, 0))
		}
	}
}

// fixInner computes the checksums of a quoted packet where it can.
func fixInner(in []byte) {
	if len(in) < 20 || in[0]>>4 != 4 {
		return
	}
	ihl := int(in[0]&0xf) * 4
	if ihl < 20 || len(in) < ihl {
		return
	}
	put16(in[10:], 0)
	put16(in[10:], checksum.Checksum(in[:ihl], 0))
	total := int(binary.BigEndian.Uint16(in[2:]))
	if total != len(in) || total < ihl {
		return // truncated quote: its L4 checksum cannot be computed
	}
	if binary.BigEndian.Uint16(in[6:])&0x3fff != 0 {
		return
	}
	l4 := in[ihl:]
	ph := checksum.PseudoHeaderIPv4([4]byte(in[12:16]), [4]byte(in[16:20]), in[9], uint16(len(l4)))
	switch Proto(in[9]) {
	case TCP:
		if len(l4) >= 20 {
			put16(l4[16:], 0)
			put16(l4[16:], checksum.Checksum(l4, ph))
		}
	case UDP:
		if len(l4) >= 8 && get16(l4[6:]) != 0 {
			put16(l4[6:], 0)
			c := checksum.Checksum(l4, ph)
			if c == 0 {
				c = 0xffff
			}
			put16(l4[6:], c)
		}
	case ICMP:
		if len(l4) >= 8 {
			put16(l4[2:], 0)
			put16(l4[2:], checksum.Checksum(l4, 0))
		}
	}
}

// checkChecksums verifies every checksum of pkt by a full recompute (the
// same coverage as fixChecksums) and, for unfragmented packets, with
// gopacket's own verification. It returns the first problem.
func checkChecksums(pkt []byte) error {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return checkChecksums6(pkt)
	}
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return fmt.Errorf("not an IPv4 packet")
	}
	ihl := int(pkt[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < 20 || total < ihl || total > len(pkt) {
		return fmt.Errorf("bad header or total length")
	}
	if checksum.Checksum(pkt[:ihl], 0) != 0 {
		return fmt.Errorf("ipv4 header checksum %#04x is wrong", get16(pkt[10:]))
	}
	frag := binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0
	if frag {
		return nil
	}
	l4 := pkt[ihl:total]
	ph := checksum.PseudoHeaderIPv4([4]byte(pkt[12:16]), [4]byte(pkt[16:20]), pkt[9], uint16(len(l4)))
	if min := map[Proto]int{TCP: 20, UDP: 8, ICMP: 8}[Proto(pkt[9])]; len(l4) < min {
		return fmt.Errorf("short L4 header")
	}
	switch Proto(pkt[9]) {
	case TCP:
		if checksum.Checksum(l4, ph) != 0 {
			return fmt.Errorf("tcp checksum %#04x is wrong", get16(l4[16:]))
		}
	case UDP:
		if get16(l4[6:]) != 0 && checksum.Checksum(l4, ph) != 0 {
			return fmt.Errorf("udp checksum %#04x is wrong", get16(l4[6:]))
		}
	case ICMP:
		if checksum.Checksum(l4, 0) != 0 {
			return fmt.Errorf("icmp checksum %#04x is wrong", get16(l4[2:]))
		}
		if l4[0] == 3 || l4[0] == 11 || l4[0] == 12 {
			if err := checkInner(l4[8:]); err != nil {
				return err
			}
		}
	}
	p := gopacket.NewPacket(pkt[:total], layers.LayerTypeIPv4, gopacket.Default)
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) > 0 {
		if len(bad) > 0 {
			return fmt.Errorf("gopacket: %v checksum %#x, want %#x", bad[0].Layer.LayerType(), bad[0].Actual, bad[0].Correct)
		}
		// A layer gopacket cannot decode is not a checksum problem.
	}
	return nil
}

func checkInner(in []byte) error {
	if len(in) < 20 {
		return nil
	}
	ihl := int(in[0]&0xf) * 4
	if ihl < 20 || len(in) < ihl {
		return nil
	}
	if checksum.Checksum(in[:ihl], 0) != 0 {
		return fmt.Errorf("embedded ipv4 header checksum %#04x is wrong", get16(in[10:]))
	}
	total := int(binary.BigEndian.Uint16(in[2:]))
	if total != len(in) || binary.BigEndian.Uint16(in[6:])&0x3fff != 0 {
		return nil
	}
	l4 := in[ihl:]
	ph := checksum.PseudoHeaderIPv4([4]byte(in[12:16]), [4]byte(in[16:20]), in[9], uint16(len(l4)))
	switch Proto(in[9]) {
	case TCP:
		if len(l4) >= 20 && checksum.Checksum(l4, ph) != 0 {
			return fmt.Errorf("embedded tcp checksum is wrong")
		}
	case UDP:
		if len(l4) >= 8 && get16(l4[6:]) != 0 && checksum.Checksum(l4, ph) != 0 {
			return fmt.Errorf("embedded udp checksum is wrong")
		}
	case ICMP:
		if len(l4) >= 8 && checksum.Checksum(l4, 0) != 0 {
			return fmt.Errorf("embedded icmp checksum is wrong")
		}
	}
	return nil
}

// hdr returns the tuple of a packet as it is on the wire now (for ICMP echo
// the identifier is the source port of both request and reply here).
func hdr(pkt []byte) (src, dst Endpoint) {
	ihl := int(pkt[0]&0xf) * 4
	proto := Proto(pkt[9])
	if pkt[0]>>4 == 6 { // no extension headers in the tests' packets
		ihl, proto = 40, Proto(pkt[6])
		src.Addr, dst.Addr = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	} else {
		src.Addr, dst.Addr = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
	}
	l4 := pkt[ihl:]
	switch proto {
	case TCP, UDP:
		src.Port, dst.Port = get16(l4[0:]), get16(l4[2:])
	case ICMP, ICMPv6:
		src.Port = get16(l4[4:])
	}
	return src, dst
}

// inner returns the embedded packet of an ICMP error.
func inner(pkt []byte) []byte {
	if pkt[0]>>4 == 6 {
		return pkt[40+8:]
	}
	ihl := int(pkt[0]&0xf) * 4
	return pkt[ihl+8:]
}

// icmpErr builds an ICMP error from src to dst quoting the first n bytes of
// quoted (all when n is 0 or larger).
func icmpErr(typ, code uint8, src, dst string, quoted []byte, n int) []byte {
	if n <= 0 || n > len(quoted) {
		n = len(quoted)
	}
	proto := ICMP
	if ep(src).Addr.Is6() {
		proto = ICMPv6
	}
	return build(spec{proto: proto, src: src, dst: dst, icmpType: typ, icmpCode: code, payload: quoted[:n]})
}

// want checks a result and the packet's checksums.
func want(t *testing.T, what string, r Result, action Action, pkt []byte) {
	t.Helper()
	if r.Action != action {
		t.Fatalf("%s: got %v (reason %v), want %v", what, r.Action, r.Reason, action)
	}
	if action != Drop && pkt != nil {
		if err := checkChecksums(pkt); err != nil {
			t.Fatalf("%s: %v (packet %x)", what, err, pkt)
		}
	}
}

// translate hands pkt to tb at time 0 from inside (FromInternal) when
// internal is set, else from outside (FromExternal).
func translate(tb *Table, internal bool, pkt []byte) Result {
	if internal {
		return tb.FromInternal(pkt, false, 0)
	}
	return tb.FromExternal(pkt, false, 0)
}

func wantDrop(t *testing.T, what string, r Result, reason DropReason) {
	t.Helper()
	if r.Action != Drop || r.Reason != reason {
		t.Fatalf("%s: got %v (reason %v), want drop (%v)", what, r.Action, r.Reason, reason)
	}
}

func wantHdr(t *testing.T, what string, pkt []byte, src, dst string) {
	t.Helper()
	s, d := hdr(pkt)
	if s != ep(src) || d != ep(dst) {
		t.Fatalf("%s: packet is %s -> %s, want %s -> %s", what, s, d, ep(src), ep(dst))
	}
}
