package nat

import (
	"fmt"
	"testing"
)

// syn opens a TCP connection from the container port sport (handshake not
// completed) and fails the test if it is not translated.
func syn(t *testing.T, tb *Table, sport int, now int64) {
	t.Helper()
	pkt := build(spec{proto: TCP, src: fmt.Sprintf("10.90.0.2:%d", sport), dst: "198.51.100.9:80", flags: 0x02})
	if r := tb.FromInternal(pkt, false, now); r.Action != ToExternal {
		t.Fatalf("SYN from port %d: %+v", sport, r)
	}
}

// TestPressureTimeout: TCP connections not established time out after
// TCPPressure while the table is more than half full, after TCPTransitory
// otherwise.
func TestPressureTimeout(t *testing.T) {
	tests := []struct {
		name  string
		conns int
		want  int // removed by Expire 11 s later
	}{
		{"half full: the usual timeout", 4, 0},
		{"more than half full: early", 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(t, func(c *Config) { c.MaxEntries = 8 })
			for i := range tt.conns {
				syn(t, tb, 1000+i, 0)
			}
			if got := tb.Expire(11 * sec); got != tt.want {
				t.Errorf("Expire after 11 s removed %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCompact: after a flood emptied, the maps are rebuilt once; a table
// that did not shrink is left alone.
func TestCompact(t *testing.T) {
	tb := newTable(t, nil)
	if tb.Compact() {
		t.Errorf("Compact on an empty table: true, want false")
	}
	for i := range 5000 {
		syn(t, tb, 1024+i, 0)
	}
	if tb.Compact() {
		t.Errorf("Compact on a full table: true, want false")
	}
	syn(t, tb, 40000, 290*sec) // survives: opened later
	// 5001 of 65536 is no pressure: TCPTransitory (4 min) applies.
	if got := tb.Expire(300 * sec); got != 5000 {
		t.Fatalf("Expire removed %d, want 5000", got)
	}
	if !tb.Compact() {
		t.Errorf("Compact after the flood: false, want true")
	}
	if tb.Compact() {
		t.Errorf("second Compact: true, want false")
	}
	if n := len(tb.Entries(300 * sec)); n != 1 {
		t.Errorf("%d connections left, want 1", n)
	}
}

// TestPressureHysteresis: the pressure lasts until the table is below an
// eighth full, and for twice TCPPressure after it was last more than half
// full, so the tail of a flood expires early too.
func TestPressureHysteresis(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.MaxEntries = 16 })
	for i := range 9 { // more than half: pressure
		syn(t, tb, 1000+i, 0)
	}
	if got := tb.Expire(11 * sec); got != 9 {
		t.Fatalf("Expire removed %d, want 9", got)
	}
	for i := range 3 { // 3 of 16: below half, not below an eighth
		syn(t, tb, 2000+i, 20*sec)
	}
	if got := tb.Expire(31 * sec); got != 3 {
		t.Errorf("tail of the flood: Expire removed %d, want 3", got)
	}
	syn(t, tb, 3000, 40*sec) // 1 of 16: below an eighth, pressure over
	if got := tb.Expire(51 * sec); got != 0 {
		t.Errorf("after the pressure: Expire removed %d, want 0", got)
	}
}

// TestPressureTail: the last entries of a flood, fewer than an eighth of
// the table once the older ones expired, still expire early: the pressure
// outlasts the flood by twice TCPPressure (10 s here).
func TestPressureTail(t *testing.T) {
	tb := newTable(t, func(c *Config) { c.MaxEntries = 16 })
	for i := range 8 {
		syn(t, tb, 1000+i, 0)
	}
	syn(t, tb, 2000, 8*sec) // the flood's last: 9 of 16, pressure
	if got := tb.Expire(11 * sec); got != 8 {
		t.Fatalf("Expire removed %d, want 8", got)
	}
	// 1 of 16 left, below an eighth, but 8 s after the table was last
	// more than half full.
	if got := tb.Expire(19 * sec); got != 1 {
		t.Errorf("the flood's last entry: Expire removed %d, want 1 (early)", got)
	}
	syn(t, tb, 3000, 40*sec) // 29 s after: the pressure is over
	if got := tb.Expire(51 * sec); got != 0 {
		t.Errorf("after the pressure: Expire removed %d, want 0", got)
	}
}
