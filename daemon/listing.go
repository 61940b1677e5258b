package daemon

import (
	"net/netip"
	"os"
	"sort"
	"strconv"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// Ports lists the gateway and the attached containers, the gateway first,
// then by name.
func (d *Daemon) Ports() []api.Port {
	infos := map[fdb.PortID]vswitch.PortInfo{}
	for _, p := range d.sw.Ports() {
		infos[p.ID] = p
	}
	pubs := d.publishesOf()
	d.mu.Lock()
	out := make([]api.Port, 0, len(d.ports)+1)
	for _, a := range d.ports {
		p := d.describe(a, infos[a.id])
		p.Publish = pubs[a.name]
		out = append(out, p)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	gw := api.Port{
		Name:     "gateway",
		Kind:     "gateway",
		MAC:      d.gwMAC.String(),
		IP:       netip.PrefixFrom(d.cfg.Gateway, d.cfg.Subnet.Bits()).String(),
		MTU:      d.cfg.MTU,
		Offloads: infos[d.gwID].Offloads.String(),
		Stats:    apiStats(infos[d.gwID].Stats),
		VLAN:     d.cfg.GatewayVLAN,
	}
	return append(append([]api.Port{gw}, out...), d.tunnelPorts(infos)...)
}

// Port describes the port called name.
func (d *Daemon) Port(name string) (api.Port, error) {
	for _, p := range d.Ports() {
		if p.Name == name {
			return p, nil
		}
	}
	return api.Port{}, notFound("no port named %q", name)
}

func (d *Daemon) describe(a *attachment, info vswitch.PortInfo) api.Port {
	p := api.Port{
		Name:       a.name,
		Kind:       "tap",
		IfName:     a.ifname,
		Netns:      a.netns,
		MAC:        a.mac.String(),
		IP:         netip.PrefixFrom(a.ip, d.cfg.Subnet.Bits()).String(),
		MTU:        a.mtu,
		Offloads:   info.Offloads.String(),
		Stats:      apiStats(info.Stats),
		VLAN:       a.vlan,
		Trunk:      a.trunk,
		AllowSpoof: a.allowSpoof,
		AllowRA:    a.allowRA,
		Aliases:    a.aliases,
		ResolvConf: a.resolvConf,
	}
	if a.ip6.IsValid() {
		p.IP6 = netip.PrefixFrom(a.ip6, d.cfg.Subnet6.Bits()).String()
	}
	a.owner.describe(&p)
	return p
}

// portInfo returns the switch's description of port id.
func (d *Daemon) portInfo(id fdb.PortID) vswitch.PortInfo {
	for _, p := range d.sw.Ports() {
		if p.ID == id {
			return p
		}
	}
	return vswitch.PortInfo{}
}

func apiStats(s vswitch.PortStats) api.PortStats {
	return api.PortStats{
		RxPackets:    s.RxPackets,
		RxBytes:      s.RxBytes,
		RxErrors:     s.RxErrors,
		RxFiltered:   s.RxFiltered,
		TxPackets:    s.TxPackets,
		TxBytes:      s.TxBytes,
		TxDropped:    s.TxDropped,
		RxSpoofed:    s.RxSpoofed,
		RxVLANErrors: s.RxVLANErrors,
		RxDenied:     s.RxDenied,
	}
}

// FDB lists the MAC table with port names.
func (d *Daemon) FDB() []api.FDBEntry {
	names := map[fdb.PortID]string{d.gwID: "gateway"}
	d.mu.Lock()
	for _, a := range d.ports {
		names[a.id] = a.name
	}
	d.mu.Unlock()
	vtep := d.tunnelNames(names)
	entries := d.sw.FDB().Entries(d.sw.Now())
	out := make([]api.FDBEntry, 0, len(entries))
	for _, e := range entries {
		name, ok := names[e.Port]
		if !ok {
			name = "#" + strconv.FormatUint(uint64(e.Port), 10)
		}
		out = append(out, api.FDBEntry{
			MAC:    e.MAC.String(),
			VLAN:   e.VLAN,
			Port:   name,
			Static: e.Static,
			Age:    e.Age.Seconds(),
			VTEP:   vtep(e.Port, e.MAC),
		})
	}
	return out
}

// Info describes the daemon.
func (d *Daemon) Info() api.Info {
	info := api.Info{
		Version:     api.Version,
		PID:         os.Getpid(),
		Subnet:      d.cfg.Subnet.String(),
		Gateway:     d.cfg.Gateway.String(),
		GatewayMAC:  d.gwMAC.String(),
		MTU:         d.cfg.MTU,
		FDBAgeing:   d.cfg.FDBAgeing.Seconds(),
		FDBEntries:  d.sw.FDB().Len(),
		Uplink:      d.uplinkString(),
		Mode:        string(d.cfg.Mode),
		Isolate:     d.cfg.Isolate,
		GatewayVLAN: d.cfg.GatewayVLAN,
		StateFile:   d.cfg.StatePath,
		IPRange:     prefixString(d.cfg.IPRange),
		DNS:         d.dnsInfo(),
	}
	if d.cfg.IPv6 {
		info.Subnet6, info.Gateway6 = d.cfg.Subnet6.String(), d.gw.Addr6().Addr().String()
		info.GatewayLL, info.RA = d.gw.LinkLocal().String(), !d.cfg.NoRA
	}
	return info
}

// mode is the switch's mode.
func (d *Daemon) mode() vswitch.Mode { return d.cfg.Mode }

// prefixString is p as text, "" for the zero prefix.
func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
