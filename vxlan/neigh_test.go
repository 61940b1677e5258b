package vxlan

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
)

func TestNeighTable(t *testing.T) {
	sec := int64(time.Second)
	ip := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	v4 := func(s string) [16]byte { return netip.AddrFrom16(netip.MustParseAddr(s).As16()).As16() }
	a, b, c := v4("::ffff:10.80.2.2"), ip("fd42::2"), v4("::ffff:10.80.2.3")
	m1, m2 := fdb.MAC{2, 0, 0, 0, 0, 1}, fdb.MAC{2, 0, 0, 0, 0, 2}
	tb, err := NewNeighTable(TableConfig{Ageing: 10 * time.Second, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func()
		ip   [16]byte
		at   int64
		want fdb.MAC // zero: no entry
	}{
		{"learn ipv4", func() { tb.Learn(a, m1, 0) }, a, 0, m1},
		{"learn ipv6", func() { tb.Learn(b, m1, 0) }, b, 0, m1},
		{"multicast mac never learned", func() { tb.Learn(c, fdb.MAC{1, 0, 0x5e, 0, 0, 1}, 0) }, c, 0, fdb.MAC{}},
		{"unspecified never learned", func() { tb.Learn(ip("::"), m1, 0) }, ip("::"), 0, fdb.MAC{}},
		{"ipv4 broadcast never learned", func() { tb.Learn(v4("::ffff:255.255.255.255"), m1, 0) }, v4("::ffff:255.255.255.255"), 0, fdb.MAC{}},
		{"multicast address never learned", func() { tb.Learn(ip("ff02::1"), m1, 0) }, ip("ff02::1"), 0, fdb.MAC{}},
		{"moved", func() { tb.Learn(a, m2, sec) }, a, sec, m2},
		{"refresh keeps it", func() { tb.Learn(a, m2, 8*sec) }, a, 17 * sec, m2},
		{"aged", func() {}, b, 11 * sec, fdb.MAC{}},
		{"full", func() { tb.Learn(c, m1, 9*sec) }, c, 9 * sec, fdb.MAC{}},
		{"expired frees room", func() { tb.Expire(12 * sec); tb.Learn(c, m1, 12*sec) }, c, 12 * sec, m1},
	}
	for _, s := range steps {
		s.do()
		got, ok := tb.Lookup(s.ip, s.at)
		if ok != (s.want != fdb.MAC{}) || got != s.want && ok {
			t.Errorf("%s: Lookup = %v, %v; want %v", s.name, got, ok, s.want)
		}
	}
	st := tb.Stats()
	if st.Entries != 2 || st.Learned != 3 || st.Moved != 1 || st.Full != 1 {
		t.Errorf("stats %+v, want 2 entries, 3 learned, 1 moved, 1 full", st)
	}
	es := tb.Entries(12 * sec)
	if len(es) != 2 || es[0].IP != netip.MustParseAddr("10.80.2.2") || es[1].IP != netip.MustParseAddr("10.80.2.3") || es[1].MAC != m1 {
		t.Errorf("entries %+v", es)
	}
	if _, err := NewNeighTable(TableConfig{Ageing: -1}); err == nil {
		t.Error("negative ageing accepted")
	}
}

func TestNeighTableAllocs(t *testing.T) {
	tb, _ := NewNeighTable(TableConfig{})
	ip := netip.MustParseAddr("fd42::2").As16()
	m := fdb.MAC{2, 0, 0, 0, 0, 1}
	tb.Learn(ip, m, 0)
	if n := testing.AllocsPerRun(1000, func() { tb.Learn(ip, m, 1); tb.Lookup(ip, 1) }); n != 0 {
		t.Errorf("Learn of a known address and Lookup: %v allocations, want 0", n)
	}
}
