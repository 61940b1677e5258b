package nat

// The table is under pressure from the moment it holds more than half of
// MaxEntries connections until it holds less than an eighth and twice
// Timeouts.TCPPressure have passed since it last held more than half: then
// TCP connections not yet established time out after TCPPressure instead
// of TCPTransitory. The gap between the two marks lets the tail of a flood
// expire early too, rather than for minutes once the table is below the
// first mark; the time, a tail smaller than the second mark (the flood's
// last entries, younger than TCPPressure when the older ones went): every
// entry the flood made is then past TCPPressure while the pressure lasts.
const (
	pressureOn  = 2 // more than MaxEntries/2
	pressureOff = 8 // less than MaxEntries/8
)

// underPressure reports whether the table is under pressure at now, and
// updates that state. It takes no lock.
func (t *Table) underPressure(now int64) bool {
	n := t.entries[0].Load() + t.entries[1].Load() + t.entries[2].Load()
	max := int64(t.cfg.MaxEntries)
	switch {
	case n > max/pressureOn:
		t.pressure.Store(true)
		t.pressureUntil.Store(now + 2*int64(t.tmo.TCPPressure))
	case n < max/pressureOff && now >= t.pressureUntil.Load():
		t.pressure.Store(false)
	}
	return t.pressure.Load()
}

// compactMin is the peak size below which Compact leaves the maps alone.
const compactMin = 4096

// Compact rebuilds the table's maps when they hold less than an eighth of
// the connections they held at their peak, and reports whether it did. Go
// maps never give their memory back as entries are deleted: after a SYN
// flood filled the table and Expire emptied it, the maps would keep tens of
// megabytes for good. The owner calls it after Expire (and may then return
// the freed memory to the system, runtime/debug.FreeOSMemory). It takes the
// write lock for a copy of what is left, which is small when it acts.
func (t *Table) Compact() bool {
	t.mu.RLock()
	worth := t.peak >= compactMin && t.nconns < t.peak/8
	t.mu.RUnlock()
	if !worth {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peak < compactMin || t.nconns >= t.peak/8 {
		return false
	}
	t.conns = resized(t.conns)
	t.maps = resized(t.maps)
	t.ports = resized(t.ports)
	t.peak = t.nconns
	return true
}

// resized returns a copy of m in a map sized for what it holds.
func resized[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
