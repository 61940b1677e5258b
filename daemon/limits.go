package daemon

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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
	// more is answered 503 with a sentence and closed.
	conns int
}

// controlLimits are the limits Serve applies; tests shorten them.
var controlLimits = limits{read: 10 * time.Second, write: 30 * time.Second, idle: 30 * time.Second, conns: 256}

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

// limitListener caps the connections it hands out at max: past it, a
// connection is answered with a 503 and closed at once, without a goroutine
// of the server.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

// refusal is the answer to a connection past a cap of max.
func refusal(max int64) []byte {
	body := fmt.Sprintf(`{"message":"too many control connections (%d open); close idle ones or try again later"}`+"\n", max)
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
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		// The answer fits in the socket buffer: the write does not wait
		// for the client to read.
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(refusal(l.max))
		c.Close()
	}
}

// limitConn gives its place back to the listener when closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
