package daemon

import (
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// limits are the limits of the control socket, so that no client, idle,
// slow or many, can wedge the control plane or hold the daemon's memory
// (each connection costs a goroutine and its buffers, about 20 KiB).
type limits struct {
	// read bounds reading a request, body included: a body that trickles
	// in is cut.
	read time.Duration
	// write bounds a request from the end of its header to the end of its
	// answer: more than an attach through the namespace helper takes
	// (helperTimeout). Capture streams push it forward before each write
	// (capture.go).
	write time.Duration
	// idle closes a keep-alive connection without a request.
	idle time.Duration
	// conns is how many control connections may be open at once; one
	// more closes the one idle for the longest, or, if none is idle, is
	// answered 503 with a sentence and closed.
	conns int
}

// controlLimits are the limits Serve applies; tests shorten them.
var controlLimits = limits{read: 10 * time.Second, write: 30 * time.Second, idle: 30 * time.Second, conns: 256}

// controlStats counts the control socket's connections and what its cap
// did to them (api.ControlStats).
type controlStats struct {
	open       atomic.Int64  // connections open now
	idleClosed atomic.Uint64 // closed, idle the longest, to make room
	refused    atomic.Uint64 // answered 503, every one being busy
}

// stats returns the counters as the API shows them.
func (s *controlStats) stats() api.ControlStats {
	return api.ControlStats{Connections: s.open.Load(), IdleClosed: s.idleClosed.Load(), Refused: s.refused.Load()}
}

// newControlServer returns the HTTP server of the control API with lim.
func newControlServer(h http.Handler, lim limits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.read,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    16 << 10,
	}
}

// limitListener caps the connections it hands out at max. Past it, the
// connection that has waited longest without a request in progress (idle
// keep-alive, or never sent anything) is closed to make room, so that idle
// clients, however many, cannot lock others out; when every connection has
// a request in progress, the new one is answered with a 503 and closed at
// once, without a goroutine of the server. connState must be the server's
// ConnState hook.
type limitListener struct {
	net.Listener
	max int
	st  *controlStats

	mu   sync.Mutex // guards open, idle and full
	open int
	idle map[*limitConn]time.Time // connections without a request in progress, since when
	// full is set when the cap was reached; when three quarters of the
	// connections have closed, the memory they held is returned to the
	// system.
	full bool
}

// newLimitListener caps ln at max connections and counts in st what it
// does.
func newLimitListener(ln net.Listener, max int, st *controlStats) *limitListener {
	return &limitListener{Listener: ln, max: max, st: st, idle: map[*limitConn]time.Time{}}
}

// refusal is the answer to a connection past a cap of max.
func refusal(max int) []byte {
	body := fmt.Sprintf(`{"message":"too many control connections (%d with a request in progress); try again later"}`+"\n", max)
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body)
}

// Accept returns the next connection under the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.full = true
			if victim := l.oldestIdleLocked(); victim != nil {
				delete(l.idle, victim)
				l.mu.Unlock()
				l.st.idleClosed.Add(1)
				victim.Close() // gives its place back
				l.mu.Lock()
			}
		}
		if l.open < l.max {
			l.open++
			l.st.open.Add(1)
			l.mu.Unlock()
			return &limitConn{Conn: c, l: l}, nil
		}
		l.mu.Unlock()
		l.st.refused.Add(1)
		// The answer fits in the socket buffer: the write does not wait
		// for the client to read.
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(refusal(l.max))
		c.Close()
	}
}

// oldestIdleLocked returns the connection idle for the longest, or nil.
// l.mu is held.
func (l *limitListener) oldestIdleLocked() *limitConn {
	var old *limitConn
	var since time.Time
	for c, t := range l.idle {
		if old == nil || t.Before(since) {
			old, since = c, t
		}
	}
	return old
}

// connState follows the connections' states (http.Server.ConnState).
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.closed {
		return
	}
	switch s {
	case http.StateNew, http.StateIdle:
		l.idle[lc] = time.Now()
	default:
		delete(l.idle, lc)
	}
}

// limitConn gives its place back to the listener when closed.
type limitConn struct {
	net.Conn
	l      *limitListener
	closed bool // guarded by l.mu
}

func (c *limitConn) Close() error {
	c.l.mu.Lock()
	free := false
	if !c.closed {
		c.closed = true
		c.l.open--
		c.l.st.open.Add(-1)
		delete(c.l.idle, c)
		if c.l.open <= c.l.max/4 && c.l.full {
			c.l.full, free = false, true
		}
	}
	c.l.mu.Unlock()
	if free {
		// A flood of connections is over: the Go runtime would keep their
		// buffers' pages for minutes. A second later, so that the tail of
		// the flood has closed too and its goroutines (their stacks) are
		// gone: the collection then frees all of it.
		time.AfterFunc(time.Second, debug.FreeOSMemory)
	}
	return c.Conn.Close()
}
