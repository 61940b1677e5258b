package tap

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// The io_uring backend of a Device (TAPSWITCH_TAP_IO=uring or uring-enter):
// an experiment measured against read(2)/write(2) (io_linux.go has the
// numbers).
//
// Reads: one IORING_OP_READ_MULTISHOT on the tun fd stays armed, and the
// kernel reads every frame into a buffer of a provided buffer ring and
// posts a CQE, so that under load a Read takes the next frame from shared
// memory without a system call. Read copies the frame into the caller's
// buffer (the Port contract: the caller owns buf) and gives the ring's
// buffer back at once. When the CQ is empty the reading goroutine waits:
// with "uring" it reads an eventfd registered with the ring, parked in
// Go's netpoller like today's Read; with "uring-enter" it blocks in
// io_uring_enter(min_complete 1).
//
// Writes: a second ring, filled by whichever writer holds its token (a
// compare-and-swap that no goroutine ever waits for). The holder submits
// its own frame, plus every frame queued by writers that found the token
// taken, in one io_uring_enter and waits for their completions, which a TAP
// write gives inline (the tun fd is pollable, so the kernel attempts it
// without blocking). A single frame is never held back for a batch: a
// writer without the token copies its frame into the queue and returns,
// and the holder (or the writer itself, if the holder has just left) sends
// it with the next batch. The holder's own frame is sent from the caller's
// buffer without a copy, and its error is returned; a queued frame's error
// is lost, as a drop in the receiving stack is.

// tapIO is TAPSWITCH_TAP_IO: how Devices read and write their TAP.
var tapIO = os.Getenv("TAPSWITCH_TAP_IO")

// Values of TAPSWITCH_TAP_IO.
const (
	ioReadWrite  = "read"        // read(2)/write(2), the default
	ioUring      = "uring"       // io_uring, waiting on an eventfd in the netpoller
	ioUringEnter = "uring-enter" // io_uring, waiting in io_uring_enter
	ioUringDefer = "uring-defer" // io_uring_enter on a locked thread, DEFER_TASKRUN
)

// ErrBadTapIO is returned (wrapped) by Create and FromFD when
// TAPSWITCH_TAP_IO names no backend.
var ErrBadTapIO = errors.New(`TAPSWITCH_TAP_IO must be "read", "uring" or "uring-enter"`)

const (
	uringReadBufs  = 32 // provided buffers, each uringBufSize
	uringBufSize   = (vswitch.MaxFrame + 63) &^ 63
	uringQueueLen  = 16  // frames queued by writers without the token
	uringWriteSQ   = 32  // > uringQueueLen: the holder's frame, the queue, a wake
	uringReadSQ    = 4   // the multishot read, its cancel
	uringReadCQ    = 256 // > uringReadBufs
	uringBufGroup  = 0
	uringTagRead   = 1 << 62
	uringTagWake   = uringTagRead + 1
	uringTagCancel = uringTagRead + 2
	uringTagOwn    = uringTagRead + 3 // the holder's frame; queued frames carry their index
)

// uringIO is the io_uring state of one Device.
type uringIO struct {
	tunFd int
	name  string // for errors

	closed atomic.Bool
	active atomic.Int32 // Reads in progress

	// Read side, used by the one reading goroutine (and by close once
	// it has left).
	rd      *ring
	bufs    []byte // uringReadBufs buffers of uringBufSize, mmapped
	br      []byte // the provided buffer ring, mmapped
	brTail  uint16
	armed   bool     // the multishot read is in flight
	efd     *os.File // eventfd in the netpoller; nil for uring-enter
	efdBuf  [8]byte
	readErr error // why the multishot read ended for good
	deferTR bool  // the read ring runs task work only in the reader's io_uring_enter
	locked  bool  // the reader is locked to the thread that owns the read ring

	// Write side.
	token atomic.Bool // held by the goroutine filling wr
	wr    *ring
	q     frameQueue
}

// newUringIO sets up the rings of a Device whose tun fd is fd.
func newUringIO(fd int, name string, enterWait, deferTR bool) (*uringIO, error) {
	u := &uringIO{tunFd: fd, name: name, deferTR: deferTR}
	if err := u.setup(enterWait || deferTR); err != nil {
		u.release()
		return nil, fmt.Errorf("io_uring for tap %s: %w", name, err)
	}
	return u, nil
}

func (u *uringIO) setup(enterWait bool) error {
	var err error
	var flags uint32
	if u.deferTR {
		flags = uringSetupSingleIss | uringSetupDeferTR | uringSetupRDisabled
	}
	if u.rd, err = newRing(uringReadSQ, uringReadCQ, flags); err != nil {
		return err
	}
	if u.wr, err = newRing(uringWriteSQ, 2*uringWriteSQ, 0); err != nil {
		return err
	}
	u.bufs, err = unix.Mmap(-1, 0, uringReadBufs*uringBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap read buffers: %w", err)
	}
	u.br, err = unix.Mmap(-1, 0, uringReadBufs*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap buffer ring: %w", err)
	}
	reg := uringBufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&u.br[0]))), ringEntries: uringReadBufs, bgid: uringBufGroup}
	if err := u.rd.register(uringRegisterPbufRing, unsafe.Pointer(&reg), 1); err != nil {
		return fmt.Errorf("IORING_REGISTER_PBUF_RING: %w", err)
	}
	for bid := range uint16(uringReadBufs) {
		u.putBuf(bid)
	}
	if !enterWait {
		efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
		// Non-blocking: os.NewFile puts it in the netpoller.
		u.efd = os.NewFile(uintptr(efd), "eventfd")
		if err := u.rd.register(uringRegisterEventfd, unsafe.Pointer(&efd), 1); err != nil {
			return fmt.Errorf("IORING_REGISTER_EVENTFD: %w", err)
		}
	}
	u.q.init(uringQueueLen)
	return nil
}

// putBuf gives buffer bid to the kernel (struct io_uring_buf at the ring's
// tail, then the tail, a u16 at byte 14 that overlays the first entry's
// resv field).
func (u *uringIO) putBuf(bid uint16) {
	e := u.br[uint32(u.brTail&(uringReadBufs-1))*16:]
	*(*uint64)(unsafe.Pointer(&e[0])) = uint64(uintptr(unsafe.Pointer(&u.bufs[int(bid)*uringBufSize])))
	*(*uint32)(unsafe.Pointer(&e[8])) = uringBufSize
	*(*uint16)(unsafe.Pointer(&e[12])) = bid
	u.brTail++
	// Go has no 16-bit atomic store: store the 32-bit word at byte 12,
	// the first entry's bid (written only here) and the tail.
	w := (*atomic.Uint32)(unsafe.Pointer(&u.br[12]))
	w.Store(w.Load()&0xffff | uint32(u.brTail)<<16)
}

// read is Device.Read with io_uring.
func (u *uringIO) read(p []byte) (int, error) {
	u.active.Add(1)
	defer u.active.Add(-1)
	if u.deferTR && !u.locked && !u.closed.Load() {
		// SINGLE_ISSUER: only this thread may submit to the read ring
		// from now on, and DEFER_TASKRUN runs the reads in its
		// io_uring_enter. The goroutine stays locked for its life.
		runtime.LockOSThread()
		if err := u.rd.register(uringRegisterEnable, nil, 0); err != nil {
			return 0, fmt.Errorf("IORING_REGISTER_ENABLE_RINGS: %w", err)
		}
		u.locked = true
	}
	for {
		if u.closed.Load() {
			if u.deferTR {
				u.cancelRead() // only this thread can
			}
			return 0, errClosed
		}
		if c := u.rd.peek(); c != nil {
			tag, res, flags := c.userData, c.res, c.flags
			u.rd.advance()
			if tag != uringTagRead {
				continue // a wake: look at closed again
			}
			if flags&uringCqeFMore == 0 {
				u.armed = false
			}
			if flags&uringCqeFBuffer != 0 {
				bid := uint16(flags >> 16)
				n := 0
				if res > 0 {
					n = copy(p, u.bufs[int(bid)*uringBufSize:][:res])
				}
				u.putBuf(bid)
				if n > 0 {
					return n, nil
				}
				continue
			}
			if res < 0 && res != -int32(unix.ENOBUFS) {
				// The device is gone (EBADFD) or the read was
				// cancelled by close.
				u.readErr = unix.Errno(-res)
				return 0, u.readErr
			}
			continue // out of buffers (they are back now): re-arm
		}
		if u.readErr != nil {
			return 0, u.readErr
		}
		if !u.armed {
			if err := u.arm(); err != nil {
				return 0, err
			}
			continue
		}
		if err := u.wait(); err != nil {
			return 0, err
		}
	}
}

// arm submits the multishot read.
func (u *uringIO) arm() error {
	s := u.rd.next()
	s.opcode = uringOpReadMultishot
	s.fd = int32(u.tunFd)
	s.flags = uringSqeBufferSelect
	s.bufGroup = uringBufGroup
	s.userData = uringTagRead
	n := u.rd.publish()
	for {
		_, err := u.rd.enter(n, 0, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("io_uring_enter: %w", err)
		}
		u.armed = true
		return nil
	}
}

// wait blocks until the read ring's CQ has an entry (or spuriously).
func (u *uringIO) wait() error {
	if u.efd == nil {
		_, err := u.rd.enter(0, 1, uringEnterGetEvents)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("io_uring_enter: %w", err)
		}
		return nil
	}
	// The eventfd counts CQEs posted since it was last read, stale ones
	// included: a read that returns at once only costs a look at the CQ.
	if _, err := u.efd.Read(u.efdBuf[:]); err != nil {
		return fmt.Errorf("read eventfd: %w", err)
	}
	return nil
}

// write is Device.Write with io_uring.
func (u *uringIO) write(frame []byte) (int, error) {
	if u.closed.Load() {
		return 0, errClosed
	}
	for {
		if u.token.CompareAndSwap(false, true) {
			n, err := u.submit(frame)
			u.handOff()
			return n, err
		}
		if u.q.put(frame) {
			// The holder may have left before it saw the frame.
			if u.token.CompareAndSwap(false, true) {
				u.submit(nil)
				u.handOff()
			}
			return len(frame), nil
		}
		// The queue is full: the holder is sending a batch of
		// uringQueueLen frames, tens of µs. Let it run.
		runtime.Gosched()
	}
}

// errClosed is the error of Read and Write after Close, wrapped by
// Device.wrap into net.ErrClosed.
var errClosed = os.ErrClosed

// handOff gives the token back, and takes it again to send what was queued
// meanwhile, until the queue is empty or another writer has the token.
func (u *uringIO) handOff() {
	for {
		u.token.Store(false)
		if !u.q.ready() || !u.token.CompareAndSwap(false, true) {
			return
		}
		u.submit(nil)
	}
}

// submit writes own (if not nil) and the queued frames in one
// io_uring_enter and waits for their completions. The caller holds the
// token. It returns own's result.
func (u *uringIO) submit(own []byte) (int, error) {
	var n uint32
	if own != nil {
		s := u.wr.next()
		s.opcode = uringOpWrite
		s.fd = int32(u.tunFd)
		s.addr = uint64(uintptr(unsafe.Pointer(&own[0])))
		s.len = uint32(len(own))
		s.userData = uringTagOwn
		n++
	}
	queued := uint32(0)
	for ; queued < uringQueueLen; queued++ {
		f := u.q.peek(queued)
		if f == nil {
			break
		}
		s := u.wr.next()
		s.opcode = uringOpWrite
		s.fd = int32(u.tunFd)
		s.addr = uint64(uintptr(unsafe.Pointer(&f[0])))
		s.len = uint32(len(f))
		s.userData = uint64(queued)
	}
	n += queued
	if n == 0 {
		return 0, nil
	}
	toSubmit := u.wr.publish()
	for u.wr.ready() < n {
		_, err := u.wr.enter(toSubmit, n-u.wr.ready(), uringEnterGetEvents)
		if err != nil && err != unix.EINTR {
			// Nothing was submitted (the SQ is in bad shape only if the
			// ring is): drop the batch.
			u.wr.sqLocal = u.wr.sqHead.Load()
			u.wr.sqTail.Store(u.wr.sqLocal)
			u.q.drop(queued)
			return 0, fmt.Errorf("io_uring_enter: %w", err)
		}
		toSubmit = 0
	}
	runtime.KeepAlive(own)
	var ownRes int32
	for range n {
		c := u.wr.peek()
		if c.userData == uringTagOwn {
			ownRes = c.res
		}
		u.wr.advance()
	}
	u.q.drop(queued)
	if own == nil {
		return 0, nil
	}
	if ownRes < 0 {
		return 0, unix.Errno(-ownRes)
	}
	return int(ownRes), nil
}

// close stops both rings and frees them. Called once, by Device.Close; Read
// and Write return errClosed from then on.
func (u *uringIO) close() {
	u.closed.Store(true)
	for !u.token.CompareAndSwap(false, true) {
		runtime.Gosched() // a writer is sending its batch
	}
	// Wake a waiting Read: a CQE posted into the read ring from the write
	// ring (IORING_OP_MSG_RING), which also signals the eventfd.
	if s := u.wr.next(); s != nil {
		s.opcode = uringOpMsgRing
		s.fd = int32(u.rd.fd)
		s.off = uringTagWake
		s.userData = uringTagWake
		n := u.wr.publish()
		for u.wr.ready() == 0 {
			if _, err := u.wr.enter(n, 1, uringEnterGetEvents); err != nil && err != unix.EINTR {
				break
			}
			n = 0
		}
	}
	for u.active.Load() != 0 {
		runtime.Gosched()
	}
	// The read ring is ours now (unless a SINGLE_ISSUER ring is locked
	// to a reader's thread, which cancelled on its way out).
	if !u.deferTR || !u.locked {
		u.cancelRead()
	}
	u.release()
}

// cancelRead cancels the multishot read and waits for its last CQE, so
// that the kernel writes no more into the buffers.
func (u *uringIO) cancelRead() {
	if !u.armed {
		return
	}
	s := u.rd.next()
	if s == nil {
		return
	}
	s.opcode = uringOpAsyncCancel
	s.addr = uringTagRead
	s.userData = uringTagCancel
	n := u.rd.publish()
	for u.armed {
		c := u.rd.peek()
		if c == nil {
			if _, err := u.rd.enter(n, 1, uringEnterGetEvents); err != nil && err != unix.EINTR {
				return
			}
			n = 0
			continue
		}
		if c.userData == uringTagRead && c.flags&uringCqeFMore == 0 {
			u.armed = false
		}
		u.rd.advance()
	}
}

// release frees what setup made. Ring fds are closed before the buffers
// are unmapped.
func (u *uringIO) release() {
	if u.rd != nil {
		u.rd.close()
	}
	if u.wr != nil {
		u.wr.close()
	}
	if u.efd != nil {
		u.efd.Close()
	}
	if !u.armed {
		// A read still armed (close could not cancel it) may write into
		// the buffers until the kernel tears the ring down: leave them.
		for _, m := range [][]byte{u.bufs, u.br} {
			if m != nil {
				unix.Munmap(m)
			}
		}
	}
}

// frameQueue is a bounded queue of frames for many producers and one
// consumer at a time (D. Vyukov's bounded MPMC queue): put never waits,
// and fails when the queue is full.
type frameQueue struct {
	cells []frameCell
	mask  uint64
	_     [64]byte
	tail  atomic.Uint64 // next position to fill
	_     [56]byte
	head  uint64 // next position to send, the token holder's
}

type frameCell struct {
	seq atomic.Uint64 // pos: free for pos; pos+1: holds the frame of pos
	n   int
	buf []byte
}

func (q *frameQueue) init(size int) {
	q.tail.Store(0)
	q.head = 0
	q.cells = make([]frameCell, size)
	q.mask = uint64(size - 1)
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
		q.cells[i].buf = make([]byte, vswitch.MaxFrame)
	}
}

// put copies frame into the queue; it reports false when the queue is full
// (or the frame empty or too big: Device.Write refuses those first).
func (q *frameQueue) put(frame []byte) bool {
	if len(frame) > vswitch.MaxFrame || len(frame) == 0 {
		return false
	}
	pos := q.tail.Load()
	for {
		c := &q.cells[pos&q.mask]
		switch d := int64(c.seq.Load() - pos); {
		case d == 0:
			if q.tail.CompareAndSwap(pos, pos+1) {
				c.n = copy(c.buf, frame)
				c.seq.Store(pos + 1)
				return true
			}
			pos = q.tail.Load()
		case d < 0:
			return false
		default:
			pos = q.tail.Load()
		}
	}
}

// peek returns the i-th frame after head, or nil if it is not there yet.
func (q *frameQueue) peek(i uint32) []byte {
	pos := q.head + uint64(i)
	c := &q.cells[pos&q.mask]
	if c.seq.Load() != pos+1 {
		return nil
	}
	return c.buf[:c.n]
}

// ready reports whether a frame waits at head.
func (q *frameQueue) ready() bool { return q.peek(0) != nil }

// drop frees the k frames at head.
func (q *frameQueue) drop(k uint32) {
	for range k {
		q.cells[q.head&q.mask].seq.Store(q.head + q.mask + 1)
		q.head++
	}
}
