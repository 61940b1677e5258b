package fdb

// Eviction when the table is full.
//
// The Linux bridge refuses to learn past its limit (max_learned, Linux
// 6.7+, counted in num_learned, the new address is not learned and frames to
// it are flooded) and has no total bound otherwise. Open vSwitch evicts: when
// its MAC table is full (mac-table-size), mac_learning_insert evicts the
// least recently used entry of the port holding the most entries
// (evict_mac_entry_fairly), so one port flooding random source addresses
// fills only its own share and the other ports' stations stay learned.
//
// This table does what OVS does with the total bound (MaxEntries) and what
// the Linux bridge does with the per-port one (MaxPerPort, refused and
// counted as LimitPort): a new MAC that finds the table full evicts the
// oldest dynamic entry (the first learned or moved to it; refreshes do not
// reorder, as they take no write lock) of the port with the most dynamic
// entries, the lowest port ID on a tie, and is learned; [Stats].Evicted
// counts it. A table full of static entries still refuses (LimitTotal).
// Eviction is O(ports) and allocates nothing.

// order lists the dynamic entries of one port, oldest first, through their
// prev and next fields.
type order struct{ head, tail *entry }

// linkLocked appends the dynamic entry e to the list of its port. t.mu must
// be held for writing.
func (t *Table) linkLocked(e *entry) {
	o := t.order[e.port]
	if o == nil {
		o = &order{}
		t.order[e.port] = o
	}
	e.prev, e.next = o.tail, nil
	if o.tail != nil {
		o.tail.next = e
	} else {
		o.head = e
	}
	o.tail = e
}

// unlinkLocked takes the dynamic entry e off the list of its port. t.mu must
// be held for writing.
func (t *Table) unlinkLocked(e *entry) {
	o := t.order[e.port]
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		o.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		o.tail = e.prev
	}
	e.prev, e.next = nil, nil
	if o.head == nil {
		delete(t.order, e.port)
	}
}

// evictLocked removes the oldest dynamic entry of the port holding the most
// dynamic entries (see above) and reports whether there was one. t.mu must
// be held for writing.
func (t *Table) evictLocked() bool {
	victim, most := NoPort, 0
	for p, n := range t.perPort {
		if n > most || n == most && p < victim {
			victim, most = p, n
		}
	}
	if most == 0 {
		return false
	}
	e := t.order[victim].head
	t.removeLocked(e.ik, e)
	t.evicted.Add(1)
	return true
}
