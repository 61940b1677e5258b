package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// Published ports reached from the host's loopback, spliced into the
// container's namespace (uplink.LocalSplicer, the host uplink): the
// daemon is the uplink's LocalDialer. It opens the connection inside the
// container's network namespace to the container's address (its IPv6
// address for a client of ::1, when the publish has one) and the
// published port: a privileged daemon enters the namespace on a locked
// thread (netnsutil.Do) for the connect; an unprivileged one cannot
// (setns needs CAP_SYS_ADMIN in its own user namespace too), so a helper
// process stays in the container's namespaces and connects for it
// (nshelper.Dialer), started at the first such client and ended with the
// port.
//
// The splice bypasses the switch: no frame crosses the container's port,
// so its ACL rules, captures and counters would not see the connection.
// So it is taken only while the daemon has no ACL rule and no capture
// running; otherwise such clients go through the netstack, NAT and the
// port as everyone else's connections do. Nor while the container's lo is
// down (`unshare --net` leaves it so; runtimes bring it up): a connection
// to the container's own address goes through lo, and would hang.

// localDialers are the dial helpers of an unprivileged daemon, one per
// port that had a loopback client.
type localDialers struct {
	mu sync.Mutex // guards m
	m  map[*attachment]*localDialer
}

// localDialer is the dial helper of one port, started on first use.
type localDialer struct {
	mu     sync.Mutex // guards d, err, closed
	d      *nshelper.Dialer
	err    error // why the helper could not start: not retried
	closed bool
}

// setLocalSplice makes the daemon the uplink's LocalDialer, if it is a
// LocalSplicer.
func (d *Daemon) setLocalSplice() {
	if d.nat == nil {
		return
	}
	if ls, ok := d.nat.up.(uplink.LocalSplicer); ok {
		ls.SetLocalDialer(d.dialLocal)
	}
}

// dialLocal implements uplink.LocalDialer: it connects to the target of
// the published TCP port hostPort from inside its container's namespace,
// to the container's IPv6 address when v6 is set.
func (d *Daemon) dialLocal(ctx context.Context, hostPort uint16, v6 bool) (*net.TCPConn, error) {
	d.rules.mu.Lock()
	rules := len(d.rules.rules)
	d.rules.mu.Unlock()
	d.obs.mu.Lock()
	captures := len(d.obs.captures)
	d.obs.mu.Unlock()
	if rules > 0 || captures > 0 {
		return nil, fmt.Errorf("%w: ACL rules or captures would not see it", uplink.ErrNoLocalPath)
	}
	var p nat.Publish
	found := false
	for _, q := range d.nat.table.Publishes() {
		if q.Proto == nat.TCP && q.HostPort <= hostPort && hostPort <= q.HostPortEnd {
			p, found = q, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %d/tcp is not published", uplink.ErrNoLocalPath, hostPort)
	}
	d.mu.Lock()
	a := d.ports[p.Owner]
	d.mu.Unlock()
	if a == nil || a.ip != p.Target {
		return nil, fmt.Errorf("%w: no port %q at %s", uplink.ErrNoLocalPath, p.Owner, p.Target)
	}
	to := p.Target
	if v6 {
		if !p.Target6.IsValid() || a.ip6 != p.Target6 {
			return nil, fmt.Errorf("%w: port %q has no IPv6 address", uplink.ErrNoLocalPath, p.Owner)
		}
		to = p.Target6
	}
	target := netip.AddrPortFrom(to, p.TargetPort+(hostPort-p.HostPort))
	if d.privileged {
		var c net.Conn
		err := netnsutil.Do(a.netns, func() (err error) {
			if !nshelper.LoopbackUp() {
				return fmt.Errorf("%w: %w", uplink.ErrNoLocalPath, nshelper.ErrLoopbackDown)
			}
			var nd net.Dialer
			c, err = nd.DialContext(ctx, "tcp", target.String())
			return err
		})
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	live := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.ports[a.name] == a
	}
	c, err := d.local.dial(ctx, a, target, d.cfg.Exe, live)
	if errors.Is(err, nshelper.ErrLoopbackDown) {
		return nil, fmt.Errorf("%w: %w", uplink.ErrNoLocalPath, err)
	}
	if err != nil && !errors.Is(err, uplink.ErrNoLocalPath) {
		// A refused connect (nothing listens in the container) is one
		// too: not worth more than a debug line each.
		d.log.Debug("published port: a loopback client goes through the netstack", "port", a.name, "err", err)
	}
	return c, err
}

// dial connects to target through the dial helper of a, starting it
// first if needed; a helper found gone is replaced at the next call. live
// tells whether a is still attached: checked after a start, since the
// port may have gone meanwhile (forget ran before the helper existed).
func (ls *localDialers) dial(ctx context.Context, a *attachment, target netip.AddrPort, exe string, live func() bool) (*net.TCPConn, error) {
	ls.mu.Lock()
	if ls.m == nil {
		ls.m = map[*attachment]*localDialer{}
	}
	l := ls.m[a]
	if l == nil {
		l = &localDialer{}
		ls.m[a] = l
	}
	ls.mu.Unlock()

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: port %s detached", uplink.ErrNoLocalPath, a.name)
	}
	if l.d == nil && l.err == nil {
		if exe == "" {
			exe, l.err = os.Executable()
		}
		if l.err == nil {
			l.d, l.err = nshelper.StartDialer(exe, a.netns, false)
		}
		if l.d != nil && !live() {
			l.d.Close()
			l.d, l.closed = nil, true
			l.mu.Unlock()
			return nil, fmt.Errorf("%w: port %s detached", uplink.ErrNoLocalPath, a.name)
		}
	}
	hd, err := l.d, l.err
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: dial helper: %w", uplink.ErrNoLocalPath, err)
	}
	c, err := hd.Dial(ctx, target)
	if errors.Is(err, nshelper.ErrHelperGone) {
		l.mu.Lock()
		if l.d == hd {
			l.d = nil
		}
		l.mu.Unlock()
		hd.Close()
	}
	return c, err
}

// forget ends the dial helper of the port at ip, if any (detach, port
// gone).
func (ls *localDialers) forget(ip netip.Addr) {
	ls.mu.Lock()
	var gone []*localDialer
	for a, l := range ls.m {
		if a.ip == ip {
			gone = append(gone, l)
			delete(ls.m, a)
		}
	}
	ls.mu.Unlock()
	for _, l := range gone {
		l.close()
	}
}

// closeAll ends every dial helper (Close).
func (ls *localDialers) closeAll() {
	ls.mu.Lock()
	gone := ls.m
	ls.m = nil
	ls.mu.Unlock()
	for _, l := range gone {
		l.close()
	}
}

// close ends the helper and refuses further dials.
func (l *localDialer) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.d != nil {
		l.d.Close()
	}
}
