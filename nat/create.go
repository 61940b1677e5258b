package nat

import (
	"github.com/tapswitch/tapswitch/internal/checksum"
	"github.com/tapswitch/tapswitch/wire"
)

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
	target, m, reason := t.targetLocked(p.proto, p.t.Dst.Port)
	if reason != DropNone {
		t.mu.Unlock()
		return t.drop(reason)
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
		if p.tcpFlags&(wire.TCPFlagSYN|wire.TCPFlagACK|wire.TCPFlagRST) != wire.TCPFlagSYN {
			return DropTCPNoSyn
		}
	case ICMP:
		if p.icmpType != wire.ICMPEchoRequest {
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
	if p.proto == ICMP {
		return nil, DropNoFlow
	}
	target, tm, r := t.targetLocked(p.proto, p.t.Dst.Port)
	if r != DropNone {
		return nil, r
	}
	m, r := t.mappingLocked(p.proto, p.t.Src)
	if m == nil {
		return nil, r
	}
	reply := Tuple{Proto: p.proto, Src: target, Dst: Endpoint{Addr: t.ext, Port: m.port}}
	return t.insertLocked(p.t, sideInternal, reply, sideInternal, m, tm, now)
}

// targetLocked resolves the target of a new connection to the external
// address's port: a published port's target, or, with endpoint-independent
// filtering, the internal endpoint of the mapping that holds the port, which
// it returns too (the connection will hold it). Without either the packet is
// dropped (DropFiltered when a mapping holds the port, DropNoFlow when none
// does). It then makes room for the connection (roomLocked) and looks the
// mapping up again, since the eviction may have ended it.
func (t *Table) targetLocked(proto Proto, port uint16) (Endpoint, *mapping, DropReason) {
	var target Endpoint
	var m *mapping
	if pub := t.publishForLocked(proto, port); pub != nil {
		target = Endpoint{Addr: pub.Target.As4(), Port: pub.TargetPort + (port - pub.HostPort)}
	} else if m = t.ports[portKey{proto, port}]; m == nil {
		return Endpoint{}, nil, DropNoFlow
	} else if !t.cfg.EndpointIndependentFiltering {
		return Endpoint{}, nil, DropFiltered
	}
	if !t.roomLocked() {
		return Endpoint{}, nil, DropTableFull
	}
	if m != nil { // the eviction may have ended the mapping
		if m = t.ports[portKey{proto, port}]; m == nil {
			return Endpoint{}, nil, DropNoFlow
		}
		target = m.internal
	}
	return target, m, DropNone
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
	t.peak = max(t.peak, t.nconns)
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
