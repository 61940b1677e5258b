package dns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultResolvConf is where the resolvers of the daemon's namespace are
// named.
const DefaultResolvConf = "/etc/resolv.conf"

// systemdResolvConf lists systemd-resolved's own upstreams, which its stub
// at 127.0.0.53 forwards to (a variable for tests).
var systemdResolvConf = "/run/systemd/resolve/resolv.conf"

const (
	systemdStub = "127.0.0.53"
	// resolvRecheck is how often resolv.conf is checked for changes.
	resolvRecheck = time.Second
)

// ParseUpstream parses ADDR or ADDR:PORT (an IPv6 address with a port in
// brackets); the port defaults to 53.
func ParseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("dns upstream %q: port 0", s)
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns upstream %q: not ADDR or ADDR:PORT", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// upstreams is the list of resolvers to forward to: fixed, or read from a
// resolv.conf and read again when its size, time or inode changes.
type upstreams struct {
	fixed []string // host:port; nil when path is used
	path  string

	mu      sync.Mutex // guards what follows
	checked time.Time
	stamp   fileStamp
	servers []string
	err     error
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func newUpstreams(fixed []netip.AddrPort, path string) *upstreams {
	u := &upstreams{path: path}
	for _, ap := range fixed {
		u.fixed = append(u.fixed, ap.String())
	}
	return u
}

// list returns the upstreams, or an error when resolv.conf names none.
func (u *upstreams) list(now time.Time) ([]string, error) {
	if u.fixed != nil {
		return u.fixed, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.servers != nil && now.Sub(u.checked) < resolvRecheck {
		return u.servers, u.err
	}
	u.checked = now
	st, err := stampOf(u.path)
	if err == nil && st == u.stamp && (u.servers != nil || u.err != nil) {
		return u.servers, u.err
	}
	u.stamp = st
	u.servers, u.err = readResolvConf(u.path)
	return u.servers, u.err
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		st.ino = sys.Ino()
	}
	return st, nil
}

// readResolvConf returns the nameservers of path as host:port, following a
// systemd-resolved stub to the upstreams it exposes.
func readResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return []string{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(cc.Servers) == 1 && cc.Servers[0] == systemdStub {
		if sd, err := dns.ClientConfigFromFile(systemdResolvConf); err == nil && len(sd.Servers) > 0 {
			cc = sd
		}
	}
	if len(cc.Servers) == 0 {
		return []string{}, fmt.Errorf("%s names no nameserver", path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, strconv.Itoa(portOr53(cc.Port))))
	}
	return out, nil
}

func portOr53(p string) int {
	if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
		return n
	}
	return 53
}
