package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

// Table is the connection tracking table and translator. Create it with New.
// It is safe for concurrent use (see the package doc).
type Table struct {
	cfg  Config
	ext  netip.Addr // Config.External
	ext6 netip.Addr // Config.External6; zero without IPv6
	tmo  Timeouts

	// mu guards conns, conns6, maps, ports, pubs and the lists.
	// Translating a packet of a known connection holds the read side
	// only.
	mu      sync.RWMutex
	conns   map[key]ref  // IPv4 tuples
	conns6  map[key6]ref // IPv6 tuples
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
	entries6                            [3]atomic.Int64 // of entries, the IPv6 ones
	pressure                            atomic.Bool     // see underPressure
	pressureUntil                       atomic.Int64    // the pressure lasts at least until then
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
// External is inside Internal, External6 and Internal6 are not both IPv6
// (or both zero), External6 is inside Internal6 or not a unicast address,
// or the port range is empty.
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
	if err := config6(&cfg); err != nil {
		return nil, err
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
		cfg:    cfg,
		ext:    ext,
		ext6:   cfg.External6,
		tmo:    cfg.Timeouts,
		conns:  make(map[key]ref),
		conns6: make(map[key6]ref),
		maps:   make(map[mapKey]*mapping),
		ports:  make(map[portKey]*mapping),
	}
	return t, nil
}

// config6 checks and normalizes the IPv6 part of cfg.
func config6(cfg *Config) error {
	ext, in := cfg.External6, cfg.Internal6
	if !ext.IsValid() && !in.IsValid() {
		return nil
	}
	if !in.IsValid() || !in.Addr().Is6() || in.Addr().Is4In6() {
		return fmt.Errorf("%w: internal6 prefix %v is not an IPv6 prefix", ErrConfig, cfg.Internal6)
	}
	if !ext.Is6() || ext.Is4In6() || ext.Zone() != "" || !unicast(ext) {
		return fmt.Errorf("%w: external6 address %v is not an IPv6 unicast address", ErrConfig, cfg.External6)
	}
	cfg.Internal6 = in.Masked()
	if cfg.Internal6.Contains(ext) {
		return fmt.Errorf("%w: external6 address %s is inside the internal6 prefix %s", ErrConfig, ext, cfg.Internal6)
	}
	return nil
}

// Config returns the configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// isInternal reports whether a is in the containers' subnet of its family.
func (t *Table) isInternal(a netip.Addr) bool {
	if a.Is4() {
		return t.cfg.Internal.Contains(a)
	}
	return t.cfg.Internal6.Contains(a) // false for the zero Internal6
}

// extOf returns the external address of the family of a tuple (zero for
// IPv6 without Config.External6).
func (t *Table) extOf(tp Tuple) netip.Addr {
	if tp.Is6() {
		return t.ext6
	}
	return t.ext
}

// isICMP reports whether p is ICMP or ICMPv6.
func isICMP(p Proto) bool { return p == ICMP || p == ICMPv6 }

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

// lookupParsed returns the connection of the parsed packet p arriving on
// side s, holding the read lock only for the map access: for IPv4 with
// the key parse packed, no conversion of the Tuple's addresses.
func (t *Table) lookupParsed(p *parsed, s side) ref {
	if p.v6 {
		return t.lookup(&p.t, s)
	}
	k := p.k
	k[1] = byte(s)
	t.mu.RLock()
	r := t.conns[k]
	t.mu.RUnlock()
	return r
}

// lookup returns the connection of tuple tp arriving on side s, holding
// the read lock only for the map access.
func (t *Table) lookup(tp *Tuple, s side) ref {
	t.mu.RLock()
	r, _ := t.getLocked(tp, s)
	t.mu.RUnlock()
	return r
}

// FromInternal translates pkt, an IPv4 or IPv6 packet (header first, no Ethernet) that a
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
	ext := t.extOf(p.t)
	if !t.isInternal(p.t.Src.Addr) || (t.isInternal(p.t.Dst.Addr) && p.t.Dst.Addr != ext) || !unicast(p.t.Dst.Addr) {
		return t.drop(DropNotInternal)
	}
	if p.laterFrag {
		return t.fragment(pkt, sideInternal, now)
	}
	if p.icmpErr {
		return t.icmpError(pkt, &p, sideInternal, csumPartial)
	}
	if r := t.lookupParsed(&p, sideInternal); r.c != nil {
		return t.apply(r, pkt, &p, csumPartial, now)
	}
	return t.newFromInternal(pkt, &p, csumPartial, now)
}

// FromExternal translates pkt, an IPv4 or IPv6 packet that arrived at the
// uplink for the external address of its family: a reply of a tracked connection (filtered per
// Config), a new connection to a published port (DNAT, the client's address
// kept) or, with endpoint-independent filtering, to a live mapping, or an ICMP
// error about a tracked connection (RFC 5508 REQ-3). It rewrites pkt in place
// and returns ToInternal or Drop. The arguments are as for FromInternal.
func (t *Table) FromExternal(pkt []byte, csumPartial bool, now int64) Result {
	var p parsed
	if r := p.parse(pkt); r != DropNone {
		return t.drop(r)
	}
	ext := t.extOf(p.t)
	if !ext.IsValid() || p.t.Dst.Addr != ext || t.isInternal(p.t.Src.Addr) || !unicast(p.t.Src.Addr) || p.t.Src.Addr == ext {
		return t.drop(DropNotExternal)
	}
	if p.laterFrag {
		return t.fragment(pkt, sideExternal, now)
	}
	if p.icmpErr {
		return t.icmpError(pkt, &p, sideExternal, csumPartial)
	}
	if isICMP(p.proto) && p.icmpType != echoReply(p.proto) {
		return t.drop(DropICMPType)
	}
	if r := t.lookupParsed(&p, sideExternal); r.c != nil {
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
