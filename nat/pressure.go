package nat

// PressureFraction is how full the table must be, as a fraction of
// MaxEntries, for TCP connections not yet established to time out after
// Timeouts.TCPPressure instead of TCPTransitory.
const PressureFraction = 0.5

// underPressure reports whether the table holds more than PressureFraction
// of MaxEntries connections. It takes no lock.
func (t *Table) underPressure() bool {
	n := t.entries[0].Load() + t.entries[1].Load() + t.entries[2].Load()
	return float64(n) > PressureFraction*float64(t.cfg.MaxEntries)
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
