package daemon

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/dns"
	"github.com/tapswitch/tapswitch/gateway"
)

// DNSConfig configures the embedded DNS server (package dns).
type DNSConfig struct {
	// Domain is the containers' domain; "" means dns.DefaultDomain.
	Domain string
	// Upstreams are the resolvers to forward to; empty means those of
	// ResolvConf.
	Upstreams []netip.AddrPort
	// ResolvConf is where the daemon's resolvers are read when Upstreams
	// is empty; "" means /etc/resolv.conf.
	ResolvConf string
	// Rate is the queries per second each client may send; 0 means
	// dns.DefaultRate.
	Rate int
}

// maxAliases bounds the aliases of one port.
const maxAliases = 32

// Where `ip netns exec NAME` finds the files it bind-mounts over /etc
// (iproute2's NETNS_ETC_DIR), for namespaces under /run/netns.
var (
	netnsRunDir = "/run/netns"
	netnsEtcDir = "/etc/netns"
)

// resolvMarker opens every resolv.conf the daemon writes: one it finds
// without it is someone else's and is left alone.
const resolvMarker = "# written by tapswitch"

// openDNS creates the DNS server, when configured, and makes it the
// gateway's local service. It serves once startDNS has run.
func (d *Daemon) openDNS(gcfg *gateway.Config) error {
	c := d.cfg.DNS
	if c == nil {
		return nil
	}
	srv, err := dns.New(dns.Config{
		Addr:         d.cfg.Gateway,
		Subnet:       d.cfg.Subnet,
		Addr6:        gcfg.Addr6.Addr(), // zero without --ipv6 (setup6)
		Subnet6:      gcfg.Addr6.Masked(),
		MTU:          d.cfg.MTU,
		Domain:       c.Domain,
		Upstreams:    c.Upstreams,
		ResolvConf:   c.ResolvConf,
		HostLoopback: gcfg.HostLoopback.IsValid(),
		Isolate:      d.cfg.Isolate,
		Rate:         c.Rate,
	})
	if err != nil {
		return invalid("dns: %v", err)
	}
	d.dns = srv
	gcfg.Local = srv
	return nil
}

// startDNS starts the DNS server on the gateway.
func (d *Daemon) startDNS() error {
	if d.dns == nil {
		return nil
	}
	if err := d.dns.Start(d.gw.SendLocal); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// closeDNS stops the DNS server and removes the resolv.conf files the
// daemon wrote. Ports are gone by then.
func (d *Daemon) closeDNS(gone []*attachment) {
	if d.dns == nil {
		return
	}
	d.dns.Close()
	for _, a := range gone {
		d.removeResolvConf(a)
	}
}

// parseAliases checks the aliases of a port: names as port names are,
// not "gateway", none twice.
func parseAliases(aliases []string) ([]string, error) {
	if len(aliases) > maxAliases {
		return nil, invalid("%d aliases: at most %d", len(aliases), maxAliases)
	}
	var out []string
	for _, al := range aliases {
		if !nameRE.MatchString(al) || strings.HasSuffix(al, ".") {
			return nil, invalid("alias %q: must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", al)
		}
		if strings.EqualFold(al, "gateway") {
			return nil, conflict("alias %q names the gateway", al)
		}
		if slices.ContainsFunc(out, func(s string) bool { return strings.EqualFold(s, al) }) {
			return nil, invalid("alias %q given twice", al)
		}
		out = append(out, al)
	}
	return out, nil
}

// dnsAttachedLocked gives the new port a its names and, for a namespace
// of /run/netns, a resolv.conf naming the server. d.mu is held.
func (d *Daemon) dnsAttachedLocked(a *attachment, noResolvConf bool) {
	if d.dns == nil {
		return
	}
	d.refreshNamesLocked()
	if !noResolvConf {
		d.writeResolvConf(a)
	}
}

// dnsDetached removes the names and the resolv.conf of a, which has left
// d.ports.
func (d *Daemon) dnsDetached(a *attachment) {
	if d.dns == nil {
		return
	}
	d.mu.Lock()
	d.refreshNamesLocked()
	d.mu.Unlock()
	d.removeResolvConf(a)
}

// refreshNamesLocked gives the DNS server the names of the attached ports.
// d.mu is held.
func (d *Daemon) refreshNamesLocked() {
	hosts := make([]dns.Host, 0, len(d.ports))
	for _, a := range d.ports {
		hosts = append(hosts, dns.Host{
			Name:    a.name,
			Aliases: a.aliases,
			IPv4:    a.ip,
			IPv6:    a.ip6,
			VLANs:   append([]uint16{a.vlan}, a.trunk...),
		})
	}
	d.dns.SetHosts(hosts)
}

// SetAliases replaces the DNS aliases of the port called name.
func (d *Daemon) SetAliases(name string, aliases []string) (api.Port, error) {
	if d.dns == nil {
		return api.Port{}, conflict("the DNS server is off (run --dns=false)")
	}
	al, err := parseAliases(aliases)
	if err != nil {
		return api.Port{}, err
	}
	d.mu.Lock()
	a, ok := d.ports[name]
	if ok {
		a.aliases = al
		d.refreshNamesLocked()
	}
	d.mu.Unlock()
	if !ok {
		return api.Port{}, notFound("no port named %q", name)
	}
	d.log.Info("aliases", "port", name, "aliases", al)
	d.savePorts()
	return d.Port(name)
}

// resolvConfPath returns where `ip netns exec` finds the resolv.conf of
// the namespace of a, or "" when it is not one of /run/netns.
func resolvConfPath(netns string) string {
	if filepath.Dir(netns) != netnsRunDir {
		return ""
	}
	return filepath.Join(netnsEtcDir, filepath.Base(netns), "resolv.conf")
}

// resolvConf is the resolv.conf of a container on this switch: the
// server's IPv4 address, and its IPv6 one with --ipv6.
func (d *Daemon) resolvConf(name string) string {
	ns6 := ""
	if a := d.dns.Addr6(); a.IsValid() {
		ns6 = "nameserver " + a.String() + "\n"
	}
	return fmt.Sprintf("%s for port %s; removed on detach\nnameserver %s\n%ssearch %s\n",
		resolvMarker, name, d.cfg.Gateway, ns6, d.dns.Domain())
}

// writeResolvConf writes the resolv.conf of the namespace of a, unless one
// that the daemon did not write is there. Failures are logged: the port
// works without it.
func (d *Daemon) writeResolvConf(a *attachment) {
	path := resolvConfPath(a.netns)
	if path == "" {
		return
	}
	switch b, err := readRegular(path); {
	case err == nil && !strings.HasPrefix(string(b), resolvMarker):
		d.log.Warn("resolv.conf not written: one is there already", "port", a.name, "path", path)
		return
	case err != nil && !errors.Is(err, os.ErrNotExist):
		d.log.Warn("resolv.conf not written: what is there cannot be read", "port", a.name, "err", err)
		return
	}
	dir := filepath.Dir(path)
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.log.Warn("resolv.conf not written", "port", a.name, "err", err)
		return
	}
	tmp := path + ".tapswitch." + strconv.Itoa(os.Getpid())
	err := os.WriteFile(tmp, []byte(d.resolvConf(a.name)), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		d.log.Warn("resolv.conf not written", "port", a.name, "err", err)
		return
	}
	a.resolvConf = path
	a.madeEtcDir = errors.Is(statErr, os.ErrNotExist)
}

// removeResolvConf removes the resolv.conf the daemon wrote for a, and its
// directory if the daemon made it and it is empty.
func (d *Daemon) removeResolvConf(a *attachment) {
	if a.resolvConf == "" {
		return
	}
	if b, err := readRegular(a.resolvConf); err == nil && strings.HasPrefix(string(b), resolvMarker) {
		os.Remove(a.resolvConf)
	}
	if a.madeEtcDir {
		os.Remove(filepath.Dir(a.resolvConf)) // fails, harmlessly, if not empty
	}
}

// readRegular reads the file at path if it is a regular file of at most
// 64 KiB, without blocking: a FIFO put in place of a resolv.conf must not
// wedge an attach, which writes it under the daemon's lock, or Close.
func readRegular(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// dnsInfo describes the server for Info; nil when it is off.
func (d *Daemon) dnsInfo() *api.DNSInfo {
	if d.dns == nil {
		return nil
	}
	i := &api.DNSInfo{Nameserver: d.cfg.Gateway.String(), Search: []string{d.dns.Domain()}}
	if a := d.dns.Addr6(); a.IsValid() {
		i.Nameserver6 = a.String()
	}
	for _, u := range d.cfg.DNS.Upstreams {
		i.Upstreams = append(i.Upstreams, u.String())
	}
	return i
}

// dnsStats returns the server's counters for Stats; nil when it is off.
func (d *Daemon) dnsStats() *api.DNSStats {
	if d.dns == nil {
		return nil
	}
	st := d.dns.Stats()
	out := &api.DNSStats{
		Queries:            map[string]uint64{},
		Results:            map[string]uint64{},
		UpstreamLatency:    map[string]uint64{},
		Local:              st.Local,
		CacheHits:          st.CacheHits,
		CacheMisses:        st.CacheMisses,
		CacheEntries:       st.CacheEntries,
		Upstream:           st.Upstream,
		UpstreamErrors:     st.UpstreamErrors,
		TCPRetries:         st.TCPRetries,
		UpstreamLatencySum: st.UpstreamLatencySum.Seconds(),
		Malformed:          st.Malformed,
		RateLimited:        st.RateLimited,
		Truncated:          st.Truncated,
	}
	for i, t := range dns.QueryTypes {
		out.Queries[t] = st.Queries[i]
	}
	for i, r := range dns.Results {
		out.Results[r] = st.Results[i]
	}
	for i := range dns.LatencyBuckets {
		out.UpstreamLatency[latencyLabel(i)] = st.UpstreamLatency[i]
	}
	return out
}

// latencyLabel is the upper bound of latency bucket i in seconds, "+Inf"
// for the last.
func latencyLabel(i int) string {
	if i == len(dns.LatencyBuckets)-1 {
		return "+Inf"
	}
	return strconv.FormatFloat(dns.LatencyBuckets[i].Seconds(), 'g', -1, 64)
}
