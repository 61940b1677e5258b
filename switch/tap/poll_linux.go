package tap

import (
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxPollSpin bounds SetPollSpin.
const MaxPollSpin = 10 * time.Millisecond

// pollSpin is the spin of the devices created from now on (SetPollSpin),
// in nanoseconds.
var pollSpin atomic.Int64

// SetPollSpin sets how long a Device's Read, finding no frame right after
// one, keeps trying the fd without blocking (yielding to other goroutines
// between tries) before it parks in the netpoller: an adaptive poll, which
// spins only on a port that just had traffic and so costs nothing on an
// idle one. 0, the default, parks at once. It applies to the devices
// created (Create, FromFD) after the call, and is d clamped to
// 0..MaxPollSpin.
func SetPollSpin(d time.Duration) {
	pollSpin.Store(int64(min(max(d, 0), MaxPollSpin)))
}

// spinner is a Device's adaptive poll (SetPollSpin). Its fields other than
// spin and rc belong to the one goroutine in Read.
//
// A port spins only while it is hot: its last wait for a frame, spun or
// parked, was shorter than the spin. A port whose frames come further apart
// (a ping every 10 ms, or none) parks at once, and goes hot again when a
// frame wakes it within a spin of parking. Spinning where it cannot pay is
// worse than useless: while a goroutine spins (runtime.Gosched between
// tries), its P keeps finding it runnable and does not poll the network, so
// the frame another port just got (the reply of a ping) waits for the spin
// to end.
type spinner struct {
	spin time.Duration
	rc   syscall.RawConn
	read func(fd uintptr) bool // made once: a method value per Read would allocate

	buf      []byte
	n        int
	err      error
	hot      bool
	parkedAt time.Time // when readFD last returned false
}

// initSpin sets up d's adaptive poll, if SetPollSpin asked for one.
func (d *Device) initSpin() {
	spin := time.Duration(pollSpin.Load())
	if spin == 0 {
		return
	}
	rc, err := d.f.SyscallConn()
	if err != nil {
		return // not pollable: Read parks at once
	}
	s := &spinner{spin: spin, rc: rc, hot: true}
	s.read = s.readFD
	d.spin = s
}

// readFD is the RawConn.Read callback: one read(2) and, on EAGAIN, while
// the port is hot, more tries until the spin is over; false parks the
// goroutine in the netpoller until the fd is readable, and then it is
// called again.
func (s *spinner) readFD(fd uintptr) bool {
	var start time.Time
	for {
		n, err := unix.Read(int(fd), s.buf)
		switch {
		case err == nil:
			if !s.parkedAt.IsZero() {
				// Woken by the netpoller: hot again if the frame
				// came within a spin.
				s.hot = time.Since(s.parkedAt) < s.spin
				s.parkedAt = time.Time{}
			}
			s.n, s.err = n, nil
			return true
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			s.n, s.err = 0, err
			return true
		}
		now := time.Now()
		if start.IsZero() {
			start = now
		}
		if !s.hot || now.Sub(start) >= s.spin {
			s.hot = false
			if s.parkedAt.IsZero() {
				s.parkedAt = now
			}
			return false
		}
		runtime.Gosched()
	}
}

// readSpin is Read with the adaptive poll.
func (d *Device) readSpin(buf []byte) (int, error) {
	s := d.spin
	s.buf = buf
	err := s.rc.Read(s.read)
	s.buf = nil
	if err != nil && d.closed.Load() {
		// RawConn.Read does not turn poll's "use of closed file" into
		// os.ErrClosed as File.Read does.
		err = os.ErrClosed
	}
	if err == nil {
		err = s.err
	}
	if err != nil {
		return 0, d.wrap("read", err)
	}
	return s.n, nil
}
