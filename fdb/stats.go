package fdb

// Stats are the table's counters. Every field is read atomically, but the
// fields are not one consistent snapshot of each other.
type Stats struct {
	Entries int // entries in the table now, aged ones not yet expired included
	Static  int // static entries among them

	Learned         uint64 // new dynamic entries
	Moved           uint64 // MACs moved to another port by Learn
	Aged            uint64 // dynamic entries removed because they aged
	Flushed         uint64 // entries (dynamic and static) removed by FlushPort
	Ignored         uint64 // Learn calls with a multicast or zero source, or NoPort
	LimitPort       uint64 // Learn calls refused by MaxPerPort
	LimitTotal      uint64 // Learn calls refused by MaxEntries (a table full of static entries)
	Evicted         uint64 // dynamic entries evicted to learn a new MAC in a full table
	StaticConflicts uint64 // Learn calls that would have moved a static entry
}

// Stats returns the table's counters, each read atomically. Static is read
// under the read lock.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	static := t.statics
	t.mu.RUnlock()
	return Stats{
		Entries:         t.Len(),
		Static:          static,
		Learned:         t.learned.Load(),
		Moved:           t.moved.Load(),
		Aged:            t.aged.Load(),
		Flushed:         t.flushed.Load(),
		Ignored:         t.ignored.Load(),
		LimitPort:       t.limitPort.Load(),
		LimitTotal:      t.limitTotal.Load(),
		Evicted:         t.evicted.Load(),
		StaticConflicts: t.staticConflicts.Load(),
	}
}

func (t *Table) countRefusal(r LearnResult) {
	switch r {
	case LimitPort:
		t.limitPort.Add(1)
	case LimitTotal:
		t.limitTotal.Add(1)
	case StaticConflict:
		t.staticConflicts.Add(1)
	}
}
