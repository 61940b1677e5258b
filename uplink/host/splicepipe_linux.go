package host

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// The loop that moves one direction of a spliced connection: src -> pipe
// -> dst with splice(2), as internal/poll's (TCPConn.ReadFrom) does, but
// filling the pipe with what src has before emptying it into dst where
// internal/poll writes after every read (splice_linux.go has the numbers).

// splicePipeSize is the capacity asked of a pipe (F_SETPIPE_SZ): 1 MiB,
// /proc/sys/fs/pipe-max-size's default, what an unprivileged process may
// ask and what internal/poll asks.
const splicePipeSize = 1 << 20

// splicePipe is a pipe that the bytes of one direction pass through.
type splicePipe struct {
	r, w int
	size int // its capacity in bytes
}

// freePipes holds empty pipes for the next connections, at most as many
// as pasta keeps (TCP_SPLICE_PIPE_POOL_SIZE).
var freePipes = make(chan *splicePipe, 32)

// getPipe returns an empty pipe, from freePipes or new.
func getPipe() (*splicePipe, error) {
	select {
	case p := <-freePipes:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &splicePipe{r: fds[0], w: fds[1], size: 64 << 10}
	n, err := unix.FcntlInt(uintptr(p.r), unix.F_SETPIPE_SZ, splicePipeSize)
	if err != nil {
		// Past the user's pipe-user-pages-soft, or a lower
		// pipe-max-size: the pipe keeps the size it has.
		n, err = unix.FcntlInt(uintptr(p.r), unix.F_GETPIPE_SZ, 0)
	}
	if err == nil && n > 0 {
		p.size = n
	}
	return p, nil
}

// putPipe keeps p for reuse when it is empty and there is room, and
// closes it otherwise.
func putPipe(p *splicePipe, empty bool) {
	if empty {
		select {
		case freePipes <- p:
			return
		default:
		}
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// pump is one direction of a spliced connection.
type pump struct {
	src, dst syscall.RawConn
	p        *splicePipe
	inPipe   int   // bytes in the pipe
	eof      bool  // src has ended
	err      error // of a splice call
	// fill and drain are the methods as values, made once: a method
	// value passed to RawConn allocates.
	fill, drain func(uintptr) bool
}

// spliceCopy moves src to dst until src's EOF (nil, once the pipe is
// empty) or an error on either, with no allocation per chunk.
func spliceCopy(dst, src *net.TCPConn) error {
	sr, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dr, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	p, err := getPipe()
	if err != nil {
		_, err := dst.ReadFrom(src) // internal/poll's pipe, or a copy
		return err
	}
	u := &pump{src: sr, dst: dr, p: p}
	u.fill, u.drain = u.fillPipe, u.drainPipe
	err = u.run()
	putPipe(p, u.inPipe == 0)
	return err
}

// run fills the pipe from src (waiting for src only while it is empty)
// and empties it into dst (waiting for dst while it takes nothing), until
// src's EOF with the pipe empty or an error.
func (u *pump) run() error {
	for {
		if !u.eof {
			if err := u.src.Read(u.fill); err != nil {
				return err
			}
			if u.err != nil {
				return u.err
			}
		}
		if u.inPipe > 0 {
			if err := u.dst.Write(u.drain); err != nil {
				return err
			}
			if u.err != nil {
				return u.err
			}
		}
		if u.eof && u.inPipe == 0 {
			return nil
		}
	}
}

// spliceFlags: never block (the netpoller waits), move pages where the
// kernel can.
const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// fillPipe splices from src (fd) into the pipe until src has nothing more
// for now, ends, or the pipe is full; it returns false, to wait for src,
// only when the pipe is still empty.
func (u *pump) fillPipe(fd uintptr) bool {
	for {
		n, err := unix.Splice(int(fd), nil, u.p.w, nil, u.p.size-u.inPipe, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN: // nothing to read, or the pipe is full
			return u.inPipe > 0
		case err != nil:
			u.err = err
			return true
		case n == 0:
			u.eof = true
			return true
		}
		u.inPipe += int(n)
		if u.inPipe >= u.p.size {
			return true
		}
	}
}

// drainPipe splices the pipe into dst (fd) until it is empty; it returns
// false, to wait for dst, when dst takes nothing.
func (u *pump) drainPipe(fd uintptr) bool {
	for u.inPipe > 0 {
		n, err := unix.Splice(u.p.r, nil, int(fd), nil, u.inPipe, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			u.err = err
			return true
		case n == 0: // as EAGAIN; never seen
			return false
		}
		u.inPipe -= int(n)
	}
	return true
}
