package nat

import (
	"encoding/binary"
	"sync/atomic"
)

// side is where a packet arrives from.
type side uint8

const (
	sideInternal side = iota
	sideExternal
)

// key is the conntrack map key of an IPv4 tuple: the tuple and the side
// its packets arrive on, packed into a fixed-size array (protocol, side,
// source address and port, destination address and port), so a lookup
// allocates nothing and hashes one block of memory.
type key [16]byte // 14 bytes used; 16 so the map hashes and compares it as two words

// key6 is key for an IPv6 tuple, in a map of its own (Table.conns6), so
// that IPv4 keys stay 16 bytes: the same fields with 16-byte addresses.
type key6 [40]byte // 38 bytes used; 40 so the map hashes and compares it as five words

// keyOf returns the key of an IPv4 tuple t.
func keyOf(t *Tuple, s side) key {
	var k key
	src, dst := t.Src.Addr.As4(), t.Dst.Addr.As4()
	putKey(k[:], t, s, src[:], dst[:])
	return k
}

// key6Of returns the key of an IPv6 tuple t.
func key6Of(t *Tuple, s side) key6 {
	var k key6
	src, dst := t.Src.Addr.As16(), t.Dst.Addr.As16()
	putKey(k[:], t, s, src[:], dst[:])
	return k
}

// putKey writes the fields of a key or key6 into k: the protocol, the
// side, then the source and destination, each an address (src and dst,
// 4 or 16 bytes) and t's port.
func putKey(k []byte, t *Tuple, s side, src, dst []byte) {
	n := len(src)
	k[0], k[1] = byte(t.Proto), byte(s)
	copy(k[2:], src)
	binary.BigEndian.PutUint16(k[2+n:], t.Src.Port)
	copy(k[4+n:], dst)
	binary.BigEndian.PutUint16(k[4+2*n:], t.Dst.Port)
}

// getLocked returns the connection of tuple t arriving on side s. t.mu is
// held (either side).
func (t *Table) getLocked(tp *Tuple, s side) (ref, bool) {
	if tp.Is6() {
		r, ok := t.conns6[key6Of(tp, s)]
		return r, ok
	}
	r, ok := t.conns[keyOf(tp, s)]
	return r, ok
}

// putLocked records r under tuple tp arriving on side s. t.mu is held.
func (t *Table) putLocked(tp *Tuple, s side, r ref) {
	if tp.Is6() {
		t.conns6[key6Of(tp, s)] = r
	} else {
		t.conns[keyOf(tp, s)] = r
	}
}

// deleteLocked removes tuple tp arriving on side s. t.mu is held.
func (t *Table) deleteLocked(tp *Tuple, s side) {
	if tp.Is6() {
		delete(t.conns6, key6Of(tp, s))
	} else {
		delete(t.conns, keyOf(tp, s))
	}
}

// ref is a map value: the connection and which of its directions the key is.
type ref struct {
	c   *conn
	dir uint8 // dirOrig or dirReply
}

const (
	dirOrig  = 0
	dirReply = 1
)

// xlate is the rewrite of one direction of a connection: the new addresses
// and ports, and their RFC 1624 checksum deltas, computed once when the
// connection is created.
type xlate struct {
	src, dst  Endpoint
	ipDelta   uint32 // the address words: IPv4 header and pseudo-header
	portDelta uint32 // the port words (ICMP: identifier)
	action    Action
}

// Connection flags, set with atomic Or (they only ever get set).
const (
	fReplied     = 1 << iota // a packet was seen in the reply direction
	fSynOrig                 // TCP SYN from the originator
	fSynReply                // TCP SYN from the responder (SYN-ACK)
	fEstablished             // TCP: the originator acknowledged the responder's SYN
	fFinOrig                 // TCP FIN from the originator
	fFinReply                // TCP FIN from the responder
	fRst                     // TCP RST seen
	fQueued                  // on Table.closingHead's stack (cleared when drained)
	fClosing     = fFinOrig | fFinReply | fRst
)

// conn is a tracked connection.
type conn struct {
	// What a packet of a known connection touches comes first, in the
	// first two cache lines.
	x        [2]xlate // [dirOrig], [dirReply]; immutable
	lastSeen atomic.Int64
	flags    atomic.Uint32
	packets  [2]atomic.Uint64
	bytes    [2]atomic.Uint64

	// Immutable after creation.
	orig, reply         Tuple
	origSide, replySide side
	maps                [2]*mapping // mappings this connection holds (nil when none)
	created             int64

	// closingNext links the lock-free stack of connections that started
	// closing; written once by the goroutine that pushes the connection.
	closingNext *conn

	// Guarded by Table.mu (write side).
	list       *connList
	prev, next *conn
	dead       bool
}

// connList is an intrusive doubly linked list of connections, oldest first.
type connList struct {
	head, tail *conn
	n          int
}

func (l *connList) pushBack(c *conn) {
	c.list, c.prev, c.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
	l.n++
}

func (l *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.list, c.prev, c.next = nil, nil, nil
	l.n--
}

// portKey names an external port of a protocol on the external address
// of a family (IPv4 and IPv6 mappings have a port space each).
type portKey struct {
	proto Proto
	v6    bool
	port  uint16
}

// mapKey names an internal endpoint of a protocol.
type mapKey struct {
	proto Proto
	ep    Endpoint
}

// mapping is an endpoint-independent mapping: internal endpoint <-> external
// port. Guarded by Table.mu.
type mapping struct {
	proto    Proto
	internal Endpoint
	port     uint16
	refs     int
}

// Table is the connection tracking table and translator. Create it with New.
