package nat

import (
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/wire"
)

// checkInvariants verifies the table's internal consistency: every
// connection is in exactly one list and under both of its keys, the counts
// agree, every mapping is held by the connections that use it and owns its
// port alone (no port overloading), and no mapping port is published.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	seen := map[*conn]bool{}
	refs := map[*mapping]int{}
	n := 0
	for _, l := range []*connList{&tb.cand, &tb.kept, &tb.closing} {
		cnt := 0
		var prev *conn
		for c := l.head; c != nil; c = c.next {
			if seen[c] || c.list != l || c.prev != prev || c.dead {
				t.Fatalf("connection %v linked wrongly", c.orig)
			}
			seen[c] = true
			prev = c
			cnt++
			if r, _ := tb.getLocked(&c.orig, c.origSide); r.c != c || r.dir != dirOrig {
				t.Fatalf("orig key of %v missing", c.orig)
			}
			if r, _ := tb.getLocked(&c.reply, c.replySide); r.c != c || r.dir != dirReply {
				t.Fatalf("reply key of %v missing", c.reply)
			}
			for _, m := range c.maps {
				if m != nil {
					refs[m]++
				}
			}
		}
		if cnt != l.n || l.tail != prev {
			t.Fatalf("list count %d, n %d", cnt, l.n)
		}
		n += cnt
	}
	if n != tb.nconns || 2*n != len(tb.conns)+len(tb.conns6) {
		t.Fatalf("%d listed, nconns %d, %d+%d keys", n, tb.nconns, len(tb.conns), len(tb.conns6))
	}
	if n > tb.cfg.MaxEntries {
		t.Fatalf("%d entries over the limit %d", n, tb.cfg.MaxEntries)
	}
	var byProto int64
	for i := range tb.entries {
		byProto += tb.entries[i].Load()
	}
	if byProto != int64(n) || tb.nmaps.Load() != int64(len(tb.maps)) || len(tb.maps) != len(tb.ports) {
		t.Fatalf("counters: entries %d for %d, mappings %d/%d/%d", byProto, n, tb.nmaps.Load(), len(tb.maps), len(tb.ports))
	}
	for k, m := range tb.maps {
		if k.ep != m.internal || tb.ports[m.portKey()] != m {
			t.Fatalf("mapping %v inconsistent", m)
		}
		if m.refs != refs[m] || m.refs == 0 {
			t.Fatalf("mapping of %v: refs %d, held by %d", m.internal, m.refs, refs[m])
		}
		if !isICMP(m.proto) && tb.publishForLocked(m.proto, m.internal.Addr.Is6(), m.port) != nil {
			t.Fatalf("mapped port %d is published", m.port)
		}
	}
	for m := range refs {
		if tb.maps[mapKey{m.proto, m.internal}] != m {
			t.Fatalf("connection holds a mapping of %v the table lost", m.internal)
		}
	}
}

// FuzzTableOps runs a sequence of operations decoded from the input on a
// small table (4 entries, 3 ports) and checks the invariants after each.
func FuzzTableOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0, 0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		tb := newTable6(t, func(c *Config) {
			c.MaxEntries = 4
			c.PortMin, c.PortMax = 40000, 40002
			c.EndpointIndependentFiltering = len(ops)%2 == 1
		})
		mustPublish(t, tb, "40003:80/udp", c2)
		var now int64
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			now += int64(arg&3) * 10 * sec
			src := [4]byte{10, 90, 0, 2 + arg>>6}
			sport := 40000 + uint16(arg>>4&3)
			peer := [4]byte{198, 51, 100, 7 + arg>>2&3}
			var pkt []byte
			switch op % 10 {
			case 0, 1: // outbound UDP or TCP SYN
				if op%2 == 0 {
					pkt = udp(c1+":1", remote+":53")
				} else {
					pkt = tcp(c1+":1", remote+":80", wire.TCPFlagSYN)
				}
				copy(pkt[12:16], src[:])
				copy(pkt[16:20], peer[:])
				binary.BigEndian.PutUint16(pkt[20:], sport)
				fixChecksums(pkt, false)
				fuzzPacket(t, tb, true, pkt, false, false)
			case 2, 3: // inbound to a port, from a peer
				if op%2 == 0 {
					pkt = udp(remote+":53", extIP+":1")
				} else {
					pkt = tcp(remote+":80", extIP+":1", []uint8{wire.TCPFlagSYN | wire.TCPFlagACK, wire.TCPFlagACK, wire.TCPFlagFIN, wire.TCPFlagRST}[arg&3])
				}
				copy(pkt[12:16], peer[:])
				binary.BigEndian.PutUint16(pkt[22:], 40000+uint16(arg>>4&3))
				fixChecksums(pkt, false)
				fuzzPacket(t, tb, false, pkt, false, false)
			case 4: // hairpin
				pkt = udp(c1+":1", extIP+":40003")
				copy(pkt[12:16], src[:])
				binary.BigEndian.PutUint16(pkt[20:], sport)
				binary.BigEndian.PutUint16(pkt[22:], 40000+uint16(arg&3))
				fixChecksums(pkt, false)
				fuzzPacket(t, tb, true, pkt, false, false)
			case 5:
				tb.Expire(now)
			case 6:
				if arg&1 == 0 {
					tb.FlushAddr(ep(c1).AddrPort().Addr())
				} else {
					tb.Flush()
				}
			case 7: // echo
				pkt = echo(wire.ICMPEchoRequest, c1, remote, uint16(arg&3))
				copy(pkt[12:16], src[:])
				fixChecksums(pkt, false)
				fuzzPacket(t, tb, true, pkt, false, false)
			case 8: // outbound IPv6: UDP, TCP SYN or echo, competing for the same entries
				a := []string{c16, c26}[arg>>6&1]
				switch arg & 3 {
				case 0:
					pkt = udp(ap(a, sport), ap(remote6, 53))
				case 1:
					pkt = tcp(ap(a, sport), ap(remote6, 80), wire.TCPFlagSYN)
				default:
					pkt = echo6(wire.ICMPv6EchoRequest, a, remote6, sport)
				}
				fuzzPacket(t, tb, true, pkt, false, false)
			case 9: // inbound IPv6 to a port
				pkt = udp(ap(remote6, 53), ap(extIP6, 40000+uint16(arg>>4&3)))
				if arg&1 == 1 {
					pkt = tcp(ap(remote6, 80), ap(extIP6, 40000+uint16(arg>>4&3)), wire.TCPFlagSYN|wire.TCPFlagACK)
				}
				fuzzPacket(t, tb, false, pkt, false, false)
			}
			checkInvariants(t, tb)
		}
	})
}
