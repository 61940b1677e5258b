// Package nshelper creates a TAP device inside a container's network
// namespace from a helper process that has entered the namespace's user
// namespace, and hands its file descriptor back to the daemon: the way an
// unprivileged tapswitch attaches a rootless container.
//
// A process joins a user namespace with setns(CLONE_NEWUSER) only while it
// is single-threaded, which a running Go program never is. So Create starts
// nsenter (util-linux), which is, with the namespace files as descriptors:
//
//	nsenter --user=/proc/self/fd/4 --net=/proc/self/fd/5 [--preserve-credentials] -- EXE __tap-helper
//
// where EXE is the daemon's own binary. nsenter enters the user namespace
// that owns the network namespace, then the network namespace, and runs the
// binary there with every capability of that user namespace; its main
// calls Main, which creates and configures the TAP with tap.Create (in its
// own namespace, so nothing is moved) and sends the descriptor back over the
// unix socket on descriptor 3 with SCM_RIGHTS (unix(7)), then exits.
//
// As root, nsenter switches to uid and gid 0 of the user namespace (root
// outside is not mapped inside a rootless container's namespace, and an
// unmapped uid loses its capabilities at exec). As another user, the
// credentials are kept (--preserve-credentials): the user's uid is root
// inside a namespace made with `unshare --user --map-root-user`, and a
// user cannot switch to another uid.
//
// A TAP whose /dev/net/tun file was opened inside the namespace keeps that
// namespace alive (see package tap): its Read never fails when the
// container's last process exits. Callers that attach a process watch it
// instead (WatchPID).
//
// A Dialer is the same way in for TCP connections: its helper (the hidden
// command DialCommand) stays in the namespaces, connects where the daemon
// asks and hands each connected socket back, for published ports' clients
// on the host's loopback, which the host uplink splices into the
// container.
package nshelper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/tap"
)

// Command is the hidden subcommand of the tapswitch binary that runs Main.
const Command = "__tap-helper"

// The descriptors the helper process gets (exec.Cmd.ExtraFiles from 3).
const (
	fdSock   = 3 // the unix socket to send the reply and the TAP on
	fdUserns = 4 // the user namespace to enter (nsenter --user)
	fdNetns  = 5 // the network namespace to enter (nsenter --net)
)

// ErrNotOwned is returned (wrapped, with the path) by Create when the
// network namespace belongs to a user namespace the caller cannot enter, or
// its file cannot be opened for lack of permission: it belongs to another
// user.
var ErrNotOwned = errors.New("namespace of another user")

// request is what the daemon asks the helper for, JSON on its stdin: a
// TAP to create (a tap.Config without Netns, the helper's own namespace
// being the target), or, with Op, one a previous daemon left to adopt or
// remove (Name and MAC only), or an attached one whose gso_max_segs to
// set (Name, MAC and GSOMaxSegs).
type request struct {
	// Op is "" (create), "adopt", "remove" or "gso".
	Op         string `json:"op,omitempty"`
	Name       string `json:"name"`
	MAC        string `json:"mac"`
	MTU        int    `json:"mtu,omitempty"`
	GSOMaxSegs int    `json:"gso_max_segs,omitempty"`
	Addr       string `json:"addr,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	NoOffloads bool   `json:"no_offloads,omitempty"`
	Addr6      string `json:"addr6,omitempty"`
	Gateway6   string `json:"gateway6,omitempty"`
	NoIPv6     bool   `json:"disable_ipv6,omitempty"`
}

// The operations of a request besides creating a TAP.
const (
	opAdopt  = "adopt"
	opRemove = "remove"
	opGSO    = "gso"
)

// sendsTAP reports whether the helper answers op with a TAP.
func sendsTAP(op string) bool { return op != opRemove && op != opGSO }

// reply is the helper's one message on the socket; a successful one carries
// the TAP's descriptor.
type reply struct {
	Offloads vswitch.Offloads `json:"offloads"`
	// GSOMaxSegs is the TAP's Device.GSOMaxSegs.
	GSOMaxSegs int    `json:"gso_max_segs,omitempty"`
	Err        string `json:"error,omitempty"`
	// Kind says which sentinel Err stood for: "exists" or "invalid" (of
	// package tap), "gone" (ErrGone) or "".
	Kind string `json:"kind,omitempty"`
}

// Create creates the TAP described by cfg inside the network namespace at
// cfg.Netns through a helper process (see the package doc) running the
// binary exe, and returns it with its namespace path as Device.Netns. It is
// all or nothing: when it fails, no TAP is left in the namespace. Errors
// wrap tap.ErrNetnsNotFound, tap.ErrLinkExists, tap.ErrInvalidConfig or
// ErrNotOwned where they apply, and are one line.
//
// ctx bounds the whole exchange; the helper is killed when it ends.
// privileged tells whether the caller has CAP_NET_ADMIN and CAP_SYS_ADMIN
// in its own user namespace (root): only then can it attach a namespace
// that belongs to that user namespace, and it enters the others as their
// root.
func Create(ctx context.Context, exe string, cfg tap.Config, privileged bool) (*tap.Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	req := request{Name: cfg.Name, MAC: cfg.MAC.String(), MTU: cfg.MTU, GSOMaxSegs: cfg.GSOMaxSegs, NoOffloads: cfg.NoOffloads, NoIPv6: cfg.DisableIPv6}
	req.Addr, req.Gateway = text(cfg.Addr), text(cfg.Gateway)
	req.Addr6, req.Gateway6 = text(cfg.Addr6), text(cfg.Gateway6)
	return run(ctx, exe, cfg.Netns, req, privileged)
}

// Adopt attaches to the persistent TAP called name, with the MAC mac, in
// the network namespace at path through a helper process, as Create
// makes one: what tap.Adopt does for a daemon with CAP_NET_ADMIN in the
// namespace's user namespace, for one without (--live-restore without
// root). The TAP's persist flag stays as it is. Errors are Create's, and
// those of tap.Adopt, as one line.
func Adopt(ctx context.Context, exe, path, name string, mac net.HardwareAddr, noOffloads, privileged bool) (*tap.Device, error) {
	return run(ctx, exe, path, request{Op: opAdopt, Name: name, MAC: mac.String(), NoOffloads: noOffloads}, privileged)
}

// Remove deletes the persistent TAP called name, with the MAC mac, from
// the network namespace at path through a helper process: tap.Remove for
// a daemon without CAP_NET_ADMIN there. Errors are Adopt's.
func Remove(ctx context.Context, exe, path, name string, mac net.HardwareAddr, privileged bool) error {
	_, err := run(ctx, exe, path, request{Op: opRemove, Name: name, MAC: mac.String()}, privileged)
	return err
}

// SetGSOMaxSegs sets the gso_max_segs of the TAP called name, with the
// MAC mac, in the network namespace at path to n through a helper
// process: tap.SetGSOMaxSegs for a daemon without CAP_NET_ADMIN there (a
// TAP the helper made, whose file the daemon holds). Errors are Adopt's.
func SetGSOMaxSegs(ctx context.Context, exe, path, name string, mac net.HardwareAddr, n int, privileged bool) error {
	_, err := run(ctx, exe, path, request{Op: opGSO, Name: name, MAC: mac.String(), GSOMaxSegs: n}, privileged)
	return err
}

// run has the helper carry out req in the network namespace at path and
// returns the TAP it sends back (nil for opRemove and opGSO).
func run(ctx context.Context, exe, path string, req request, privileged bool) (*tap.Device, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	h, err := start(ctx, exe, Command, path, privileged, bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	defer h.conn.Close()

	rep, fd, rerr := receive(ctx, h.conn)
	werr := h.cmd.Wait()
	if rerr == nil && fd < 0 && rep.Err == "" && sendsTAP(req.Op) {
		rerr = errors.New("helper replied without a TAP")
	}
	if rerr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		// Nothing came back: nsenter failed to enter (its message is
		// on stderr), or the helper died.
		why := lastLine(h.stderr.String())
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("enter %s: %w", path, ctx.Err())
		case why != "":
			return nil, fmt.Errorf("enter %s: %s", path, why)
		case werr != nil:
			return nil, fmt.Errorf("enter %s: helper: %w", path, werr)
		}
		return nil, fmt.Errorf("enter %s: helper: %w", path, rerr)
	}
	if rep.Err != "" {
		if fd >= 0 {
			unix.Close(fd)
		}
		err := &helperError{msg: rep.Err}
		switch rep.Kind {
		case "exists":
			err.kind = tap.ErrLinkExists
		case "invalid":
			err.kind = tap.ErrInvalidConfig
		case "gone":
			err.kind = ErrGone
		}
		return nil, fmt.Errorf("in %s: %w", path, err)
	}
	if !sendsTAP(req.Op) {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil
	}
	return tap.FromFD(fd, req.Name, path, rep.Offloads, rep.GSOMaxSegs)
}

// ErrGone is returned (wrapped) by Adopt and Remove when the namespace has
// no interface of that name, or it is not the TAP that was saved
// (tap.ErrNotOurs).
var ErrGone = errors.New("not there")

// helperError is an error of the helper: its message, and the sentinel of
// package tap it stood for (nil if none).
type helperError struct {
	msg  string
	kind error
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Is(target error) bool {
	return e.kind != nil && target == e.kind
}

// helper is a helper process started in a container's namespaces.
type helper struct {
	cmd    *exec.Cmd
	conn   *net.UnixConn // the daemon's end of the socket on the helper's fdSock
	stderr *bytes.Buffer // what nsenter and the helper wrote, once cmd has exited
}

// start runs `nsenter ... -- exe command` in the user namespace that owns
// the network namespace at path and in that network namespace (see the
// package doc), with stdin, and with its end of a new SOCK_SEQPACKET
// socket pair on fdSock. ctx kills the process when it ends. Errors wrap
// ErrNotOwned where it applies.
func start(ctx context.Context, exe, command, path string, privileged bool, stdin io.Reader) (*helper, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("enter %s without root needs nsenter (util-linux): %w", path, err)
	}
	netnsF, usernsF, sameUserns, err := openNamespaces(path)
	if err != nil {
		return nil, err
	}
	defer netnsF.Close()
	defer usernsF.Close()
	if sameUserns && !privileged {
		return nil, fmt.Errorf("%s: %w: it belongs to the user namespace the daemon runs in, where the daemon has no CAP_NET_ADMIN; attach a process of a user namespace of your own (unshare --user --map-root-user --net, a rootless container) or run tapswitch as root", path, ErrNotOwned)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), command)
	theirs := os.NewFile(uintptr(fds[1]), command)
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("socketpair: %w", err)
	}

	args := []string{"--net=/proc/self/fd/5"}
	if !sameUserns {
		args = append(args, "--user=/proc/self/fd/4")
		if !privileged {
			args = append(args, "--preserve-credentials")
		}
	}
	args = append(args, "--", exe, command)
	h := &helper{cmd: exec.CommandContext(ctx, nsenter, args...), conn: conn.(*net.UnixConn), stderr: new(bytes.Buffer)}
	h.cmd.Stdin = stdin
	h.cmd.Stderr = h.stderr
	h.cmd.ExtraFiles = []*os.File{theirs, usernsF, netnsF} // fdSock, fdUserns, fdNetns
	h.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	h.cmd.WaitDelay = time.Second
	err = h.cmd.Start()
	theirs.Close()
	if err != nil {
		h.conn.Close()
		return nil, fmt.Errorf("start %s: %w", nsenter, err)
	}
	return h, nil
}

// openNamespaces opens the network namespace at path and the user namespace
// that owns it (NS_GET_USERNS), and tells whether that is the caller's own.
func openNamespaces(path string) (netnsF, usernsF *os.File, same bool, err error) {
	netnsF, err = tap.OpenNetns(path)
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return nil, nil, false, fmt.Errorf("%s: permission denied: %w", path, ErrNotOwned)
	case err != nil:
		return nil, nil, false, err
	}
	fd := int(netnsF.Fd())
	ufd, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		netnsF.Close()
		return nil, nil, false, fmt.Errorf("%s: %w: its user namespace: %w", path, ErrNotOwned, err)
	}
	unix.CloseOnExec(ufd)
	usernsF = os.NewFile(uintptr(ufd), "userns")
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(ufd, &theirs); err == nil {
		if err := unix.Stat("/proc/self/ns/user", &ours); err == nil {
			same = theirs.Dev == ours.Dev && theirs.Ino == ours.Ino
		}
	}
	return netnsF, usernsF, same, nil
}

// receive reads the helper's reply and the descriptor it carries (-1 if
// none) from c, until ctx ends.
func receive(ctx context.Context, c *net.UnixConn) (reply, int, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	// Go reads with MSG_CMSG_CLOEXEC on Linux: the descriptor is not
	// inherited by processes started meanwhile.
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return reply{}, -1, err
	}
	fd := rightsOf(oob[:oobn])
	if n == 0 {
		return reply{}, fd, io.ErrUnexpectedEOF
	}
	var rep reply
	if err := json.Unmarshal(buf[:n], &rep); err != nil {
		return reply{}, fd, fmt.Errorf("helper reply: %w", err)
	}
	return rep, fd, nil
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Main is the helper side, run by the tapswitch binary for Command inside
// the namespaces nsenter entered: it reads the request on stdin, creates
// the TAP, sends it on descriptor 3 and returns the exit status. Errors go
// back on the socket as one line (and to stderr if the socket is gone).
func Main(stdin io.Reader, stderr io.Writer) int {
	// The namespace descriptors were for nsenter.
	unix.Close(fdUserns)
	unix.Close(fdNetns)
	rep, d := serve(stdin)
	data, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintln(stderr, "tap helper:", err)
		return 1
	}
	var rights []byte
	if d != nil {
		defer d.Close()
		rc, err := d.File().SyscallConn()
		if err != nil {
			fmt.Fprintln(stderr, "tap helper:", err)
			return 1
		}
		rc.Control(func(fd uintptr) { rights = unix.UnixRights(int(fd)) })
	}
	if err := unix.Sendmsg(fdSock, data, rights, nil, 0); err != nil {
		fmt.Fprintf(stderr, "tap helper: send reply: %v\n", err)
		if rep.Err != "" {
			fmt.Fprintln(stderr, "tap helper:", rep.Err)
		}
		return 1
	}
	if rep.Err != "" {
		return 1
	}
	return 0
}

// serve decodes the request and carries it out in the current namespace:
// it returns the reply and the TAP created or adopted.
func serve(stdin io.Reader) (reply, *tap.Device) {
	var req request
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		return reply{Err: "read request: " + err.Error()}, nil
	}
	switch req.Op {
	case "":
		return create(req)
	case opAdopt, opRemove, opGSO:
		return adopt(req)
	}
	return reply{Err: fmt.Sprintf("unknown operation %q", req.Op), Kind: "invalid"}, nil
}

// adopt adopts or removes the TAP of req in the current namespace, or sets
// its gso_max_segs.
func adopt(req request) (reply, *tap.Device) {
	mac, err := net.ParseMAC(req.MAC)
	if err != nil {
		return reply{Err: err.Error(), Kind: "invalid"}, nil
	}
	// The helper is in the namespace: tap's own entry into it is a
	// setns to where it is already.
	const self = "/proc/self/ns/net"
	var d *tap.Device
	switch req.Op {
	case opRemove:
		err = tap.Remove(self, req.Name, mac)
	case opGSO:
		err = tap.SetGSOMaxSegs(self, req.Name, mac, req.GSOMaxSegs)
	default:
		d, err = tap.Adopt(self, req.Name, mac, req.NoOffloads)
	}
	if err != nil {
		rep := reply{Err: strings.ReplaceAll(err.Error(), " in "+self, "")}
		var nf netlink.LinkNotFoundError
		switch {
		case errors.As(err, &nf) || errors.Is(err, tap.ErrNotOurs):
			rep.Kind = "gone"
		case errors.Is(err, tap.ErrInvalidConfig):
			rep.Kind = "invalid"
		}
		return rep, nil
	}
	if d == nil {
		return reply{}, nil
	}
	return reply{Offloads: d.Offloads(), GSOMaxSegs: d.GSOMaxSegs()}, d
}

// create creates the TAP of req in the current namespace.
func create(req request) (reply, *tap.Device) {
	var err error
	cfg := tap.Config{Name: req.Name, MTU: req.MTU, GSOMaxSegs: req.GSOMaxSegs, NoOffloads: req.NoOffloads, DisableIPv6: req.NoIPv6}
	if cfg.MAC, err = net.ParseMAC(req.MAC); err != nil {
		return reply{Err: err.Error(), Kind: "invalid"}, nil
	}
	for _, p := range []struct {
		s string
		p *netip.Prefix
	}{{req.Addr, &cfg.Addr}, {req.Addr6, &cfg.Addr6}} {
		if p.s == "" {
			continue
		}
		if *p.p, err = netip.ParsePrefix(p.s); err != nil {
			return reply{Err: err.Error(), Kind: "invalid"}, nil
		}
	}
	for _, a := range []struct {
		s string
		a *netip.Addr
	}{{req.Gateway, &cfg.Gateway}, {req.Gateway6, &cfg.Gateway6}} {
		if a.s == "" {
			continue
		}
		if *a.a, err = netip.ParseAddr(a.s); err != nil {
			return reply{Err: err.Error(), Kind: "invalid"}, nil
		}
	}
	d, err := tap.Create(cfg)
	if err != nil {
		rep := reply{Err: strings.Replace(err.Error(), " in the caller's namespace", "", 1)}
		switch {
		case errors.Is(err, tap.ErrLinkExists):
			rep.Kind = "exists"
		case errors.Is(err, tap.ErrInvalidConfig):
			rep.Kind = "invalid"
		}
		return rep, nil
	}
	return reply{Offloads: d.Offloads(), GSOMaxSegs: d.GSOMaxSegs()}, d
}

// text is v's text form, "" for its zero value (an invalid prefix or
// address).
func text[T interface {
	IsValid() bool
	String() string
}](v T) string {
	if !v.IsValid() {
		return ""
	}
	return v.String()
}
