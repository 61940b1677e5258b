package nshelper

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrNoProcess is returned (wrapped, with the pid) by WatchPID when no
// process has that pid.
var ErrNoProcess = errors.New("no such process")

// Process is a process watched through a pidfd (pidfd_open(2)), which
// becomes readable when the process exits and, unlike a pid, never names
// another process.
type Process struct {
	f      *os.File // the pidfd, non-blocking, in Go's netpoller
	closed atomic.Bool
}

// WatchPID opens a pidfd for pid.
func WatchPID(pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.O_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case err != nil:
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &Process{f: os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))}, nil
}

// Exited reports whether the process has exited, without waiting.
func (p *Process) Exited() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	exited := true
	rc.Control(func(fd uintptr) { exited = readable(fd) })
	return exited
}

// Wait blocks until the process exits, and returns nil then; it returns an
// error wrapping os.ErrClosed if Close is called first. The wait is one
// parked goroutine in the netpoller, not a thread.
func (p *Process) Wait() error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Read(readable)
	if err != nil && p.closed.Load() {
		return fmt.Errorf("wait for process: %w", os.ErrClosed)
	}
	return err
}

// readable polls the pidfd fd without waiting: it is readable once the
// process has exited.
func readable(fd uintptr) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n > 0
}

// Close closes the pidfd and ends a Wait.
func (p *Process) Close() error {
	p.closed.Store(true)
	return p.f.Close()
}
