package nshelper

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DialCommand is the hidden subcommand of the tapswitch binary that runs
// DialMain.
const DialCommand = "__dial-helper"

// dialTimeout bounds one connect of the dial helper.
const dialTimeout = 10 * time.Second

// ErrLoopbackDown is returned (wrapped) by Dialer.Dial when the
// namespace's loopback is down: a connection to one of the namespace's own
// addresses would hang (its packets go through lo), so none is tried.
var ErrLoopbackDown = errors.New("the namespace's loopback is down")

// LoopbackUp reports whether lo is up in the calling thread's network
// namespace.
func LoopbackUp() bool {
	lo, err := net.InterfaceByName("lo")
	return err == nil && lo.Flags&net.FlagUp != 0
}

// ErrHelperGone is returned (wrapped) by Dialer.Dial when the helper
// process has exited or was closed: a new Dialer is needed.
var ErrHelperGone = errors.New("dial helper gone")

// Dialer opens TCP connections from inside a container's network namespace
// for a daemon that cannot enter it (no CAP_SYS_ADMIN in its own user
// namespace): a helper process started as Create starts its own (nsenter
// into the owning user namespace and the network namespace, the daemon's
// binary with DialCommand) stays there, connects where it is asked and
// sends each connected socket back with SCM_RIGHTS. A socket keeps the
// namespace it was made in, so the daemon uses it as any of its own. One
// helper serves a namespace for as long as the Dialer lives; Close ends it,
// and so does the daemon's exit (its end of the socket closes).
//
// Each request carries its own socket pair for the reply, so requests are
// answered concurrently and never mixed up.
type Dialer struct {
	h    *helper
	path string
	mu   sync.Mutex // guards closed
	// closed is set by Close.
	closed bool
	exited chan struct{} // closed when the helper has exited
}

// StartDialer starts the dial helper in the network namespace at path with
// the binary exe (see Create for privileged). Errors wrap ErrNotOwned
// where it applies.
func StartDialer(exe, path string, privileged bool) (*Dialer, error) {
	h, err := start(context.Background(), exe, DialCommand, path, privileged, nil)
	if err != nil {
		return nil, err
	}
	d := &Dialer{h: h, path: path, exited: make(chan struct{})}
	go func() {
		h.cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

// Dial connects to addr from inside the namespace and returns the
// connection, which the caller owns. ctx bounds the exchange (the helper
// gives up connecting after 10 s). It is safe for concurrent use. A
// refused or failed connect is an error with the helper's reason; a gone
// helper wraps ErrHelperGone.
func (d *Dialer) Dial(ctx context.Context, addr netip.AddrPort) (*net.TCPConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "dial-reply")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	defer c.Close()
	_, _, err = d.h.conn.WriteMsgUnix([]byte(addr.String()), unix.UnixRights(fds[1]), nil)
	unix.Close(fds[1])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrHelperGone, d.path, err)
	}
	rep, fd, err := receive(ctx, c.(*net.UnixConn))
	switch {
	case err != nil && fd < 0 && d.gone():
		return nil, fmt.Errorf("%w: %s: %s", ErrHelperGone, d.path, d.why(err))
	case err != nil:
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("dial %s in %s: %w", addr, d.path, err)
	case rep.Err != "":
		if fd >= 0 {
			unix.Close(fd)
		}
		if rep.Kind == "lo_down" {
			return nil, fmt.Errorf("dial %s in %s: %w", addr, d.path, ErrLoopbackDown)
		}
		return nil, fmt.Errorf("dial %s in %s: %s", addr, d.path, rep.Err)
	case fd < 0:
		return nil, fmt.Errorf("dial %s in %s: helper replied without a socket", addr, d.path)
	}
	sf := os.NewFile(uintptr(fd), "dial")
	conn, err := net.FileConn(sf)
	sf.Close()
	if err != nil {
		return nil, fmt.Errorf("dial %s in %s: %w", addr, d.path, err)
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("dial %s in %s: helper sent a %T", addr, d.path, conn)
	}
	return tc, nil
}

// why is the reason the helper gave when it exited (its last line on
// stderr), or err's.
func (d *Dialer) why(err error) string {
	select {
	case <-d.exited: // stderr is complete: the process was waited for
		return cmp.Or(lastLine(d.h.stderr.String()), err.Error())
	default:
		return err.Error()
	}
}

// gone reports whether the helper has exited or the Dialer was closed.
func (d *Dialer) gone() bool {
	select {
	case <-d.exited:
		return true
	default:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Close ends the helper: it exits when its socket closes, and is killed if
// it has not after a second. Connections it made live on.
func (d *Dialer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.h.conn.Close()
	select {
	case <-d.exited:
	case <-time.After(time.Second):
		d.h.cmd.Process.Kill()
		<-d.exited
	}
	return nil
}

// DialMain is the helper side of a Dialer, run by the tapswitch binary for
// DialCommand inside the namespaces nsenter entered: for each request on
// descriptor 3 (an address, and a socket for the reply) it connects to
// the address, on a goroutine of its own, and sends the connected socket
// back on the request's socket, or the reason it failed. It returns 0 when
// descriptor 3 is closed (the daemon closed the Dialer or exited).
func DialMain(stderr io.Writer) int {
	// The namespace descriptors were for nsenter.
	unix.Close(fdUserns)
	unix.Close(fdNetns)
	f := os.NewFile(fdSock, "dial-helper")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(stderr, "dial helper:", err)
		return 1
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		fmt.Fprintf(stderr, "dial helper: descriptor %d is a %T, not a unix socket\n", fdSock, c)
		return 1
	}
	serveDials(uc, stderr)
	return 0
}

// serveDials answers the requests on uc until it is closed.
func serveDials(uc *net.UnixConn, stderr io.Writer) {
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			return // the daemon's end is closed
		}
		fd := rightsOf(oob[:oobn])
		if fd < 0 {
			fmt.Fprintln(stderr, "dial helper: a request without a reply socket")
			continue
		}
		go answerDial(fd, string(buf[:n]))
	}
}

// answerDial connects to addr and sends the result on the socket fd,
// which it closes.
func answerDial(fd int, addr string) {
	defer unix.Close(fd)
	var rep reply
	send := func(rights []byte) {
		data, err := json.Marshal(rep)
		if err == nil {
			unix.Sendmsg(fd, data, rights, nil, 0)
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		rep.Err = err.Error()
		send(nil)
		return
	}
	if !LoopbackUp() {
		rep.Err, rep.Kind = ErrLoopbackDown.Error(), "lo_down"
		send(nil)
		return
	}
	c, err := net.DialTimeout("tcp", ap.String(), dialTimeout)
	if err != nil {
		rep.Err = err.Error()
		send(nil)
		return
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		rep.Err = err.Error()
		send(nil)
		return
	}
	rc.Control(func(s uintptr) { send(unix.UnixRights(int(s))) })
}

// rightsOf returns the first descriptor the control messages oob carry
// (closing any other), or -1.
func rightsOf(oob []byte) int {
	fd := -1
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	for _, m := range msgs {
		rights, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, r := range rights {
			if fd < 0 {
				fd = r
			} else {
				unix.Close(r)
			}
		}
	}
	return fd
}
