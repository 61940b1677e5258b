package tap

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring, written against the kernel's ABI
// (include/uapi/linux/io_uring.h) with golang.org/x/sys/unix: the setup,
// the two mmapped rings, SQE and CQE layouts, io_uring_enter and the
// registration of an eventfd and of a provided buffer ring. No Go module
// served here ports liburing; the few structures needed are stable ABI, and
// owning them keeps the hot path free of allocations and of a library's
// locks.

// io_uring opcodes (enum io_uring_op).
const (
	uringOpAsyncCancel   = 14
	uringOpWrite         = 23
	uringOpMsgRing       = 40
	uringOpReadMultishot = 49 // kernel 6.7
)

// Flags of SQEs, CQEs, io_uring_setup and io_uring_enter.
const (
	uringSqeBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT

	uringCqeFBuffer = 1 << 0 // IORING_CQE_F_BUFFER: flags>>16 is the buffer id
	uringCqeFMore   = 1 << 1 // IORING_CQE_F_MORE: the multishot request goes on

	uringSetupClamp     = 1 << 4  // IORING_SETUP_CLAMP
	uringSetupCQSize    = 1 << 3  // IORING_SETUP_CQSIZE
	uringSetupSubmitAll = 1 << 7  // IORING_SETUP_SUBMIT_ALL
	uringSetupRDisabled = 1 << 6  // IORING_SETUP_R_DISABLED
	uringSetupSingleIss = 1 << 12 // IORING_SETUP_SINGLE_ISSUER
	uringSetupDeferTR   = 1 << 13 // IORING_SETUP_DEFER_TASKRUN
	uringRegisterEnable = 12      // IORING_REGISTER_ENABLE_RINGS

	uringEnterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS

	uringFeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP

	uringRegisterEventfd  = 4  // IORING_REGISTER_EVENTFD
	uringRegisterPbufRing = 22 // IORING_REGISTER_PBUF_RING

	uringOffSQRing = 0          // IORING_OFF_SQ_RING
	uringOffSQEs   = 0x10000000 // IORING_OFF_SQES
)

// uringParams is struct io_uring_params (120 bytes).
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// uringSQE is struct io_uring_sqe (64 bytes), with the union members this
// package uses.
type uringSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off           uint64 // or addr2; MSG_RING: user_data of the posted CQE
	addr          uint64 // ASYNC_CANCEL: user_data to cancel
	len           uint32
	opFlags       uint32
	userData      uint64
	bufGroup      uint16 // buf_index or buf_group
	personality   uint16
	spliceFdIn    int32
	addr3, pad    uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uringBufReg is struct io_uring_buf_reg, for IORING_REGISTER_PBUF_RING.
type uringBufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// ring is one io_uring instance: its SQ is filled by one goroutine at a
// time and its CQ drained by one goroutine at a time (the owner says which).
type ring struct {
	fd      int
	mem     []byte // SQ and CQ rings, one mapping (IORING_FEAT_SINGLE_MMAP)
	sqesMem []byte

	sqHead, sqTail *atomic.Uint32
	sqMask, sqSize uint32
	sqes           []uringSQE
	sqLocal        uint32 // next SQE to fill; published to sqTail by publish

	cqHead, cqTail *atomic.Uint32
	cqMask         uint32
	cqes           []uringCQE
}

// newRing sets up an io_uring with sq SQEs and cq CQEs.
func newRing(sq, cq, flags uint32) (*ring, error) {
	p := uringParams{flags: uringSetupCQSize | uringSetupClamp | uringSetupSubmitAll | flags, cqEntries: cq}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sq), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd)}
	if p.features&uringFeatSingleMmap == 0 {
		r.close()
		return nil, fmt.Errorf("io_uring_setup: kernel lacks IORING_FEAT_SINGLE_MMAP")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(uringCQE{})))
	var err error
	r.mem, err = unix.Mmap(r.fd, uringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("mmap io_uring rings: %w", err)
	}
	r.sqesMem, err = unix.Mmap(r.fd, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	u32 := func(off uint32) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&r.mem[off])) }
	r.sqHead, r.sqTail = u32(p.sqOff.head), u32(p.sqOff.tail)
	r.sqMask, r.sqSize = u32(p.sqOff.ringMask).Load(), p.sqEntries
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqesMem[0])), p.sqEntries)
	// The SQ's index array maps slot i to SQE i, once for all.
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.mem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.cqHead, r.cqTail = u32(p.cqOff.head), u32(p.cqOff.tail)
	r.cqMask = u32(p.cqOff.ringMask).Load()
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&r.mem[p.cqOff.cqes])), p.cqEntries)
	r.sqLocal = r.sqTail.Load()
	return r, nil
}

// next returns a zeroed SQE to fill, or nil when the SQ is full. It is made
// visible to the kernel by publish.
func (r *ring) next() *uringSQE {
	if r.sqLocal-r.sqHead.Load() >= r.sqSize {
		return nil
	}
	s := &r.sqes[r.sqLocal&r.sqMask]
	*s = uringSQE{}
	r.sqLocal++
	return s
}

// publish makes the SQEs filled since the last call visible to the kernel
// and returns how many there are to submit.
func (r *ring) publish() uint32 {
	n := r.sqLocal - r.sqTail.Load()
	r.sqTail.Store(r.sqLocal)
	return n
}

// peek returns the oldest CQE, or nil when the CQ is empty. The CQE is
// valid until advance.
func (r *ring) peek() *uringCQE {
	head := r.cqHead.Load()
	if head == r.cqTail.Load() {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// ready returns how many CQEs wait in the CQ.
func (r *ring) ready() uint32 { return r.cqTail.Load() - r.cqHead.Load() }

// advance consumes the CQE peek returned.
func (r *ring) advance() { r.cqHead.Store(r.cqHead.Load() + 1) }

// enter is io_uring_enter(2): submit toSubmit SQEs and, with
// uringEnterGetEvents, wait until minComplete CQEs are ready. It may block
// in the kernel (syscall.Syscall: the runtime hands the P to another
// thread meanwhile). EINTR is returned as is.
func (r *ring) enter(toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}

// register is io_uring_register(2).
func (r *ring) register(op uintptr, arg unsafe.Pointer, nargs uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), nargs, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// close unmaps the rings and closes the ring's fd; the kernel cancels what
// is still in flight.
func (r *ring) close() {
	if r.sqesMem != nil {
		unix.Munmap(r.sqesMem)
		r.sqesMem = nil
	}
	if r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
