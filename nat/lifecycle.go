package nat

import (
	"net/netip"
)

// removeLocked removes c from the table.
func (t *Table) removeLocked(c *conn) {
	if c.dead {
		return
	}
	c.dead = true
	delete(t.conns, keyOf(c.orig, c.origSide))
	delete(t.conns, keyOf(c.reply, c.replySide))
	if c.list != nil {
		c.list.remove(c)
	}
	for _, m := range c.maps {
		if m != nil {
			m.refs--
			t.releaseIfUnusedLocked(m)
		}
	}
	t.nconns--
	t.entries[protoIndex(c.orig.Proto)].Add(-1)
}

// drainClosingLocked moves the connections that started closing to the
// closing list.
func (t *Table) drainClosingLocked() {
	var rev *conn
	for c := t.closingHead.Swap(nil); c != nil; {
		next := c.closingNext
		c.closingNext = rev
		rev = c
		c = next
	}
	for c := rev; c != nil; { // oldest push first
		next := c.closingNext
		c.closingNext = nil
		c.flags.And(^uint32(fQueued))
		if !c.dead && c.list != &t.closing && c.flags.Load()&fClosing != 0 {
			c.list.remove(c)
			t.closing.pushBack(c)
		}
		c = next
	}
}

// evictOneLocked evicts a closing connection, else the oldest one not yet
// assured, and reports whether it found one. Amortized O(1): a connection
// moves from cand to kept at most once.
func (t *Table) evictOneLocked() bool {
	t.drainClosingLocked()
	for c := t.closing.head; c != nil; c = t.closing.head {
		if c.flags.Load()&fClosing != 0 {
			t.removeLocked(c)
			t.evicted.Add(1)
			return true
		}
		t.closing.remove(c) // reopened (a new SYN): not closing any more
		t.cand.pushBack(c)
	}
	for c := t.cand.head; c != nil; c = t.cand.head {
		if evictable(c.orig.Proto, c.flags.Load()) {
			t.removeLocked(c)
			t.evicted.Add(1)
			return true
		}
		t.cand.remove(c)
		t.kept.pushBack(c)
	}
	return false
}

// mappingLocked returns the mapping of an internal endpoint, creating it

// expireBatch is how many connections Expire removes per write lock.
const expireBatch = 1024

// Expire removes the connections idle for longer than their timeout at now
// and returns how many. The owner calls it periodically (every few seconds
// is plenty: an idle entry only costs memory until then). It scans under
// the read lock and takes the write lock only to remove what it found, 1024
// entries at a time. Whether the table is under pressure is decided once,
// at the start: the embryonic TCP connections of a flood all go together.
func (t *Table) Expire(now int64) int {
	var dead []*conn
	pressure := t.underPressure(now)
	t.mu.RLock()
	for _, l := range []*connList{&t.cand, &t.kept, &t.closing} {
		for c := l.head; c != nil; c = c.next {
			if t.expired(c, now, pressure) {
				dead = append(dead, c)
			}
		}
	}
	t.mu.RUnlock()
	if len(dead) == 0 {
		return 0
	}
	n := 0
	for len(dead) > 0 {
		// In batches, so that packets creating connections do not
		// wait for the removal of a million entries.
		batch := dead[:min(len(dead), expireBatch)]
		dead = dead[len(batch):]
		t.mu.Lock()
		for _, c := range batch {
			if !c.dead && t.expired(c, now, pressure) { // not refreshed meanwhile
				t.removeLocked(c)
				n++
			}
		}
		t.mu.Unlock()
	}
	t.nexpired.Add(uint64(n))
	return n
}

func (t *Table) expired(c *conn, now int64, pressure bool) bool {
	return now-c.lastSeen.Load() > int64(t.timeoutOf(c, c.flags.Load(), pressure))
}

// Flush removes every connection and returns how many.
func (t *Table) Flush() int {
	return t.flush(func(*conn) bool { return true })
}

// FlushAddr removes the connections whose original or reply tuple has a as
// source or destination (the connections of a detached container) and
// returns how many.
func (t *Table) FlushAddr(a netip.Addr) int {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return t.flush(func(c *conn) bool {
		return c.orig.Src.Addr == b || c.orig.Dst.Addr == b || c.reply.Src.Addr == b || c.reply.Dst.Addr == b
	})
}

func (t *Table) flush(match func(*conn) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drainClosingLocked()
	n := 0
	for _, l := range []*connList{&t.cand, &t.kept, &t.closing} {
		for c := l.head; c != nil; {
			next := c.next
			if match(c) {
				t.removeLocked(c)
				n++
			}
			c = next
		}
	}
	t.flushed.Add(uint64(n))
	return n
}

// Entries returns the connections, oldest first within each class, with the
