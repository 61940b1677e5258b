package daemon

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/nat"
)

// TestConntrackOrder: entries sort by protocol name, then by the numbers
// of their original tuple (10.0.0.2 before 10.0.0.10, port 80 before
// 443), not by their text.
func TestConntrackOrder(t *testing.T) {
	ep := func(s string) nat.Endpoint {
		e, ok := nat.EndpointFrom(netip.MustParseAddrPort(s))
		if !ok {
			t.Fatalf("endpoint %s", s)
		}
		return e
	}
	entry := func(p nat.Proto, src, dst string) nat.Entry {
		return nat.Entry{Proto: p, Orig: nat.Tuple{Proto: p, Src: ep(src), Dst: ep(dst)}}
	}
	want := []nat.Entry{
		entry(nat.ICMP, "10.0.0.10:7", "192.0.2.1:0"),
		entry(nat.TCP, "10.0.0.2:40000", "192.0.2.1:80"),
		entry(nat.TCP, "10.0.0.2:40000", "192.0.2.1:443"),
		entry(nat.TCP, "10.0.0.2:40000", "192.0.2.10:80"),
		entry(nat.TCP, "10.0.0.2:50000", "192.0.2.9:80"),
		entry(nat.TCP, "10.0.0.10:9", "192.0.2.1:80"),
		entry(nat.UDP, "9.0.0.1:53", "192.0.2.1:53"),
		entry(nat.UDP, "10.0.0.2:53", "192.0.2.1:53"),
	}
	for i := range 20 {
		got := slices.Clone(want)
		r := rand.New(rand.NewPCG(uint64(i), 1))
		r.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		slices.SortStableFunc(got, compareEntries)
		for k := range got {
			if got[k].Orig != want[k].Orig {
				t.Fatalf("shuffle %d: position %d: got %v, want %v", i, k, got[k].Orig, want[k].Orig)
			}
		}
	}
}
