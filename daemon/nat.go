package daemon

import (
	"cmp"
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/uplink"
)

// natState is the daemon's NAT and uplink; nil without an uplink.
type natState struct {
	table *nat.Table
	up    uplink.Uplink
	pub   uplink.Publisher // up, when it carries published ports itself; else nil
	max   int
	stop  chan struct{}
	done  chan struct{}
}

// openUplink opens the uplink of cfg, not yet started, and creates its NAT
// table.
func (d *Daemon) openUplink() (*natState, error) {
	spec := d.cfg.Uplink
	if spec == nil {
		return nil, nil
	}
	up, err := spec.Open(uplink.Env{
		Subnet:      d.cfg.Subnet,
		Subnet6:     d.cfg.Subnet6, // zero without --ipv6
		MTU:         d.cfg.MTU,
		UDPTimeout:  d.cfg.NAT.Timeouts.UDP,
		ICMPTimeout: d.cfg.NAT.Timeouts.ICMP,
		Log:         d.log,
		Persist:     d.cfg.LiveRestore, // restore.go
	})
	if err != nil {
		return nil, errorKind(err)
	}
	nc := d.cfg.NAT
	nc.External = up.Addr()
	nc.Internal = d.cfg.Subnet
	if n6, ok := up.(uplink.NAT66); ok && n6.Addr6().IsValid() {
		if !d.cfg.IPv6 {
			up.Close()
			return nil, invalid("the uplink's ip6=%s needs run --ipv6 (the containers have no IPv6 to masquerade)", n6.Addr6())
		}
		nc.External6, nc.Internal6 = n6.Addr6(), d.cfg.Subnet6 // NAT66
	}
	table, err := nat.New(nc)
	if err != nil {
		up.Close()
		return nil, invalid("%v", err)
	}
	max := table.Config().MaxEntries
	if max == 0 {
		max = nat.DefaultMaxEntries
	}
	n := &natState{table: table, up: up, max: max, stop: make(chan struct{}), done: make(chan struct{})}
	n.pub, _ = up.(uplink.Publisher)
	return n, nil
}

// uplinkString describes the uplink for Info and logs.
func (d *Daemon) uplinkString() string {
	if d.nat == nil {
		return uplink.None
	}
	return d.nat.up.String()
}

// startNAT starts the uplink's reader and the expiry loop.
func (d *Daemon) startNAT() {
	n := d.nat
	if n == nil {
		return
	}
	// The name is reserved for it (parseAttach), so this cannot fail.
	if err := d.AddCapturePoint("uplink", "uplink", n.up.CapturePoint()); err != nil {
		d.log.Error("uplink capture point", "err", err)
	}
	n.up.Start(d.gw.FromUplink, func(err error) {
		d.log.Error("uplink gone: its TAP or namespace was deleted; outside traffic stops", "uplink", d.uplinkString(), "err", err)
	})
	every := expireInterval(d.cfg.NAT.Timeouts)
	go func() {
		defer close(n.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				n.table.Expire(d.sw.Now())
				if n.table.Compact() {
					// A flood ended: give its memory back.
					debug.FreeOSMemory()
				}
			}
		}
	}()
}

// expireInterval is how often NAT.Expire runs: a quarter of the shortest
// timeout, between 100 ms and 1 s.
func expireInterval(t nat.Timeouts) time.Duration {
	shortest := time.Second * 4
	for _, v := range []time.Duration{t.TCPEstablished, t.TCPTransitory, t.UDP, t.UDPUnreplied, t.ICMP} {
		if v > 0 && v < shortest {
			shortest = v
		}
	}
	return min(max(shortest/4, 100*time.Millisecond), time.Second)
}

// closeNAT stops the expiry loop and closes the uplink (its TAP
// disappears).
func (d *Daemon) closeNAT() {
	n := d.nat
	if n == nil {
		return
	}
	close(n.stop)
	<-n.done
	n.up.Close()
}

// forgetNAT removes what NAT holds for a detached container's address
// (IPv4 or IPv6): its published ports and its connections. The zero Addr
// is nothing.
func (d *Daemon) forgetNAT(ip netip.Addr) {
	if d.nat == nil || !ip.IsValid() {
		return
	}
	d.removePublishesTo(ip)
	d.nat.table.FlushAddr(ip)
	d.local.forget(ip)
}

// removePublishesTo removes the publishes to the container ip, and their
// host listeners.
func (d *Daemon) removePublishesTo(ip netip.Addr) {
	for _, p := range d.nat.table.RemovePublishesTo(ip) {
		if d.nat.pub != nil {
			d.nat.pub.Unpublish(p)
		}
	}
}

// parsePublishes parses -p specs; it fails without an uplink.
func (d *Daemon) parsePublishes(specs []string) ([]nat.Publish, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if d.nat == nil {
		return nil, invalid("publishing ports needs an uplink: the daemon runs with --uplink none")
	}
	out := make([]nat.Publish, 0, len(specs))
	for _, s := range specs {
		p, err := nat.ParsePublish(s)
		if err != nil {
			return nil, invalid("%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// addPublishes publishes pubs to the container a (all or none): in NAT
// and, with the host uplink, as host listeners.
func (d *Daemon) addPublishes(a *attachment, pubs []nat.Publish) error {
	for i, p := range pubs {
		if err := d.addPublish(a, p); err != nil {
			for _, q := range pubs[:i] {
				d.removePublish(q.Proto, q.HostPort)
			}
			return err
		}
	}
	return nil
}

// addPublish publishes p to a, in NAT and, with an uplink.Publisher, as
// host listeners, or not at all. With a Publisher, HOSTIP is the address
// the host listens on; NAT's publish has none (its external address is
// never on a wire).
func (d *Daemon) addPublish(a *attachment, p nat.Publish) error {
	p.Target, p.Target6, p.Owner = a.ip, a.ip6, a.name
	np := p
	pub := d.nat.pub
	if pub != nil {
		np.HostIP = netip.Addr{}
	} else if p.HostIP.Is6() && !d.nat.table.Config().External6.IsValid() {
		// An IPv6 publish through an uplink that is not a host listener
		// needs NAT66.
		return invalid("publish %s: publishing on an IPv6 address needs NAT66: give the %s uplink ip6= (with run --ipv6), publish on IPv4, or use the host uplink", p, d.cfg.Uplink.Kind())
	}
	if err := d.nat.table.AddPublish(np); err != nil {
		return errorKind(err)
	}
	if pub == nil {
		return nil
	}
	if err := pub.Publish(p); err != nil {
		d.nat.table.RemovePublish(p.Proto, p.HostPort)
		return errorKind(fmt.Errorf("publish %s: %w", p, err))
	}
	return nil
}

// removePublish removes the publish of proto containing hostPort from NAT
// and closes its host listeners.
func (d *Daemon) removePublish(proto nat.Proto, hostPort uint16) (nat.Publish, error) {
	p, err := d.nat.table.RemovePublish(proto, hostPort)
	if err != nil {
		return p, err
	}
	if d.nat.pub != nil {
		p = d.withHostIP(p)
		d.nat.pub.Unpublish(p)
	}
	return p, nil
}

// withHostIP puts back the host address a publish's listeners use (the
// uplink.Publisher's; NAT does not keep it).
func (d *Daemon) withHostIP(p nat.Publish) nat.Publish {
	if d.nat != nil && d.nat.pub != nil {
		if ip, ok := d.nat.pub.HostIP(p.Proto, p.HostPort); ok {
			p.HostIP = ip
		}
	}
	return p
}

// Publish publishes a port of an attached container at runtime.
func (d *Daemon) Publish(req api.PublishRequest) (api.Published, error) {
	pubs, err := d.parsePublishes([]string{req.Spec})
	if err != nil {
		return api.Published{}, err
	}
	defer d.savePorts() // after the unlock: kept with --live-restore
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.ports[req.To]
	if !ok {
		return api.Published{}, notFound("no port named %q to publish to", req.To)
	}
	if err := d.addPublishes(a, pubs); err != nil {
		return api.Published{}, err
	}
	p := pubs[0]
	p.Target, p.Owner = a.ip, a.name
	d.log.Info("published", "spec", p.String(), "port", a.name)
	return apiPublished(p), nil
}

// Unpublish removes the published range of proto containing hostPort.
func (d *Daemon) Unpublish(hostPort, proto string) (api.Published, error) {
	if d.nat == nil {
		return api.Published{}, notFound("no uplink, so nothing is published")
	}
	n, err := strconv.ParseUint(hostPort, 10, 16)
	if err != nil || n == 0 {
		return api.Published{}, invalid("host port %q: not a port number (1-65535)", hostPort)
	}
	var pr nat.Proto
	switch strings.ToLower(proto) {
	case "tcp":
		pr = nat.TCP
	case "udp":
		pr = nat.UDP
	default:
		return api.Published{}, invalid("protocol %q: must be tcp or udp", proto)
	}
	p, err := d.removePublish(pr, uint16(n))
	if err != nil {
		return api.Published{}, errorKind(err)
	}
	d.savePorts()
	d.log.Info("unpublished", "spec", p.String(), "port", p.Owner)
	return apiPublished(p), nil
}

// Publishes lists the published ports.
func (d *Daemon) Publishes() []api.Published {
	out := []api.Published{}
	if d.nat == nil {
		return out
	}
	for _, p := range d.nat.table.Publishes() {
		out = append(out, apiPublished(d.withHostIP(p)))
	}
	return out
}

// publishesOf returns the specs published to each port name.
func (d *Daemon) publishesOf() map[string][]string {
	m := map[string][]string{}
	if d.nat == nil {
		return m
	}
	for _, p := range d.nat.table.Publishes() {
		m[p.Owner] = append(m[p.Owner], d.withHostIP(p).String())
	}
	return m
}

// addrString returns a as a string, "" for the zero Addr.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func apiPublished(p nat.Publish) api.Published {
	out := api.Published{
		Spec:        p.String(),
		Proto:       p.Proto.String(),
		HostPort:    p.HostPort,
		HostPortEnd: p.HostPortEnd,
		Target:      p.Target.String(),
		Target6:     addrString(p.Target6),
		TargetPort:  p.TargetPort,
		Port:        p.Owner,
	}
	if p.HostIP.IsValid() {
		out.HostIP = p.HostIP.String()
	}
	return out
}

// Conntrack lists the tracked connections, oldest protocol first as
// conntrack -L does not promise any order: sorted by protocol and original
// tuple (compareEntries).
func (d *Daemon) Conntrack() []api.ConntrackEntry {
	out := []api.ConntrackEntry{}
	if d.nat == nil {
		return out
	}
	entries := d.nat.table.Entries(d.sw.Now())
	slices.SortStableFunc(entries, compareEntries)
	for _, e := range entries {
		out = append(out, api.ConntrackEntry{
			Family:       family(e.Orig),
			Proto:        e.Proto.String(),
			State:        e.State,
			Timeout:      max(e.Timeout, 0).Seconds(),
			Orig:         apiTuple(e.Orig),
			Reply:        apiTuple(e.Reply),
			OrigPackets:  e.OrigPackets,
			OrigBytes:    e.OrigBytes,
			ReplyPackets: e.ReplyPackets,
			ReplyBytes:   e.ReplyBytes,
		})
	}
	return out
}

// compareEntries orders conntrack entries by protocol name, then by the
// addresses and ports of their original tuple, as numbers (10.0.0.2
// before 10.0.0.10, IPv4 before IPv6): source address and port, then
// destination address and port.
func compareEntries(a, b nat.Entry) int {
	if a.Proto != b.Proto {
		return strings.Compare(a.Proto.String(), b.Proto.String())
	}
	x, y := a.Orig, b.Orig
	return cmp.Or(
		x.Src.Addr.Compare(y.Src.Addr),
		cmp.Compare(x.Src.Port, y.Src.Port),
		x.Dst.Addr.Compare(y.Dst.Addr),
		cmp.Compare(x.Dst.Port, y.Dst.Port),
	)
}

// family returns "ipv4" or "ipv6", as `conntrack -f` names them.
func family(t nat.Tuple) string {
	if t.Is6() {
		return "ipv6"
	}
	return "ipv4"
}

func apiTuple(t nat.Tuple) api.Tuple {
	return api.Tuple{
		Src:   t.Src.Addr.String(),
		Dst:   t.Dst.Addr.String(),
		Sport: t.Src.Port,
		Dport: t.Dst.Port,
	}
}

// ConntrackStats returns NAT's counters.
func (d *Daemon) ConntrackStats() api.ConntrackStats {
	out := api.ConntrackStats{Drops: map[string]uint64{}}
	if d.nat == nil {
		return out
	}
	s := d.nat.table.Stats()
	out.Entries = s.EntriesTotal()
	out.TCP, out.UDP, out.ICMP = s.Entries[0], s.Entries[1], s.Entries[2]
	out.IPv6 = s.Entries6[0] + s.Entries6[1] + s.Entries6[2]
	out.Max = d.nat.max
	out.Mappings = s.Mappings
	out.Created, out.Expired, out.Evicted, out.Refused, out.Flushed = s.Created, s.Expired, s.Evicted, s.Refused, s.Flushed
	out.TranslatedOut, out.TranslatedIn, out.ICMPErrors = s.TranslatedOut, s.TranslatedIn, s.ICMPErrors
	for i, n := range s.Drops {
		if n != 0 {
			out.Drops[nat.DropReason(i).String()] = n
		}
	}
	return out
}

// FlushConntrack removes every tracked connection.
func (d *Daemon) FlushConntrack() api.FlushResult {
	if d.nat == nil {
		return api.FlushResult{}
	}
	n := d.nat.table.Flush()
	d.log.Info("conntrack flushed", "entries", n)
	return api.FlushResult{Flushed: n}
}
