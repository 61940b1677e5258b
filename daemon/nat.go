package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/uplink/host"
)

// uplinkDev is what the daemon needs of an uplink (uplink.TAP, host.Uplink).
type uplinkDev interface {
	gateway.Uplink
	Start(handle func(pkt []byte), gone func(error))
	Close() error
}

// natState is the daemon's NAT and uplink; nil without an uplink.
type natState struct {
	table *nat.Table
	up    uplinkDev
	host  *host.Uplink   // up, when it is the host uplink; else nil
	tap   *uplink.TAP    // up, when it is a routed TAP; else nil
	cap   *capture.Point // the uplink's capture point
	max   int
	stop  chan struct{}
	done  chan struct{}
}

// openUplink creates the NAT table and the uplink of cfg, not yet started.
func (d *Daemon) openUplink() (*natState, error) {
	if d.cfg.HostUplink != nil {
		if d.cfg.Uplink != nil {
			return nil, invalid("give one uplink: host or tap")
		}
		return d.openHostUplink()
	}
	uc := d.cfg.Uplink
	if uc == nil {
		return nil, nil
	}
	if err := uc.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	if uc.Addr.Masked().Overlaps(d.cfg.Subnet) {
		return nil, invalid("uplink %s overlaps the containers' subnet %s", uc.Addr, d.cfg.Subnet)
	}
	nc := d.cfg.NAT
	nc.External = uc.Addr.Addr()
	nc.Internal = d.cfg.Subnet
	table, err := nat.New(nc)
	if err != nil {
		return nil, invalid("%v", err)
	}
	open := uplink.Open
	if d.cfg.LiveRestore {
		open = uplink.OpenPersistent // restore.go
	}
	up, err := open(*uc)
	if errors.Is(err, tap.ErrLinkExists) && !d.cfg.LiveRestore {
		// Perhaps the persistent TAP of a daemon with --live-restore.
		if tap.Remove(uc.Netns, uc.IfName, uplink.PersistentMAC(*uc)) == nil {
			d.log.Info("removed the uplink TAP a live-restore daemon left (this one runs without --live-restore)", "netns", uc.Netns, "ifname", uc.IfName)
			up, err = open(*uc)
		}
	}
	switch {
	case errors.Is(err, tap.ErrNetnsNotFound):
		return nil, notFound("%v", err)
	case errors.Is(err, tap.ErrLinkExists):
		return nil, conflict("%v", err)
	case errors.Is(err, tap.ErrInvalidConfig):
		return nil, invalid("%v", err)
	case err != nil:
		return nil, err
	}
	return newNATState(table, up, nil, up, &up.Capture), nil
}

func newNATState(table *nat.Table, up uplinkDev, h *host.Uplink, t *uplink.TAP, cp *capture.Point) *natState {
	max := table.Config().MaxEntries
	if max == 0 {
		max = nat.DefaultMaxEntries
	}
	return &natState{table: table, up: up, host: h, tap: t, cap: cp, max: max, stop: make(chan struct{}), done: make(chan struct{})}
}

// openHostUplink creates the NAT table and the host-socket uplink.
func (d *Daemon) openHostUplink() (*natState, error) {
	hc := *d.cfg.HostUplink
	if hc.MTU == 0 {
		hc.MTU = d.cfg.MTU
	}
	if hc.UDPTimeout == 0 {
		hc.UDPTimeout = d.cfg.NAT.Timeouts.UDP
	}
	if hc.ICMPTimeout == 0 {
		hc.ICMPTimeout = d.cfg.NAT.Timeouts.ICMP
	}
	if hc.Logger == nil {
		hc.Logger = d.log
	}
	if err := hc.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	if hc.MTU > d.cfg.MTU {
		// What comes back from the host is handed to the gateway, which
		// takes datagrams of its MTU at most.
		return nil, invalid("host uplink mtu=%d: larger than the gateway's mtu %d", hc.MTU, d.cfg.MTU)
	}
	for _, a := range []netip.Addr{hc.Addr, hc.Loopback} {
		if d.cfg.Subnet.Contains(a) {
			return nil, invalid("host uplink address %s is inside the containers' subnet %s", a, d.cfg.Subnet)
		}
	}
	nc := d.cfg.NAT
	nc.External = hc.Addr
	nc.Internal = d.cfg.Subnet
	table, err := nat.New(nc)
	if err != nil {
		return nil, invalid("%v", err)
	}
	up, err := host.New(hc)
	if err != nil {
		return nil, err
	}
	d.cfg.HostUplink = &hc
	return newNATState(table, up, up, nil, &up.Capture), nil
}

// uplinkString describes the uplink for Info and logs.
func (d *Daemon) uplinkString() string {
	if d.cfg.HostUplink != nil {
		return d.cfg.HostUplink.String()
	}
	return d.cfg.Uplink.String()
}

// startNAT starts the uplink's reader and the expiry loop.
func (d *Daemon) startNAT() {
	n := d.nat
	if n == nil {
		return
	}
	// The name is reserved for it (parseAttach), so this cannot fail.
	if err := d.AddCapturePoint("uplink", "uplink", n.cap); err != nil {
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

// forgetNAT removes what NAT holds for a detached container: its
// published ports and its connections.
func (d *Daemon) forgetNAT(ip netip.Addr) {
	if d.nat == nil {
		return
	}
	d.removePublishesTo(ip)
	d.nat.table.FlushAddr(ip)
}

// removePublishesTo removes the publishes to the container ip, and their
// host listeners.
func (d *Daemon) removePublishesTo(ip netip.Addr) {
	for _, p := range d.nat.table.RemovePublishesTo(ip) {
		if d.nat.host != nil {
			d.nat.host.Unpublish(p)
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

// addPublish publishes p to a, in NAT and as host listeners, or not at
// all. With the host uplink, HOSTIP is the address the host listens on;
// NAT's publish has none (its external address is never on a wire).
func (d *Daemon) addPublish(a *attachment, p nat.Publish) error {
	p.Target, p.Owner = a.ip, a.name
	np := p
	if d.nat.host != nil {
		np.HostIP = netip.Addr{}
	}
	if err := d.nat.table.AddPublish(np); err != nil {
		return publishError(err)
	}
	if d.nat.host == nil {
		return nil
	}
	if err := d.nat.host.Publish(p); err != nil {
		d.nat.table.RemovePublish(p.Proto, p.HostPort)
		if errors.Is(err, host.ErrHostPortInUse) {
			return conflict("publish %s: %v", p, err)
		}
		return fmt.Errorf("publish %s: %w", p, err)
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
	if d.nat.host != nil {
		p = d.withHostIP(p)
		d.nat.host.Unpublish(p)
	}
	return p, nil
}

// withHostIP puts back the host address a publish's listeners use (the
// host uplink's; NAT does not keep it).
func (d *Daemon) withHostIP(p nat.Publish) nat.Publish {
	if d.nat != nil && d.nat.host != nil {
		if ip, ok := d.nat.host.HostIP(p.Proto, p.HostPort); ok {
			p.HostIP = ip
		}
	}
	return p
}

// publishError gives a NAT publish error its kind.
func publishError(err error) error {
	switch {
	case errors.Is(err, nat.ErrPublishOverlap), errors.Is(err, nat.ErrPortInUse):
		return conflict("%v", err)
	case errors.Is(err, nat.ErrNoPublish):
		return notFound("%v", err)
	case errors.Is(err, nat.ErrBadPublish):
		return invalid("%v", err)
	}
	return err
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
		return api.Published{}, publishError(err)
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

func apiPublished(p nat.Publish) api.Published {
	out := api.Published{
		Spec:        p.String(),
		Proto:       p.Proto.String(),
		HostPort:    p.HostPort,
		HostPortEnd: p.HostPortEnd,
		Target:      p.Target.String(),
		TargetPort:  p.TargetPort,
		Port:        p.Owner,
	}
	if p.HostIP.IsValid() {
		out.HostIP = p.HostIP.String()
	}
	return out
}

// Conntrack lists the tracked connections, oldest protocol first as
// conntrack -L does not promise any order: sorted by protocol and tuple.
func (d *Daemon) Conntrack() []api.ConntrackEntry {
	out := []api.ConntrackEntry{}
	if d.nat == nil {
		return out
	}
	for _, e := range d.nat.table.Entries(d.sw.Now()) {
		out = append(out, api.ConntrackEntry{
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
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return fmt.Sprint(out[i].Orig) < fmt.Sprint(out[j].Orig)
	})
	return out
}

func apiTuple(t nat.Tuple) api.Tuple {
	return api.Tuple{
		Src:   netip.AddrFrom4(t.Src.Addr).String(),
		Dst:   netip.AddrFrom4(t.Dst.Addr).String(),
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
