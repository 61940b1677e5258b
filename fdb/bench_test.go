package fdb

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

var benchSizes = []struct {
	name string
	n    int
}{{"1k", 1000}, {"100k", 100000}}

// benchTable returns a table with n dynamic entries on 64 ports, and their
// keys in random order.
func benchTable(b *testing.B, n int) (*Table, []Key, []PortID) {
	b.Helper()
	tb := newTable(b, Config{MaxEntries: 2 * n, MaxPerPort: n})
	keys := make([]Key, n)
	ports := make([]PortID, n)
	for i := range keys {
		keys[i] = Key{MAC: MAC{0x02, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 0x01}, VLAN: uint16(i % 3)}
		ports[i] = PortID(1 + i%64)
		if r := tb.Learn(keys[i], ports[i], 0); r != Learned {
			b.Fatalf("Learn = %v", r)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(n, func(i, j int) {
		keys[i], keys[j] = keys[j], keys[i]
		ports[i], ports[j] = ports[j], ports[i]
	})
	return tb, keys, ports
}

func BenchmarkLookup(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			tb, keys, _ := benchTable(b, s.n)
			i := 0
			for b.Loop() {
				if _, ok := tb.Lookup(keys[i], 1); !ok {
					b.Fatal("miss")
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	tb, _, _ := benchTable(b, 1000)
	k := key(1)
	for b.Loop() {
		tb.Lookup(k, 1)
	}
}

func BenchmarkLearnKnown(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			tb, keys, ports := benchTable(b, s.n)
			i := 0
			now := int64(0)
			for b.Loop() {
				now += 1000 // 1 µs a frame: most refreshes are under the granularity
				if r := tb.Learn(keys[i], ports[i], now); r != Refreshed {
					b.Fatalf("Learn = %v", r)
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkLearnMove measures the write-lock path: one MAC moving between
// two ports on every call.
func BenchmarkLearnMove(b *testing.B) {
	tb, keys, _ := benchTable(b, 1000)
	k := keys[0]
	port := PortID(100)
	for b.Loop() {
		port ^= 1
		if r := tb.Learn(k, port, 1); r != Moved {
			b.Fatalf("Learn = %v", r)
		}
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			tb, keys, _ := benchTable(b, s.n)
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(1)*7919) % len(keys) // each goroutine starts elsewhere
				for pb.Next() {
					tb.Lookup(keys[i], 1)
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
		})
	}
}

// BenchmarkForwardParallel is what the datapath does for each frame: learn
// the source, look up the destination, on every core at once.
func BenchmarkForwardParallel(b *testing.B) {
	tb, keys, ports := benchTable(b, 1000)
	var seed atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1)*7919) % len(keys)
		now := int64(0)
		for pb.Next() {
			now += 1000
			tb.Learn(keys[i], ports[i], now)
			j := i + 1
			if j == len(keys) {
				j = 0
			}
			tb.Lookup(keys[j], now)
			i = j
		}
	})
}

// BenchmarkExpire measures a periodic Expire that finds nothing to remove:
// a scan under the read lock.
func BenchmarkExpire(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			tb, _, _ := benchTable(b, s.n)
			for b.Loop() {
				if n := tb.Expire(1); n != 0 {
					b.Fatalf("Expire = %d", n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(s.n), "ns/entry")
		})
	}
}
