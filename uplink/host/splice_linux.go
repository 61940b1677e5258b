package host

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/tapswitch/tapswitch/uplink"
)

// The splice path for clients on the host's loopback (uplink.LocalSplicer).
//
// Through the netstack, a published port reached from 127.0.0.1 costs a
// TCP stack of the switch's, NAT, the gateway and the container's TAP on
// every segment; pasta splices such clients to the container's loopback.
// Measured on 2026-12-03 with bench/rootless-compare.sh (TESTS=in-lo
// ROUNDS=3: iperf3, one stream, host 127.0.0.1 -> published port, medians,
// Gbit/s, pasta in the same run) on the 2-core machine shared with other
// work (load average 15-19, so the ratios, not the figures):
//
//	                 MTU 1500            MTU 65520
//	netstack (main)  3.29 (x1.69 pasta)  2.61 (x1.07 pasta)
//	splice           4.16 (x2.67 pasta)  4.45 (x2.35 pasta)
//
// With the whole benchmark (ROUNDS=1, load average 6.6-9.9), host
// 127.0.0.1 -> published port: at 1500 5.22 (x0.77 pasta) -> 12.8 (x2.71),
// at 65520 4.55 (x0.78) -> 8.36 (x1.08). On a quiet machine pasta did 14.3
// and the netstack path 7.28 at 1500 (issue 15): pasta's lead was the
// splice, which is what this path does.
//
// With a LocalDialer set, a connection accepted from 127.0.0.0/8 or ::1
// is joined to a connection the dialer opens inside the container's
// namespace (to the container's address and port, from the container's
// own address; for ::1 to its IPv6 address where the published port has
// one, to its IPv4 address otherwise, as the netstack path would),
// and the two host sockets are spliced both ways: spliceCopy
// (splicepipe_linux.go) moves each direction's bytes with splice(2)
// through a pipe of 1 MiB, never into user memory. FIN is carried as FIN
// (half-close), a reset or error on one side resets the other, as the
// netstack path does.
//
// How the bytes move, measured on 2026-12-03 (issue 15). Per 4 GB spliced
// from 127.0.0.1 with the standard library's loop (TCPConn.ReadFrom,
// internal/poll; iperf3 -n 4G, perf stat on the daemon, root, own
// namespaces): 12.7-19.6k splice calls (about 0.5 MB moved per pair),
// 5-15k epoll_pwait, 2-3k futex, 12-17k context switches, 78-94k TCP
// segments into the container (about 50 KB each; a 64 KiB MSS makes 66k
// at least), and 1.4-1.5 s of daemon CPU of which 0.13-0.16 s in user
// space: the bytes' cost is the kernel's two TCP connections over lo, as
// it is pasta's. pasta's ideas (tcp_splice.c), each built into an own loop
// (raw splice(2) with SPLICE_F_MOVE|NONBLOCK on a pooled pipe, waiting
// through RawConn) and run against the standard library's in the same run
// (bench/rootless-compare.sh BASE=, TESTS=in-lo, MTU 1500, TOOLS="tapswitch
// pasta", 3 rounds unless said; ts/base, load average in brackets):
//
//	own loop, read once then empty the pipe (its order)  0.91 [7-12], 0.99 [6-7]
//	fill the pipe until EAGAIN before writing (kept)      1.31 [12-15], 1.17 [6-7]
//	                                          5 rounds:  1.40 [3-3.5], 1.30 [3.5-4.2]
//	                               5 rounds, the source:  1.04 [3.1-3.3], 1.01 [3.3-4.9]
//	                                     the same, ::1:  1.01, 1.04
//	  + SPLICE_F_MORE after a read of >= 90 % of the pipe 1.12 [13-15], 0.94 [9.7], 0.91 [9-11]
//	  + TCP_QUICKACK on the source                        1.09 [13-15], 1.05 [4.6-6.4]
//	  + SO_RCVLOWAT pipe/4 after large reads (2 ms limit) 1.05 [9-11], 1.01 [9-12]
//	  + a pipe of 256 KiB                                 1.03 [12]
//	a pipe of 256 KiB, read once                          1.17 [12-15], 0.95 [3.6-4.6]
//	Nagle on the destination + SPLICE_F_MORE              0.51 [8-10], 1.30 [11]
//
// Filling the pipe was never behind: the writes are larger and fewer; it
// is what spliceCopy does. The rest were not ahead in both of their runs
// and are left out. The kept loop against pasta in the same runs
// (ts/pasta): 0.85-1.08 at load average 3-5, 1.38 and 3.24 at 6-15; in
// two whole runs of TESTS="in-lo in-lo6" (both MTUs, load average
// 2.6-3.4) 1.04-1.36, the eight figures all ahead.

// localSplices is the uplink's state for the splice path.
type localSplices struct {
	dial atomic.Pointer[uplink.LocalDialer]
}

// localSplice is one client connection joined to one inside the
// container.
type localSplice struct {
	host, inner *net.TCPConn
	once        sync.Once
}

// abort ends both connections with a reset (carried).
func (s *localSplice) abort() { s.reset() }

// reset ends both connections with a reset, and reports whether it was
// the first to.
func (s *localSplice) reset() bool {
	first := false
	s.once.Do(func() {
		first = true
		abortHost(s.host)
		abortHost(s.inner)
	})
	return first
}

// SetLocalDialer implements uplink.LocalSplicer: connections accepted on
// published TCP ports from the host's loopback are spliced to connections
// d opens inside the container. nil turns it off.
func (u *Uplink) SetLocalDialer(d uplink.LocalDialer) {
	if d == nil {
		u.local.dial.Store(nil)
		return
	}
	u.local.dial.Store(&d)
}

// spliceLocal carries c, a connection from the host's loopback accepted on
// hostPort, over a connection opened inside the container (to its IPv6
// address when v6 is set), and returns true once c is done with. It
// returns false, having touched nothing, when there is no such path (no
// dialer, or the dialer failed or declined): the caller carries c through
// the netstack then.
func (u *Uplink) spliceLocal(c *net.TCPConn, hostPort uint16, v6 bool) bool {
	dp := u.local.dial.Load()
	if dp == nil || u.cfg.NoSplice || u.stats.tcpActive.Load() >= uint64(u.cfg.MaxTCP) {
		return false
	}
	ctx, cancel := u.dialContext()
	inner, err := (*dp)(ctx, hostPort, v6)
	cancel()
	if err != nil {
		if !errors.Is(err, uplink.ErrNoLocalPath) {
			u.stats.spliceFailed.Add(1)
		}
		return false
	}
	s := &localSplice{host: c, inner: inner}
	u.stats.pubSpliced.Add(1)
	if u.carry(s, func() {
		u.spliceHalf(s, s.inner, s.host) // client -> container
	}, func() {
		u.spliceHalf(s, s.host, s.inner) // container -> client
	}) {
		s.once.Do(func() {}) // ended: no reset from here on
		s.host.Close()
		s.inner.Close()
	}
	return true
}

// spliceHalf moves src to dst until src's EOF, then half-closes dst; an
// error on either resets both.
func (u *Uplink) spliceHalf(s *localSplice, dst, src *net.TCPConn) {
	if err := spliceCopy(dst, src); err != nil {
		if s.reset() {
			u.stats.tcpResets.Add(1)
		}
		return
	}
	dst.CloseWrite()
}
