package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/net/bpf"
)

// Defaults for Config.
const (
	// DefaultSnaplen is the most bytes of a frame kept, tcpdump's default:
	// enough for a 64 KiB GSO super-frame with its headers.
	DefaultSnaplen = 262144
	// DefaultSlots is the number of records for frames up to SmallRecord
	// bytes (2 MiB in all).
	DefaultSlots = 1024
	// DefaultBigSlots is the number of records for larger frames: GSO
	// super-frames and jumbo frames (about 2 MiB in all).
	DefaultBigSlots = 32
	// SmallRecord is the size of a small record: a 1500-byte-MTU frame
	// with a VLAN tag fits.
	SmallRecord = 2048
	// bigRecord is the size of a big record: the largest frame a port may
	// carry (a 64 KiB GSO super-frame with its Ethernet and VLAN headers).
	bigRecord = 14 + 4 + 65535
)

// ErrClosed is returned by Session.Next once the session is closed.
var ErrClosed = errors.New("capture session closed")

// Config configures a Session. The zero value captures every frame.
type Config struct {
	// Filter is a tcpdump-style expression (see ParseFilter); empty means
	// every frame.
	Filter string
	// Snaplen is the most bytes kept of each frame; 0 means DefaultSnaplen.
	Snaplen int
	// Slots and BigSlots are the numbers of preallocated records for
	// frames up to SmallRecord bytes and for larger ones; 0 means
	// DefaultSlots and DefaultBigSlots. They bound how far the reader may
	// fall behind before frames are dropped, and the session's memory.
	Slots, BigSlots int
}

// Record is one captured frame. It belongs to the session: give it back
// with Session.Release once written.
type Record struct {
	Time  int64     // when the frame crossed the point, Unix nanoseconds
	Iface int       // index of the point in the session (Session.Interfaces)
	Dir   Direction // which way it crossed
	Len   int       // the frame's length on the wire
	Data  []byte    // the frame, at most Snaplen bytes of it

	buf []byte
	big bool
}

// Interface is a point as a session sees it.
type Interface struct {
	Name string
	Link LinkType
}

// InterfaceStats are a session's counters for one of its points.
type InterfaceStats struct {
	Interface
	// Received counts frames that crossed the point and passed the
	// filter while the session was attached.
	Received uint64
	// Dropped counts those of them lost because no record was free: the
	// reader was too slow.
	Dropped uint64
}

// Session receives copies of the frames that pass its filter at the points
// it is attached to. Its methods are safe for concurrent use; Next and
// Release are meant for one reader.
type Session struct {
	filter  *Filter
	snaplen int

	// small and big hold the free records; queue the captured ones. queue
	// has room for every record, so a send to it never blocks. None of
	// them is ever closed: a frame in flight may still be delivered after
	// Close.
	small, big chan *Record
	queue      chan *Record
	done       chan struct{}
	closeOnce  sync.Once

	mu   sync.Mutex // guards subs
	subs []*sub
}

// sub is a session's attachment to one point.
type sub struct {
	s        *Session
	p        *Point
	iface    Interface
	index    int
	vm       *bpf.VM // nil: no filter
	received atomic.Uint64
	dropped  atomic.Uint64
}

// NewSession checks cfg (a bad filter is an error wrapping ErrBadFilter) and
// preallocates the session's records.
func NewSession(cfg Config) (*Session, error) {
	f, err := ParseFilter(cfg.Filter)
	if err != nil {
		return nil, err
	}
	if cfg.Snaplen < 0 || cfg.Slots < 0 || cfg.BigSlots < 0 {
		return nil, fmt.Errorf("capture: snaplen and slots must not be negative")
	}
	cfg.Snaplen = cmp.Or(cfg.Snaplen, DefaultSnaplen)
	cfg.Slots = cmp.Or(cfg.Slots, DefaultSlots)
	cfg.BigSlots = cmp.Or(cfg.BigSlots, DefaultBigSlots)
	s := &Session{
		filter:  f,
		snaplen: cfg.Snaplen,
		small:   make(chan *Record, cfg.Slots),
		big:     make(chan *Record, cfg.BigSlots),
		queue:   make(chan *Record, cfg.Slots+cfg.BigSlots),
		done:    make(chan struct{}),
	}
	for range cfg.Slots {
		s.small <- &Record{buf: make([]byte, SmallRecord)}
	}
	bigSize := min(bigRecord, cfg.Snaplen)
	for range cfg.BigSlots {
		s.big <- &Record{buf: make([]byte, bigSize), big: true}
	}
	return s, nil
}

// Filter returns the session's filter.
func (s *Session) Filter() *Filter { return s.filter }

// Attach starts capturing at p, under name. It returns the index of the
// point among the session's interfaces (Record.Iface).
func (s *Session) Attach(p *Point, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return 0, ErrClosed
	default:
	}
	sb := &sub{s: s, p: p, iface: Interface{Name: name, Link: p.linkType()}, index: len(s.subs)}
	if !s.filter.Empty() {
		prog, err := s.filter.Compile(sb.iface.Link, uint32(s.snaplen))
		if err != nil {
			return 0, err
		}
		if sb.vm, err = bpf.NewVM(prog); err != nil {
			return 0, fmt.Errorf("capture: filter %q: %w", s.filter, err)
		}
	}
	s.subs = append(s.subs, sb)
	p.attach(sb)
	return sb.index, nil
}

// Interfaces lists the points the session is attached to, in the order of
// their indexes.
func (s *Session) Interfaces() []Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Interface, len(s.subs))
	for i, sb := range s.subs {
		out[i] = sb.iface
	}
	return out
}

// Stats returns the session's counters per interface.
func (s *Session) Stats() []InterfaceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InterfaceStats, len(s.subs))
	for i, sb := range s.subs {
		out[i] = InterfaceStats{Interface: sb.iface, Received: sb.received.Load(), Dropped: sb.dropped.Load()}
	}
	return out
}

// Next returns the next captured record, waiting for one. It returns
// ErrClosed once the session is closed, or ctx's error.
func (s *Session) Next(ctx context.Context) (*Record, error) {
	select {
	case r := <-s.queue:
		return r, nil
	default:
	}
	select {
	case r := <-s.queue:
		return r, nil
	case <-s.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TryNext returns the next captured record if one is waiting, or nil.
func (s *Session) TryNext() *Record {
	select {
	case r := <-s.queue:
		return r
	default:
		return nil
	}
}

// Release gives r back to the session; r must not be used afterwards.
func (s *Session) Release(r *Record) {
	r.Data = nil
	if r.big {
		s.big <- r
	} else {
		s.small <- r
	}
}

// Close detaches the session from its points. Frames captured but not yet
// read can still be taken with TryNext; Next returns ErrClosed. It is safe
// to call more than once.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, sb := range s.subs {
			sb.p.detach(sb)
		}
		close(s.done)
	})
}

// Done is closed when the session is closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// deliver runs on the datapath: filter, then copy into a free record, or
// count a drop. It never blocks and allocates nothing.
func (sb *sub) deliver(ts int64, dir Direction, frame []byte) {
	keep := len(frame)
	if sb.vm != nil {
		n, err := sb.vm.Run(frame)
		if err != nil || n == 0 {
			return
		}
		keep = min(keep, n)
	}
	s := sb.s
	keep = min(keep, s.snaplen)
	sb.received.Add(1)
	free := s.small
	if keep > SmallRecord {
		free = s.big
	}
	var r *Record
	select {
	case r = <-free:
	default:
		sb.dropped.Add(1)
		sb.p.dropped.Add(1)
		return
	}
	r.Data = r.buf[:copy(r.buf[:min(keep, len(r.buf))], frame)]
	r.Time, r.Iface, r.Dir, r.Len = ts, sb.index, dir, len(frame)
	select {
	case s.queue <- r:
		sb.p.captured.Add(1)
	default:
		// Cannot happen: queue has room for every record.
		free <- r
		sb.dropped.Add(1)
		sb.p.dropped.Add(1)
	}
}
