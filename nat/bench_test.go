package nat

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

// benchTable is a table of n UDP connections: n/1000 (at least 1) internal
// endpoints, each talking to up to 1000 outside endpoints, so mappings are
// shared as endpoint-independent mapping shares them. flows are the
// outbound packets of some of the connections, spread over the table, and
// replies the matching inbound packets.
type benchTable struct {
	tb              *Table
	flows, replies  [][]byte
	keysIn, keysOut []Tuple
}

var (
	benchMu     sync.Mutex
	benchTables = map[int]*benchTable{}
)

const benchSample = 4096

func getBenchTable(b *testing.B, n int) *benchTable {
	benchMu.Lock()
	defer benchMu.Unlock()
	if bt := benchTables[n]; bt != nil {
		return bt
	}
	tb := newTable(b, func(c *Config) { c.MaxEntries = n })
	bt := &benchTable{tb: tb}
	tmpl := udp(c1+":1", remote+":1")
	pkt := make([]byte, len(tmpl))
	per := min(n, 1000)
	every := max(n/benchSample, 1)
	for i := range n {
		copy(pkt, tmpl)
		in, peer := i/per, i%per
		binary.BigEndian.PutUint16(pkt[14:], uint16(in>>8&0xff)<<8|uint16(in&0xff)+2) // 10.90.x.y
		binary.BigEndian.PutUint16(pkt[20:], 40000)
		pkt[17], pkt[18], pkt[19] = 51, byte(peer>>8)+100, byte(peer)
		binary.BigEndian.PutUint16(pkt[22:], 53)
		fixChecksums(pkt, false)
		orig := append([]byte(nil), pkt...)
		if r := tb.FromInternal(pkt, false, 0); r.Action != ToExternal {
			b.Fatalf("setup flow %d: %v", i, r.Reason)
		}
		if i%every == 0 && len(bt.flows) < benchSample {
			s, d := hdr(pkt)
			rep := udp(d.String(), s.String())
			var p parsed
			p.parse(orig)
			bt.keysOut = append(bt.keysOut, p.t)
			p = parsed{}
			p.parse(rep)
			bt.keysIn = append(bt.keysIn, p.t)
			bt.flows = append(bt.flows, orig)
			bt.replies = append(bt.replies, rep)
		}
	}
	if tb.Len() != n {
		b.Fatalf("table has %d entries, want %d", tb.Len(), n)
	}
	benchTables[n] = bt
	return bt
}

var benchSizes = []struct {
	name string
	n    int
}{{"1k", 1000}, {"1M", 1000000}}

// BenchmarkLookup is the conntrack lookup alone (read lock, map access) of
// known connections spread over the table.
func BenchmarkLookup(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			bt := getBenchTable(b, sz.n)
			i := 0
			for b.Loop() {
				if bt.tb.lookup(&bt.keysOut[i%len(bt.keysOut)], sideInternal).c == nil {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

// BenchmarkRewrite is a whole translation of a known connection's 40-byte UDP
// packet: parse, lookup, state and counters, rewrite with incremental
// checksums (the copy that restores the packet is included).
func BenchmarkRewrite(b *testing.B) {
	for _, dir := range []string{"out", "in"} {
		for _, sz := range benchSizes {
			b.Run(dir+"/"+sz.name, func(b *testing.B) {
				bt := getBenchTable(b, sz.n)
				src := bt.flows
				fn := bt.tb.FromInternal
				if dir == "in" {
					src, fn = bt.replies, bt.tb.FromExternal
				}
				buf := make([]byte, len(src[0]))
				i := 0
				for b.Loop() {
					copy(buf, src[i%len(src)])
					if fn(buf, false, 1).Action == Drop {
						b.Fatal("dropped")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkRewriteParallel is BenchmarkRewrite (outbound, 1k) from every
// core at once: the cost of the shared read lock and counters.
func BenchmarkRewriteParallel(b *testing.B) {
	bt := getBenchTable(b, 1000)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(bt.flows[0]))
		i := 0
		for pb.Next() {
			copy(buf, bt.flows[i%len(bt.flows)])
			if bt.tb.FromInternal(buf, false, 1).Action == Drop {
				panic("dropped")
			}
			i++
		}
	})
}

// BenchmarkNewConnection is the creation of a UDP connection (mapping
// reused) and, every 1000, a flush.
func BenchmarkNewConnection(b *testing.B) {
	tb := newTable(b, nil)
	tmpl := udp(c1+":40000", remote+":1")
	buf := make([]byte, len(tmpl))
	i := 0
	for b.Loop() {
		copy(buf, tmpl)
		binary.BigEndian.PutUint16(buf[22:], uint16(i%1000+1))
		if tb.FromInternal(buf, false, 0).Action == Drop {
			b.Fatal("dropped")
		}
		i++
		if i%1000 == 0 {
			tb.Flush()
		}
	}
}

func ExampleParsePublish() {
	p, err := ParsePublish("9000-9009:7000-7009/udp")
	fmt.Println(p, err)
	// Output: 9000-9009:7000-7009/udp <nil>
}
