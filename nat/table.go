package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

// side is where a packet arrives from.
type side uint8

const (
	sideInternal side = iota
	sideExternal
)

// key is the conntrack map key: a tuple and the side its packets arrive on,
// packed into a fixed-size array (protocol, side, source address and port,
// destination address and port), so a lookup allocates nothing and hashes
// one block of memory.
type key [16]byte // 14 bytes used; 16 so the map hashes and compares it as two words

func keyOf(t Tuple, s side) key {
	var k key
	k[0], k[1] = byte(t.Proto), byte(s)
	copy(k[2:6], t.Src.Addr[:])
	binary.BigEndian.PutUint16(k[6:], t.Src.Port)
	copy(k[8:12], t.Dst.Addr[:])
	binary.BigEndian.PutUint16(k[12:], t.Dst.Port)
	return k
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

// portKey names an external port of a protocol.
type portKey struct {
	proto Proto
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
// It is safe for concurrent use (see the package doc).
type Table struct {
	cfg     Config
	ext     [4]byte
	netAddr [4]byte // Internal's network address, masked
	netMask [4]byte
	tmo     Timeouts

	// mu guards conns, maps, ports, pubs and the lists. Translating a
	// packet of a known connection holds the read side only.
	mu      sync.RWMutex
	conns   map[key]ref
	maps    map[mapKey]*mapping
	ports   map[portKey]*mapping
	pubs    []Publish // sorted; replaced, never modified in place
	cand    connList  // not yet assured, oldest first (some may have become assured since)
	kept    connList  // assured when last looked at
	closing connList  // closing, in the order they were noticed
	nconns  int

	// closingHead is a lock-free stack of connections that started closing
	// since the last eviction; pushed by packets, drained under mu.
	closingHead atomic.Pointer[conn]

	entries                             [3]atomic.Int64
	nmaps                               atomic.Int64
	created, nexpired, evicted, refused atomic.Uint64
	flushed                             atomic.Uint64
	outPkts, inPkts, icmpErrs           atomic.Uint64
	fragsTranslated                     atomic.Uint64
	frags                               fragTable
	drops                               [numDropReasons]atomic.Uint64
}

// New returns an empty table for cfg, with defaults filled in. It fails
// (wrapping ErrConfig) when External or Internal is missing or not IPv4,
// External is inside Internal, or the port range is empty.
func New(cfg Config) (*Table, error) {
	ext := cfg.External.Unmap()
	if !ext.Is4() || ext.IsUnspecified() {
		return nil, fmt.Errorf("%w: external address %v is not an IPv4 unicast address", ErrConfig, cfg.External)
	}
	cfg.External = ext
	in := cfg.Internal
	if !in.IsValid() || !in.Addr().Is4() {
		return nil, fmt.Errorf("%w: internal prefix %v is not an IPv4 prefix", ErrConfig, cfg.Internal)
	}
	in = in.Masked()
	cfg.Internal = in
	if in.Contains(ext) {
		return nil, fmt.Errorf("%w: external address %s is inside the internal prefix %s", ErrConfig, ext, in)
	}
	if cfg.PortMin == 0 {
		cfg.PortMin = DefaultPortMin
	}
	if cfg.PortMax == 0 {
		cfg.PortMax = DefaultPortMax
	}
	if cfg.PortMax < cfg.PortMin {
		return nil, fmt.Errorf("%w: port range %d-%d is empty", ErrConfig, cfg.PortMin, cfg.PortMax)
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeouts.TCPEstablished, DefaultTCPEstablished)
	def(&cfg.Timeouts.TCPTransitory, DefaultTCPTransitory)
	def(&cfg.Timeouts.UDP, DefaultUDP)
	def(&cfg.Timeouts.UDPUnreplied, DefaultUDPUnreplied)
	def(&cfg.Timeouts.ICMP, DefaultICMP)
	t := &Table{
		cfg:     cfg,
		ext:     ext.As4(),
		netAddr: in.Addr().As4(),
		tmo:     cfg.Timeouts,
		conns:   make(map[key]ref),
		maps:    make(map[mapKey]*mapping),
		ports:   make(map[portKey]*mapping),
	}
	mask := ^uint32(0) << (32 - in.Bits())
	if in.Bits() == 0 {
		mask = 0
	}
	binary.BigEndian.PutUint32(t.netMask[:], mask)
	return t, nil
}

// Config returns the configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

func (t *Table) isInternal(a [4]byte) bool {
	for i := range a {
		if a[i]&t.netMask[i] != t.netAddr[i] {
			return false
		}
	}
	return true
}

func protoIndex(p Proto) int {
	switch p {
	case TCP:
		return 0
	case UDP:
		return 1
	}
	return 2
}

func (t *Table) drop(r DropReason) Result {
	t.drops[r].Add(1)
	return Result{Action: Drop, Reason: r}
}

// timeoutOf returns the idle timeout of c in its current state.
func (t *Table) timeoutOf(c *conn, f uint32) time.Duration {
	switch c.orig.Proto {
	case TCP:
		if f&fClosing == 0 && f&fEstablished != 0 {
			return t.tmo.TCPEstablished
		}
		return t.tmo.TCPTransitory
	case UDP:
		if f&fReplied != 0 {
			return t.tmo.UDP
		}
		return t.tmo.UDPUnreplied
	}
	return t.tmo.ICMP
}

// assured reports whether a connection with flags f is past its opening:
// TCP established, UDP and ICMP replied.
func assured(proto Proto, f uint32) bool {
	if proto == TCP {
		return f&fEstablished != 0
	}
	return f&fReplied != 0
}

// evictable reports whether a connection may be evicted when the table is
// full: closing, or not assured.
func evictable(proto Proto, f uint32) bool {
	return f&fClosing != 0 || !assured(proto, f)
}

// seen records a packet of direction dir: counters, last-seen time, flags.
// It allocates nothing and takes no lock.
func (t *Table) seen(c *conn, dir uint8, p *parsed, now int64) {
	c.packets[dir].Add(1)
	c.bytes[dir].Add(uint64(p.totalLen))
	if c.lastSeen.Load() < now {
		c.lastSeen.Store(now)
	}
	var bits uint32
	if dir == dirReply {
		bits = fReplied
	}
	if p.proto == TCP {
		fl := p.tcpFlags
		if dir == dirOrig && fl&(tcpSYN|tcpACK|tcpRST) == tcpSYN {
			// A new SYN on a closing connection: the tuple is reused
			// (TIME_WAIT reopened), the state starts over. The
			// translation is the same.
			for f := c.flags.Load(); f&fClosing != 0; f = c.flags.Load() {
				if c.flags.CompareAndSwap(f, f&fQueued|fSynOrig) {
					break
				}
			}
		}
		if fl&tcpSYN != 0 {
			bits |= fSynOrig << dir
		}
		if fl&tcpFIN != 0 {
			bits |= fFinOrig << dir
		}
		if fl&tcpRST != 0 {
			bits |= fRst
		}
		if dir == dirOrig && fl&tcpACK != 0 && fl&(tcpSYN|tcpRST) == 0 && c.flags.Load()&fSynReply != 0 {
			bits |= fEstablished
		}
	}
	f := c.flags.Load()
	if bits&^f == 0 {
		return
	}
	old := c.flags.Or(bits)
	if old&fClosing == 0 && bits&fClosing != 0 && c.flags.Or(fQueued)&fQueued == 0 {
		// This goroutine moved c to closing and c is not on the
		// stack: push it for eviction.
		for {
			h := t.closingHead.Load()
			c.closingNext = h
			if t.closingHead.CompareAndSwap(h, c) {
				break
			}
		}
	}
}

// lookup returns the connection of k, holding the read lock only for the
// map access.
func (t *Table) lookup(k key) ref {
	t.mu.RLock()
	r := t.conns[k]
	t.mu.RUnlock()
	return r
}

// FromInternal translates pkt, an IPv4 packet (header first, no Ethernet) that a
// container sent to the gateway for a destination outside the containers'
// subnet, including the external address itself (hairpin). It rewrites pkt
// in place and returns where it goes: ToExternal (masqueraded, RFC 4787
// REQ-1), ToInternal (hairpinned to a container, or an ICMP error about a
// connection from outside), or Drop. csumPartial says the L4 checksum field
// holds only the pseudo-header sum (virtio NEEDS_CSUM); now is the time in
// nanoseconds on the caller's monotonic clock. It allocates nothing for a
// packet of a known connection. pkt is not retained.
//
// An ICMP echo request to the external address itself is not translated
// (DropNoFlow): the caller answers it if it wants to.
func (t *Table) FromInternal(pkt []byte, csumPartial bool, now int64) Result {
	var p parsed
	if r := p.parse(pkt); r != DropNone {
		return t.drop(r)
	}
	if !t.isInternal(p.t.Src.Addr) || (t.isInternal(p.t.Dst.Addr) && p.t.Dst.Addr != t.ext) || !unicast(p.t.Dst.Addr) {
		return t.drop(DropNotInternal)
	}
	if p.laterFrag {
		return t.fragment(pkt, sideInternal, now)
	}
	if p.icmpErr {
		return t.icmpError(pkt, &p, sideInternal, csumPartial)
	}
	if r := t.lookup(keyOf(p.t, sideInternal)); r.c != nil {
		return t.apply(r, pkt, &p, csumPartial, now)
	}
	return t.newFromInternal(pkt, &p, csumPartial, now)
}

// FromExternal translates pkt, an IPv4 packet that arrived at the uplink for
// the external address: a reply of a tracked connection (filtered per
// Config), a new connection to a published port (DNAT, the client's address
// kept) or, with endpoint-independent filtering, to a live mapping, or an ICMP
// error about a tracked connection (RFC 5508 REQ-3). It rewrites pkt in place
// and returns ToInternal or Drop. The arguments are as for FromInternal.
func (t *Table) FromExternal(pkt []byte, csumPartial bool, now int64) Result {
	var p parsed
	if r := p.parse(pkt); r != DropNone {
		return t.drop(r)
	}
	if p.t.Dst.Addr != t.ext || t.isInternal(p.t.Src.Addr) || !unicast(p.t.Src.Addr) || p.t.Src.Addr == t.ext {
		return t.drop(DropNotExternal)
	}
	if p.laterFrag {
		return t.fragment(pkt, sideExternal, now)
	}
	if p.icmpErr {
		return t.icmpError(pkt, &p, sideExternal, csumPartial)
	}
	if p.proto == ICMP && p.icmpType != icmpEchoReply {
		return t.drop(DropICMPType)
	}
	if r := t.lookup(keyOf(p.t, sideExternal)); r.c != nil {
		return t.apply(r, pkt, &p, csumPartial, now)
	}
	return t.newFromExternal(pkt, &p, csumPartial, now)
}

// apply translates a packet of a known connection.
func (t *Table) apply(r ref, pkt []byte, p *parsed, partial bool, now int64) Result {
	t.seen(r.c, r.dir, p, now)
	return t.translate(pkt, p, r.c, r.dir, partial, now, false)
}

// translate rewrites a packet of direction dir of c, remembering a first
// fragment's translation for the fragments that follow.
func (t *Table) translate(pkt []byte, p *parsed, c *conn, dir uint8, partial bool, now int64, isNew bool) Result {
	x := &c.x[dir]
	if p.firstFrag {
		s := c.origSide
		if dir == dirReply {
			s = c.replySide
		}
		t.frags.remember(pkt, s, x, now)
	}
	rewrite(pkt, p, x, partial)
	return t.done(x.action, isNew)
}

func (t *Table) done(a Action, isNew bool) Result {
	if a == ToExternal {
		t.outPkts.Add(1)
	} else {
		t.inPkts.Add(1)
	}
	return Result{Action: a, New: isNew}
}

// newFromInternal creates a connection for a packet from a container.
func (t *Table) newFromInternal(pkt []byte, p *parsed, partial bool, now int64) Result {
	if r := newFlowCheck(p); r != DropNone {
		return t.drop(r)
	}
	t.mu.Lock()
	if r, ok := t.conns[keyOf(p.t, sideInternal)]; ok { // created meanwhile
		t.mu.Unlock()
		return t.apply(r, pkt, p, partial, now)
	}
	var c *conn
	var reason DropReason
	if p.t.Dst.Addr == t.ext {
		c, reason = t.newHairpinLocked(p, now)
	} else {
		c, reason = t.newOutboundLocked(p, now)
	}
	t.mu.Unlock()
	if c == nil {
		return t.drop(reason)
	}
	t.seen(c, dirOrig, p, now)
	return t.translate(pkt, p, c, dirOrig, partial, now, true)
}

// newFromExternal creates a connection for a packet from outside.
func (t *Table) newFromExternal(pkt []byte, p *parsed, partial bool, now int64) Result {
	if r := newFlowCheck(p); r != DropNone {
		if r == DropICMPType || p.proto == ICMP {
			r = DropNoFlow
		}
		return t.drop(r)
	}
	t.mu.Lock()
	if r, ok := t.conns[keyOf(p.t, sideExternal)]; ok {
		t.mu.Unlock()
		return t.apply(r, pkt, p, partial, now)
	}
	var target Endpoint
	var m *mapping
	if pub := t.publishForLocked(p.proto, p.t.Dst.Port); pub != nil {
		target = Endpoint{Addr: pub.Target.As4(), Port: pub.TargetPort + (p.t.Dst.Port - pub.HostPort)}
	} else if m = t.ports[portKey{p.proto, p.t.Dst.Port}]; m != nil && t.cfg.EndpointIndependentFiltering {
		target = m.internal
	} else {
		t.mu.Unlock()
		if m != nil {
			return t.drop(DropFiltered)
		}
		return t.drop(DropNoFlow)
	}
	if !t.roomLocked() {
		t.mu.Unlock()
		return t.drop(DropTableFull)
	}
	if m != nil { // the eviction may have ended the mapping
		if m = t.ports[portKey{p.proto, p.t.Dst.Port}]; m == nil {
			t.mu.Unlock()
			return t.drop(DropNoFlow)
		}
		target = m.internal
	}
	reply := Tuple{Proto: p.proto, Src: target, Dst: p.t.Src}
	c, reason := t.insertLocked(p.t, sideExternal, reply, sideInternal, m, nil, now)
	t.mu.Unlock()
	if c == nil {
		return t.drop(reason)
	}
	t.seen(c, dirOrig, p, now)
	return t.translate(pkt, p, c, dirOrig, partial, now, true)
}

// newFlowCheck says whether a packet may open a connection.
func newFlowCheck(p *parsed) DropReason {
	switch p.proto {
	case TCP:
		if p.tcpFlags&(tcpSYN|tcpACK|tcpRST) != tcpSYN {
			return DropTCPNoSyn
		}
	case ICMP:
		if p.icmpType != icmpEchoRequest {
			return DropICMPType
		}
	}
	return DropNone
}

// newOutboundLocked creates a masqueraded connection: the source becomes the
// external address and the source's mapped port.
func (t *Table) newOutboundLocked(p *parsed, now int64) (*conn, DropReason) {
	if !t.roomLocked() {
		return nil, DropTableFull
	}
	m, r := t.mappingLocked(p.proto, p.t.Src)
	if m == nil {
		return nil, r
	}
	// For ICMP the reply tuple's destination port is the identifier, as
	// an echo reply carries it.
	reply := Tuple{Proto: p.proto, Src: p.t.Dst, Dst: Endpoint{Addr: t.ext, Port: m.port}}
	return t.insertLocked(p.t, sideInternal, reply, sideExternal, m, nil, now)
}

// newHairpinLocked creates a connection from a container to the external
// address: to a published port, or with endpoint-independent filtering to
// another mapping. Both source and destination are translated (RFC 4787
// REQ-9, RFC 5382 REQ-8).
func (t *Table) newHairpinLocked(p *parsed, now int64) (*conn, DropReason) {
	var target Endpoint
	var tm *mapping
	if p.proto == ICMP {
		return nil, DropNoFlow
	}
	if pub := t.publishForLocked(p.proto, p.t.Dst.Port); pub != nil {
		target = Endpoint{Addr: pub.Target.As4(), Port: pub.TargetPort + (p.t.Dst.Port - pub.HostPort)}
	} else if tm = t.ports[portKey{p.proto, p.t.Dst.Port}]; tm != nil && t.cfg.EndpointIndependentFiltering {
		target = tm.internal
	} else if tm != nil {
		return nil, DropFiltered
	} else {
		return nil, DropNoFlow
	}
	if !t.roomLocked() {
		return nil, DropTableFull
	}
	if tm != nil { // the eviction may have ended the mapping
		if tm = t.ports[portKey{p.proto, p.t.Dst.Port}]; tm == nil {
			return nil, DropNoFlow
		}
		target = tm.internal
	}
	m, r := t.mappingLocked(p.proto, p.t.Src)
	if m == nil {
		return nil, r
	}
	reply := Tuple{Proto: p.proto, Src: target, Dst: Endpoint{Addr: t.ext, Port: m.port}}
	return t.insertLocked(p.t, sideInternal, reply, sideInternal, m, tm, now)
}

// roomLocked makes room for a new connection, evicting one when the table
// is full, and reports whether there is room (a refusal is counted). It is
// called before the new connection's mappings are looked up, since an
// eviction can end a mapping.
func (t *Table) roomLocked() bool {
	if t.nconns < t.cfg.MaxEntries || t.evictOneLocked() {
		return true
	}
	t.refused.Add(1)
	return false
}

// insertLocked creates and inserts a connection; the caller made room. m0
// and m1 are mappings the connection holds (or nil).
func (t *Table) insertLocked(orig Tuple, os side, reply Tuple, rs side, m0, m1 *mapping, now int64) (*conn, DropReason) {
	if _, taken := t.conns[keyOf(reply, rs)]; taken || keyOf(reply, rs) == keyOf(orig, os) {
		// The reply tuple belongs to another connection, or is the
		// original tuple (an endpoint hairpinned to its own mapping):
		// possible only with contrived hairpins; refuse.
		t.releaseIfUnusedLocked(m0)
		return nil, DropNoFlow
	}
	c := &conn{orig: orig, reply: reply, origSide: os, replySide: rs, created: now}
	c.lastSeen.Store(now)
	// A packet of the original direction becomes the inverse of the reply
	// tuple, and the other way round.
	c.x[dirOrig] = newXlate(orig, reply.Reverse(), rs)
	c.x[dirReply] = newXlate(reply, orig.Reverse(), os)
	c.maps = [2]*mapping{m0, m1}
	for _, m := range c.maps {
		if m != nil {
			m.refs++
		}
	}
	t.conns[keyOf(orig, os)] = ref{c, dirOrig}
	t.conns[keyOf(reply, rs)] = ref{c, dirReply}
	t.cand.pushBack(c)
	t.nconns++
	t.entries[protoIndex(orig.Proto)].Add(1)
	t.created.Add(1)
	return c, DropNone
}

func newXlate(from, to Tuple, dest side) xlate {
	x := xlate{src: to.Src, dst: to.Dst, action: ToExternal}
	if dest == sideInternal {
		x.action = ToInternal
	}
	x.ipDelta = checksum.DeltaAddr4(from.Src.Addr, to.Src.Addr) + checksum.DeltaAddr4(from.Dst.Addr, to.Dst.Addr)
	x.portDelta = checksum.Delta16(from.Src.Port, to.Src.Port) + checksum.Delta16(from.Dst.Port, to.Dst.Port)
	return x
}

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
// (port preservation first, then the range) when there is none.
func (t *Table) mappingLocked(proto Proto, in Endpoint) (*mapping, DropReason) {
	if m := t.maps[mapKey{proto, in}]; m != nil {
		return m, DropNone
	}
	port, ok := t.pickPortLocked(proto, in)
	if !ok {
		return nil, DropNoPort
	}
	m := &mapping{proto: proto, internal: in, port: port}
	t.maps[mapKey{proto, in}] = m
	t.ports[portKey{proto, port}] = m
	t.nmaps.Add(1)
	return m, DropNone
}

// releaseIfUnusedLocked removes m when no connection holds it.
func (t *Table) releaseIfUnusedLocked(m *mapping) {
	if m == nil || m.refs > 0 {
		return
	}
	if t.maps[mapKey{m.proto, m.internal}] == m {
		delete(t.maps, mapKey{m.proto, m.internal})
		delete(t.ports, portKey{m.proto, m.port})
		t.nmaps.Add(-1)
	}
}

func (t *Table) portFreeLocked(proto Proto, port uint16) bool {
	if port == 0 || t.ports[portKey{proto, port}] != nil {
		return false
	}
	return proto == ICMP || t.publishForLocked(proto, port) == nil
}

// pickPortLocked chooses the external port of a new mapping: the internal
// port if free (port preservation), else a free one in the range after a
// start derived from the endpoint, staying below 1024 for a source below
// 1024 when the range reaches there, and at or above 1024 otherwise (RFC
// 4787 REQ-3), and of the source port's parity when one is free (REQ-4).
func (t *Table) pickPortLocked(proto Proto, in Endpoint) (uint16, bool) {
	if t.portFreeLocked(proto, in.Port) {
		return in.Port, true
	}
	lo, hi := max(t.cfg.PortMin, 1), t.cfg.PortMax
	h := uint32(in.Port)*2654435761 ^ binary.BigEndian.Uint32(in.Addr[:])*40503
	var ranges [3][2]uint16
	n := 0
	if in.Port < 1024 {
		if lo < 1024 {
			ranges[n] = [2]uint16{lo, min(hi, 1023)}
			n++
		}
	} else if hi >= 1024 {
		ranges[n] = [2]uint16{max(lo, 1024), hi}
		n++
	}
	ranges[n] = [2]uint16{lo, hi}
	n++
	for _, r := range ranges[:n] {
		for _, parity := range []bool{true, false} {
			if p, ok := t.scanLocked(proto, r[0], r[1], h, parity, in.Port&1); ok {
				return p, true
			}
		}
	}
	return 0, false
}

// scanLocked returns the first free port of [lo, hi] after a start derived
// from h; with sameParity only ports whose low bit is bit.
func (t *Table) scanLocked(proto Proto, lo, hi uint16, h uint32, sameParity bool, bit uint16) (uint16, bool) {
	if lo > hi {
		return 0, false
	}
	n := uint32(hi-lo) + 1
	start := h % n
	for i := range n {
		p := lo + uint16((start+i)%n)
		if sameParity && p&1 != bit {
			continue
		}
		if t.portFreeLocked(proto, p) {
			return p, true
		}
	}
	return 0, false
}

// expireBatch is how many connections Expire removes per write lock.
const expireBatch = 1024

// Expire removes the connections idle for longer than their timeout at now
// and returns how many. The owner calls it periodically (every few seconds
// is plenty: an idle entry only costs memory until then). It scans under
// the read lock and takes the write lock only to remove what it found, 1024
// entries at a time.
func (t *Table) Expire(now int64) int {
	var dead []*conn
	t.mu.RLock()
	for _, l := range []*connList{&t.cand, &t.kept, &t.closing} {
		for c := l.head; c != nil; c = c.next {
			if t.expired(c, now) {
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
			if !c.dead && t.expired(c, now) { // not refreshed meanwhile
				t.removeLocked(c)
				n++
			}
		}
		t.mu.Unlock()
	}
	t.nexpired.Add(uint64(n))
	return n
}

func (t *Table) expired(c *conn, now int64) bool {
	return now-c.lastSeen.Load() > int64(t.timeoutOf(c, c.flags.Load()))
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
// timeout left at now: what `tapswitch conntrack` lists.
func (t *Table) Entries(now int64) []Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Entry, 0, t.nconns)
	for _, l := range []*connList{&t.cand, &t.kept, &t.closing} {
		for c := l.head; c != nil; c = c.next {
			f := c.flags.Load()
			out = append(out, Entry{
				Proto:        c.orig.Proto,
				State:        stateName(c.orig.Proto, f),
				Orig:         c.orig,
				Reply:        c.reply,
				Timeout:      time.Duration(c.lastSeen.Load() + int64(t.timeoutOf(c, f)) - now),
				Age:          time.Duration(now - c.created),
				OrigPackets:  c.packets[dirOrig].Load(),
				OrigBytes:    c.bytes[dirOrig].Load(),
				ReplyPackets: c.packets[dirReply].Load(),
				ReplyBytes:   c.bytes[dirReply].Load(),
				Replied:      f&fReplied != 0,
			})
		}
	}
	return out
}

func stateName(p Proto, f uint32) string {
	if p != TCP {
		if f&fReplied != 0 {
			return "REPLIED"
		}
		return "UNREPLIED"
	}
	switch {
	case f&fRst != 0:
		return "CLOSE"
	case f&fFinOrig != 0 && f&fFinReply != 0:
		return "TIME_WAIT"
	case f&fFinOrig != 0:
		return "FIN_WAIT"
	case f&fFinReply != 0:
		return "CLOSE_WAIT"
	case f&fEstablished != 0:
		return "ESTABLISHED"
	case f&fSynReply != 0:
		return "SYN_RECV"
	}
	return "SYN_SENT"
}

// Len returns the number of connections.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nconns
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	s := Stats{
		Mappings:      uint64(t.nmaps.Load()),
		Created:       t.created.Load(),
		Expired:       t.nexpired.Load(),
		Evicted:       t.evicted.Load(),
		Refused:       t.refused.Load(),
		Flushed:       t.flushed.Load(),
		TranslatedOut: t.outPkts.Load(),
		TranslatedIn:  t.inPkts.Load(),
		ICMPErrors:    t.icmpErrs.Load(),
		Fragments:     t.fragsTranslated.Load(),
	}
	for i := range s.Entries {
		s.Entries[i] = uint64(t.entries[i].Load())
	}
	for i := range s.Drops {
		s.Drops[i] = t.drops[i].Load()
	}
	return s
}
