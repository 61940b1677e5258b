package capture

import (
	"sync"
	"sync/atomic"
	"time"
)

// Direction says which way a frame crossed a point.
type Direction uint8

// Directions, seen from the switch's side of a point, as tcpdump sees them on
// the host end of a veth: In is a frame the switch received from the port
// (the container sent it), Out a frame the switch sent to the port.
const (
	DirUnknown Direction = iota
	In
	Out
)

// String returns "in", "out" or "unknown".
func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "unknown"
}

// LinkType is a pcap link type (https://www.tcpdump.org/linktypes.html).
type LinkType uint16

// The link types a Point can carry.
const (
	// LinkEthernet (LINKTYPE_ETHERNET, DLT_EN10MB): Ethernet frames.
	LinkEthernet LinkType = 1
	// LinkRaw (LINKTYPE_RAW): IPv4 or IPv6 packets with no link header,
	// for points that carry packets rather than frames.
	LinkRaw LinkType = 101
)

// Point is a place where frames can be captured. The zero value is an
// Ethernet point with no session attached, ready to use; set Link before the
// point is first attached if it carries IP packets instead. A Point must not
// be copied after first use.
type Point struct {
	// Link is the kind of frame the point carries; zero means LinkEthernet.
	Link LinkType

	// subs is the sessions attached to the point, replaced whole on change;
	// nil when there is none, so that Deliver costs one atomic load.
	subs atomic.Pointer[[]*sub]
	mu   sync.Mutex // guards changes to subs

	captured atomic.Uint64 // frames copied to a session, over all sessions
	dropped  atomic.Uint64 // frames a session wanted but had no room for
}

// Deliver offers frame, which crossed the point in direction dir, to the
// sessions attached to it. frame starts at the Ethernet header (at the IP
// header for a LinkRaw point). Deliver never blocks and never keeps frame:
// a session copies what it wants. It is safe for concurrent use. With no
// session attached it is one atomic load.
func (p *Point) Deliver(dir Direction, frame []byte) {
	if s := p.subs.Load(); s != nil {
		deliver(s, dir, frame)
	}
}

// deliver is Deliver's slow path, kept apart so that Deliver is inlined.
func deliver(subs *[]*sub, dir Direction, frame []byte) {
	ts := time.Now().UnixNano()
	for _, sb := range *subs {
		sb.deliver(ts, dir, frame)
	}
}

// Active reports whether a session is attached to the point.
func (p *Point) Active() bool { return p.subs.Load() != nil }

// PointStats are a point's capture counters, over every session it has had.
type PointStats struct {
	Captured uint64 // frames copied to a session
	Dropped  uint64 // frames lost because a session's reader was too slow
}

// Stats returns the point's counters.
func (p *Point) Stats() PointStats {
	return PointStats{Captured: p.captured.Load(), Dropped: p.dropped.Load()}
}

func (p *Point) linkType() LinkType {
	if p.Link == 0 {
		return LinkEthernet
	}
	return p.Link
}

func (p *Point) attach(sb *sub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next []*sub
	if old := p.subs.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, sb)
	p.subs.Store(&next)
}

func (p *Point) detach(sb *sub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.subs.Load()
	if old == nil {
		return
	}
	var next []*sub
	for _, q := range *old {
		if q != sb {
			next = append(next, q)
		}
	}
	if len(next) == 0 {
		p.subs.Store(nil)
		return
	}
	p.subs.Store(&next)
}
