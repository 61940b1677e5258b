package fdb

import "fmt"

// checkInvariants checks, under the read lock, that the bookkeeping agrees
// with the entries: per-port counts and the static count are exact, no
// limit is exceeded, and Len is len(m).
func (t *Table) checkInvariants() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	counts := make(map[PortID]int)
	statics := 0
	for ik, e := range t.m {
		if e.port == NoPort {
			return fmt.Errorf("entry %v has NoPort", unpack(ik))
		}
		if e.static {
			statics++
		} else {
			counts[e.port]++
		}
	}
	if len(counts) != len(t.perPort) {
		return fmt.Errorf("per-port counts %v, want %v", t.perPort, counts)
	}
	for p, c := range counts {
		if t.perPort[p] != c {
			return fmt.Errorf("port %d count = %d, want %d", p, t.perPort[p], c)
		}
		if c > t.maxPerPort {
			return fmt.Errorf("port %d has %d dynamic entries, over MaxPerPort %d", p, c, t.maxPerPort)
		}
	}
	if statics != t.statics {
		return fmt.Errorf("static count = %d, want %d", t.statics, statics)
	}
	if n := t.n.Load(); n != int64(len(t.m)) {
		return fmt.Errorf("Len() = %d, want %d", n, len(t.m))
	}
	if len(t.m) > t.maxEntries {
		return fmt.Errorf("%d entries, over MaxEntries %d", len(t.m), t.maxEntries)
	}
	// The eviction lists hold exactly the dynamic entries of their port.
	if len(t.order) != len(counts) {
		return fmt.Errorf("%d eviction lists, want one for each of %d ports", len(t.order), len(counts))
	}
	for p, o := range t.order {
		n := 0
		var prev *entry
		for e := o.head; e != nil; prev, e = e, e.next {
			if e.prev != prev || e.port != p || e.static || t.m[e.ik] != e {
				return fmt.Errorf("eviction list of port %d is broken at %v", p, unpack(e.ik))
			}
			n++
		}
		if o.tail != prev || n != counts[p] {
			return fmt.Errorf("eviction list of port %d: %d entries, want %d", p, n, counts[p])
		}
	}
	return nil
}
