package host

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// flowKey names a flow: an IPv4 NAT mapping by its mapped port or
// identifier (addr zero), or an IPv6 container's source address and port
// or identifier (IPv6 comes untranslated).
type flowKey struct {
	addr [16]byte
	port uint16
}

// flow is a host socket of one NAT mapping: a UDP socket for a mapped
// source port, or an ICMP echo socket for a mapped identifier (for IPv6,
// of a container's address and port or identifier).
type flow struct {
	key  flowKey
	conn io.Closer    // *net.UDPConn or *icmp.PacketConn
	last atomic.Int64 // Uplink.clock of the last datagram either way
}

// touch records a datagram at now (Uplink.clock). It writes only when the
// clock has moved since the last one: datagrams of a busy flow, sent and
// received on two goroutines, do not each write the shared word.
func (f *flow) touch(now int64) {
	if f.last.Load() != now {
		f.last.Store(now)
	}
}

// flows are the sockets of one protocol by mapping.
type flows struct {
	proto int
	mu    sync.RWMutex // guards m
	m     map[flowKey]*flow
}

func (fs *flows) init(proto int) {
	fs.proto = proto
	fs.m = map[flowKey]*flow{}
}

// get returns the flow of key, or nil.
func (fs *flows) get(key flowKey) *flow {
	fs.mu.RLock()
	f := fs.m[key]
	fs.mu.RUnlock()
	return f
}

// add stores f unless a flow of its key exists or the set holds max
// flows; it returns the flow to use and whether f was stored.
func (fs *flows) add(f *flow, max int) (*flow, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if g := fs.m[f.key]; g != nil {
		return g, false
	}
	if len(fs.m) >= max {
		return nil, false
	}
	fs.m[f.key] = f
	return f, true
}

// remove forgets f if it is still the flow of its key.
func (fs *flows) remove(f *flow) {
	fs.mu.Lock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	fs.mu.Unlock()
}

// expire closes the flows idle for longer than timeout at now (their
// stamps may lag the time by one tick of the clock: the caller adds it);
// their readers remove them.
func (fs *flows) expire(now time.Time, timeout time.Duration) {
	limit := now.Add(-timeout).UnixNano()
	var idle []*flow
	fs.mu.RLock()
	for _, f := range fs.m {
		if f.last.Load() < limit {
			idle = append(idle, f)
		}
	}
	fs.mu.RUnlock()
	for _, f := range idle {
		fs.remove(f)
		f.conn.Close()
	}
}

// startFlow stores the new flow f in fs (which holds at most max) and runs
// read, its socket's reader, on a goroutine of its own with a pooled buffer,
// counted in open and total; when read returns, the flow leaves fs and its
// socket is closed. If fs already has a flow of f's key (another goroutine opened it
// first), f's socket is closed and that flow is returned; past max, or once
// the uplink is closed, f's socket is closed and nil returned.
func (u *Uplink) startFlow(fs *flows, f *flow, max int, open, total *atomic.Uint64, read func(b []byte)) *flow {
	f.touch(u.clock())
	got, added := fs.add(f, max)
	if !added {
		f.conn.Close()
		return got
	}
	if u.isClosed() {
		fs.remove(f)
		f.conn.Close()
		return nil
	}
	open.Add(1)
	total.Add(1)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer open.Add(^uint64(0))
		defer fs.remove(f)
		defer f.conn.Close()
		bp := u.getBuf()
		defer u.putBuf(bp)
		read(*bp)
	}()
	return f
}

// closeAll closes every flow.
func (fs *flows) closeAll() {
	fs.mu.Lock()
	all := fs.m
	fs.m = map[flowKey]*flow{}
	fs.mu.Unlock()
	for _, f := range all {
		f.conn.Close()
	}
}
