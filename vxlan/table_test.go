package vxlan

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
)

func TestTable(t *testing.T) {
	sec := int64(time.Second)
	v1 := &VTEP{Addr: netip.MustParseAddr("198.51.100.1")}
	v2 := &VTEP{Addr: netip.MustParseAddr("198.51.100.2")}
	m1, m2, m3 := fdb.MAC{2, 0, 0, 0, 0, 1}, fdb.MAC{2, 0, 0, 0, 0, 2}, fdb.MAC{2, 0, 0, 0, 0, 3}
	tb, err := NewTable(TableConfig{Ageing: 10 * time.Second, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func()
		mac  fdb.MAC
		at   int64
		want *VTEP // nil: no entry
	}{
		{"learn", func() { tb.Learn(m1, v1, 0) }, m1, 0, v1},
		{"multicast never learned", func() { tb.Learn(fdb.MAC{1, 0, 0x5e, 0, 0, 1}, v1, 0) }, fdb.MAC{1, 0, 0x5e, 0, 0, 1}, 0, nil},
		{"move", func() { tb.Learn(m1, v2, sec) }, m1, sec, v2},
		{"refresh keeps it", func() { tb.Learn(m1, v2, 8*sec) }, m1, 17 * sec, v2},
		{"aged", func() {}, m1, 19 * sec, nil},
		{"static", func() {
			if err := tb.AddStatic(m2, v1); err != nil {
				t.Fatal(err)
			}
		}, m2, 1000 * sec, v1},
		{"static never moves", func() { tb.Learn(m2, v2, 0) }, m2, 0, v1},
		{"full", func() { tb.Learn(m1, v1, 20*sec); tb.Learn(m3, v1, 20*sec) }, m3, 20 * sec, nil},
		{"expired frees room", func() { tb.Expire(31 * sec); tb.Learn(m3, v2, 31*sec) }, m3, 31 * sec, v2},
	}
	for _, s := range steps {
		s.do()
		got, ok := tb.Lookup(s.mac, s.at)
		if got != s.want || ok != (s.want != nil) {
			t.Errorf("%s: Lookup(%s) = %v, %v; want %v", s.name, s.mac, got, ok, s.want)
		}
	}
	st := tb.Stats()
	if st.Learned != 3 || st.Moved != 1 || st.Full != 1 || st.Entries != 2 {
		t.Errorf("stats %+v, want 3 learned, 1 moved, 1 refused, 2 entries", st)
	}
	if err := tb.AddStatic(fdb.MAC{2, 9, 9, 9, 9, 9}, v1); !errors.Is(err, ErrFull) {
		t.Errorf("AddStatic on a full table: %v, want ErrFull", err)
	}
	if err := tb.AddStatic(fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, v1); !errors.Is(err, fdb.ErrNotUnicast) {
		t.Errorf("AddStatic broadcast: %v, want ErrNotUnicast", err)
	}
	es := tb.Entries(31 * sec)
	if len(es) != 2 || es[0].MAC != m2 || !es[0].Static || es[1].MAC != m3 || es[1].VTEP != v2 {
		t.Errorf("entries %+v", es)
	}
	if !tb.Delete(m2) || tb.Delete(m2) {
		t.Error("Delete: want true once, then false")
	}
}

func TestTableLookupAllocs(t *testing.T) {
	tb, _ := NewTable(TableConfig{})
	v := &VTEP{Addr: netip.MustParseAddr("198.51.100.1")}
	m := fdb.MAC{2, 0, 0, 0, 0, 1}
	tb.Learn(m, v, 0)
	if n := testing.AllocsPerRun(1000, func() {
		tb.Learn(m, v, 1)
		tb.Lookup(m, 1)
	}); n != 0 {
		t.Errorf("Learn+Lookup allocate %.1f times", n)
	}
}
