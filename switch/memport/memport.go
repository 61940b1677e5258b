// Package memport implements an in-memory vswitch.Port for tests: frames are
// injected into the switch and collected from it through channels.
package memport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// ErrQueueFull is returned by Write when the port's outbound queue is full.
var ErrQueueFull = errors.New("memport: queue full")

// ErrGone is returned by Read after Vanish, as a TAP returns an error when
// its device or namespace is deleted.
var ErrGone = errors.New("memport: port gone")

// ErrFailing is returned by Write while the port has been told to fail.
var ErrFailing = errors.New("memport: failing on purpose")

// Port is an in-memory port. Frames given to Inject come out of Read (to the
// switch); frames the switch writes are copied and delivered to Recv. It is
// safe for concurrent use.
type Port struct {
	name   string
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
	gone   chan struct{}
	vanish sync.Once
	fail   atomic.Bool

	offloads vswitch.Offloads // set before AddPort, read by it
}

var _ vswitch.Port = (*Port)(nil)

// New returns a port whose queues hold queue frames each.
func New(name string, queue int) *Port {
	return &Port{
		name:   name,
		in:     make(chan []byte, queue),
		out:    make(chan []byte, queue),
		closed: make(chan struct{}),
		gone:   make(chan struct{}),
	}
}

// WithHdr returns eth with a zero virtio_net_hdr in front, the form Inject
// takes.
func WithHdr(eth []byte) []byte {
	return append(make([]byte, vswitch.VnetHdrLen, vswitch.VnetHdrLen+len(eth)), eth...)
}

// Inject queues frame (virtio_net_hdr included) to be read by the switch.
// The port takes ownership of frame.
func (p *Port) Inject(frame []byte) error {
	// Closed wins even when the queue has room.
	select {
	case <-p.closed:
		return fmt.Errorf("memport %s: %w", p.name, net.ErrClosed)
	default:
	}
	select {
	case <-p.closed:
		return fmt.Errorf("memport %s: %w", p.name, net.ErrClosed)
	case p.in <- frame:
		return nil
	}
}

// Recv returns the next frame the switch wrote to the port (virtio_net_hdr
// included), or false if none arrives within wait.
func (p *Port) Recv(wait time.Duration) ([]byte, bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case f := <-p.out:
		return f, true
	case <-t.C:
		return nil, false
	}
}

// SetOffloads sets the offloads the port says it accepts on Write
// (vswitch.Offloader); none by default. Call it before adding the port to a
// switch, which reads it once.
func (p *Port) SetOffloads(o vswitch.Offloads) { p.offloads = o }

// Offloads implements vswitch.Offloader.
func (p *Port) Offloads() vswitch.Offloads { return p.offloads }

// Fail makes every later Write fail (true) or succeed again (false).
func (p *Port) Fail(on bool) { p.fail.Store(on) }

// Vanish makes Read fail with ErrGone, as if the device behind the port had
// been deleted.
func (p *Port) Vanish() { p.vanish.Do(func() { close(p.gone) }) }

// Read implements vswitch.Port.
func (p *Port) Read(buf []byte, offset int) (int, error) {
	select {
	case <-p.gone:
		return 0, ErrGone
	case <-p.closed:
		return 0, fmt.Errorf("memport %s: %w", p.name, net.ErrClosed)
	case f := <-p.in:
		return copy(buf[offset:], f), nil
	}
}

// Write implements vswitch.Port.
func (p *Port) Write(buf []byte, offset int) (int, error) {
	select {
	case <-p.closed:
		return 0, fmt.Errorf("memport %s: %w", p.name, net.ErrClosed)
	default:
	}
	if p.fail.Load() {
		return 0, ErrFailing
	}
	f := append([]byte(nil), buf[offset:]...)
	select {
	case p.out <- f:
		return len(f), nil
	default:
		return 0, ErrQueueFull
	}
}

// Close implements vswitch.Port.
func (p *Port) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// Name implements vswitch.Port.
func (p *Port) Name() string { return p.name }
