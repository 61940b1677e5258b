package nat

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

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
	peak    int // the most connections since the maps were last made (Compact)

	// closingHead is a lock-free stack of connections that started closing
	// since the last eviction; pushed by packets, drained under mu.
	closingHead atomic.Pointer[conn]

	entries                             [3]atomic.Int64
	pressure                            atomic.Bool  // see underPressure
	pressureUntil                       atomic.Int64 // the pressure lasts at least until then
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
	def(&cfg.Timeouts.TCPPressure, DefaultTCPPressure)
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

// timeoutOf returns the idle timeout of c in its current state, the table
// being under pressure or not (underPressure).
func (t *Table) timeoutOf(c *conn, f uint32, pressure bool) time.Duration {
	switch c.orig.Proto {
	case TCP:
		if f&fClosing == 0 && f&fEstablished != 0 {
			return t.tmo.TCPEstablished
		}
		if f&fClosing == 0 && pressure {
			return min(t.tmo.TCPPressure, t.tmo.TCPTransitory)
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
		if dir == dirOrig && fl&(wire.TCPFlagSYN|wire.TCPFlagACK|wire.TCPFlagRST) == wire.TCPFlagSYN {
			// A new SYN on a closing connection: the tuple is reused
			// (TIME_WAIT reopened), the state starts over. The
			// translation is the same.
			for f := c.flags.Load(); f&fClosing != 0; f = c.flags.Load() {
				if c.flags.CompareAndSwap(f, f&fQueued|fSynOrig) {
					break
				}
			}
		}
		if fl&wire.TCPFlagSYN != 0 {
			bits |= fSynOrig << dir
		}
		if fl&wire.TCPFlagFIN != 0 {
			bits |= fFinOrig << dir
		}
		if fl&wire.TCPFlagRST != 0 {
			bits |= fRst
		}
		if dir == dirOrig && fl&wire.TCPFlagACK != 0 && fl&(wire.TCPFlagSYN|wire.TCPFlagRST) == 0 && c.flags.Load()&fSynReply != 0 {
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
	if p.proto == ICMP && p.icmpType != wire.ICMPEchoReply {
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
