package daemon

import (
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/gateway"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/vxlan"
	"github.com/tapswitch/tapswitch/wire"
)

// tunnels are the daemon's VXLAN tunnels: ports of the switch like the
// containers' TAPs, one per VNI, each mapped to a VLAN of the switch.
type tunnels struct {
	mu    sync.Mutex // guards byVNI
	byVNI map[uint32]*tunnel
}

type tunnel struct {
	t    *vxlan.Tunnel
	id   fdb.PortID
	spec api.VXLANSpec
	vlan uint16
}

// vxlanMTU is the MTU containers get by default with the tunnel of spec:
// the underlay's less the encapsulation (50 bytes over IPv4, 70 over
// IPv6), so that their packets cross without fragmentation.
func vxlanMTU(spec api.VXLANSpec) (int, error) {
	local, err := netip.ParseAddr(spec.Local)
	if err != nil {
		return 0, invalid("vxlan local %q: not an IP address", spec.Local)
	}
	mtu := spec.MTU
	if mtu == 0 {
		if mtu, err = vxlan.UnderlayMTU(local.Unmap()); err != nil {
			return 0, invalid("vxlan: %v", err)
		}
	}
	over := vxlan.Overhead4
	if !local.Unmap().Is4() {
		over = vxlan.Overhead6
	}
	return min(mtu-over, 65535), nil
}

// tapGSOMaxSegs is the gso_max_segs of a container's TAP of MTU mtu: with
// a VXLAN tunnel, as many segments as the tunnel sends in one sendmsg
// (vxlan.SegmentsPerSend), so that a super-frame crosses whole; without,
// 0 (no bound: the super-frames stay at the kernel's 64 KiB). Attach
// sets it on a new TAP; AddVXLAN and DeleteVXLAN bring the TAPs attached
// before them to the new value, and restore the TAPs it adopts
// (syncGSOCaps, gsocap.go), for the TCP connections made afterwards.
func (d *Daemon) tapGSOMaxSegs(mtu int) int {
	d.vx.mu.Lock()
	defer d.vx.mu.Unlock()
	if len(d.vx.byVNI) == 0 {
		return 0
	}
	return vxlan.SegmentsPerSend(mtu)
}

// AddVXLAN opens the tunnel of spec and adds it to the switch as a port of
// spec.VLAN (the default VLAN if 0). Every tunnel after the first, and the
// first when there are more, needs a VLAN of its own. The first tunnel
// bounds the super-frames of the containers attached before it
// (syncGSOCaps).
func (d *Daemon) AddVXLAN(spec api.VXLANSpec) (api.VXLAN, error) {
	v, err := d.addVXLAN(spec)
	if err == nil {
		d.syncGSOCaps()
	}
	return v, err
}

func (d *Daemon) addVXLAN(spec api.VXLANSpec) (api.VXLAN, error) {
	if err := spec.Check(); err != nil {
		return api.VXLAN{}, invalid("%v", err)
	}
	vlan := spec.VLAN
	if vlan == 0 {
		vlan = vswitch.DefaultVLAN
	}
	d.vx.mu.Lock()
	defer d.vx.mu.Unlock()
	if d.vx.byVNI == nil {
		d.vx.byVNI = map[uint32]*tunnel{}
	}
	if _, ok := d.vx.byVNI[spec.VNI]; ok {
		return api.VXLAN{}, conflict("vni %d already has a tunnel", spec.VNI)
	}
	for _, o := range d.vx.byVNI {
		if spec.VLAN == 0 || o.spec.VLAN == 0 {
			return api.VXLAN{}, invalid("vni %d: several tunnels need vlan= each (vni %d has %s)", spec.VNI, o.spec.VNI, vlanWord(o.spec.VLAN))
		}
		if o.vlan == vlan {
			return api.VXLAN{}, conflict("vlan %d is already mapped to vni %d", vlan, o.spec.VNI)
		}
	}
	cfg := vxlan.Config{
		VNI:        spec.VNI,
		Local:      netip.MustParseAddr(spec.Local),
		Port:       spec.Port,
		MTU:        spec.MTU,
		Allow:      d.cfg.VXLANAllow,
		Table:      vxlan.TableConfig{Ageing: d.cfg.FDBAgeing},
		Clock:      d.sw.Now,
		GatewayMAC: d.gwMAC,
		Suppress:   spec.SuppressOn(),
	}
	for _, r := range spec.Remotes {
		cfg.Remotes = append(cfg.Remotes, netip.MustParseAddr(r))
	}
	// A remote may not claim a MAC of a local port: one a container was
	// attached with (even before it sends), or one the switch has
	// behind another of its ports. The tunnel checks every frame.
	var self atomic.Uint32
	fdbt := d.sw.FDB()
	cfg.LocalMAC = func(mac fdb.MAC) bool {
		if _, ok := d.sw.PortOfMAC(mac); ok {
			return true
		}
		id, ok := fdbt.Lookup(fdb.Key{MAC: mac, VLAN: vlan}, d.sw.Now())
		return ok && uint32(id) != self.Load()
	}
	// Attach refuses tunnel names (tunnelName), so no container has it.
	cfg.Name = "vxlan" + strconv.FormatUint(uint64(spec.VNI), 10)
	t, err := vxlan.New(cfg)
	if err != nil {
		return api.VXLAN{}, errorKind(err)
	}
	// AddPortConfig closes the tunnel if it fails.
	id, err := d.sw.AddPortConfig(t, vswitch.PortConfig{VLAN: vlan})
	if err != nil {
		return api.VXLAN{}, err
	}
	self.Store(uint32(id))
	tn := &tunnel{t: t, id: id, spec: spec, vlan: vlan}
	d.vx.byVNI[spec.VNI] = tn
	d.log.Info("vxlan tunnel", "name", cfg.Name, "spec", spec.String(), "underlay_mtu", t.MTU(), "inner_mtu", t.InnerMTU())
	return d.describeTunnel(tn), nil
}

// gatewayIPs are the gateway's addresses: IPv4, and with IPv6 its global
// and link-local ones.
func gatewayIPs(gw *gateway.Gateway, mac fdb.MAC) []netip.Addr {
	ips := []netip.Addr{gw.Addr().Addr()}
	if a6 := gw.Addr6(); a6.IsValid() {
		ips = append(ips, a6.Addr(), netip.AddrFrom16(wire.LinkLocal(mac)))
	}
	return ips
}

// tunnelName reports whether name is one a tunnel's port may have:
// "vxlan" and a VNI, as Linux names its devices.
func tunnelName(name string) bool {
	n, ok := strings.CutPrefix(name, "vxlan")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 24)
	return err == nil
}

func vlanWord(v uint16) string {
	if v == 0 {
		return "none"
	}
	return "vlan " + strconv.Itoa(int(v))
}

// DeleteVXLAN removes the tunnel of vni and forgets the MACs behind it.
// The last tunnel takes the bound off the containers' super-frames
// (syncGSOCaps).
func (d *Daemon) DeleteVXLAN(vni uint32) error {
	d.vx.mu.Lock()
	tn, ok := d.vx.byVNI[vni]
	delete(d.vx.byVNI, vni)
	d.vx.mu.Unlock()
	if !ok {
		return notFound("no tunnel for vni %d", vni)
	}
	defer d.syncGSOCaps()
	if err := d.sw.RemovePort(tn.id); err != nil && !errors.Is(err, vswitch.ErrNoPort) {
		return err
	}
	d.log.Info("vxlan tunnel removed", "vni", vni)
	return nil
}

// tunnelOf returns the tunnel of vni.
func (d *Daemon) tunnelOf(vni uint32) (*tunnel, error) {
	d.vx.mu.Lock()
	tn, ok := d.vx.byVNI[vni]
	d.vx.mu.Unlock()
	if !ok {
		return nil, notFound("no tunnel for vni %d", vni)
	}
	return tn, nil
}

// AddVXLANStatic pins a MAC behind a VTEP of the tunnel of vni: in the
// tunnel's table, and in the switch's FDB behind the tunnel port, so that
// frames for it are neither flooded nor learned elsewhere.
func (d *Daemon) AddVXLANStatic(vni uint32, s api.VXLANStatic) error {
	tn, err := d.tunnelOf(vni)
	if err != nil {
		return err
	}
	mac, err := fdb.ParseMAC(s.MAC)
	if err != nil {
		return invalid("mac %q: %v", s.MAC, err)
	}
	vtep, err := netip.ParseAddr(s.VTEP)
	if err != nil || vtep.Unmap().Is4() != tn.t.Config().Local.Is4() {
		return invalid("vtep %q: not an address of the tunnel's family", s.VTEP)
	}
	if err := tn.t.AddStatic(mac, vtep); err != nil {
		return errorKind(err)
	}
	if err := d.sw.FDB().AddStatic(fdb.Key{MAC: mac, VLAN: tn.vlan}, tn.id); err != nil {
		tn.t.Table().Delete(mac)
		return conflict("%v", err)
	}
	return nil
}

// DeleteVXLANStatic removes the entry of mac from the tunnel of vni and
// from the switch's FDB.
func (d *Daemon) DeleteVXLANStatic(vni uint32, mac string) error {
	tn, err := d.tunnelOf(vni)
	if err != nil {
		return err
	}
	m, err := fdb.ParseMAC(mac)
	if err != nil {
		return invalid("mac %q: %v", mac, err)
	}
	if !tn.t.Table().Delete(m) {
		return notFound("no entry for %s on vni %d", m, vni)
	}
	d.sw.FDB().Delete(fdb.Key{MAC: m, VLAN: tn.vlan})
	return nil
}

// VXLANNeighs lists the addresses learned behind the tunnel of vni (for
// ARP and ND suppression), by address.
func (d *Daemon) VXLANNeighs(vni uint32) ([]api.VXLANNeigh, error) {
	tn, err := d.tunnelOf(vni)
	if err != nil {
		return nil, err
	}
	es := tn.t.Neigh().Entries(tn.t.Now())
	out := make([]api.VXLANNeigh, 0, len(es))
	for _, e := range es {
		out = append(out, api.VXLANNeigh{IP: e.IP.String(), MAC: e.MAC.String(), Age: e.Age.Seconds()})
	}
	return out, nil
}

// VXLANs lists the tunnels by VNI.
func (d *Daemon) VXLANs() []api.VXLAN {
	list := d.tunnelList()
	out := make([]api.VXLAN, 0, len(list))
	for _, tn := range list {
		out = append(out, d.describeTunnel(tn))
	}
	return out
}

func (d *Daemon) tunnelList() []*tunnel {
	d.vx.mu.Lock()
	list := make([]*tunnel, 0, len(d.vx.byVNI))
	for _, tn := range d.vx.byVNI {
		list = append(list, tn)
	}
	d.vx.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].spec.VNI < list[j].spec.VNI })
	return list
}

func (d *Daemon) describeTunnel(tn *tunnel) api.VXLAN {
	cfg := tn.t.Config()
	s := tn.t.Stats()
	v := api.VXLAN{
		Name: cfg.Name, Spec: tn.spec, Port: cfg.Port, VLAN: tn.vlan, MTU: tn.t.MTU(), InnerMTU: tn.t.InnerMTU(),
		Stats: api.VXLANStats{
			RxMalformed: s.RxMalformed, RxBadVNI: s.RxBadVNI, RxDenied: s.RxDenied, RxClaimed: s.RxClaimed,
			RxNoVTEP: s.RxNoVTEP, TxTooBig: s.TxTooBig, TxGateway: s.TxGateway, TxErrors: s.TxErrors,
			MACs: s.Table.Entries, MACsLearned: s.Table.Learned, MACsMoved: s.Table.Moved, MACTableFull: s.Table.Full,
			Suppress: cfg.Suppress, ARPSuppressed: s.ARPSuppressed, NDSuppressed: s.NDSuppressed,
			Neighs: s.Neigh.Entries, NeighsLearned: s.Neigh.Learned, NeighsMoved: s.Neigh.Moved, NeighTableFull: s.Neigh.Full,
		},
	}
	for _, p := range cfg.Allow {
		v.Allow = append(v.Allow, p.String())
	}
	for _, vs := range tn.t.VTEPs() {
		v.VTEPs = append(v.VTEPs, api.VTEPStats{Addr: vs.Addr.String(), Remote: vs.Remote, RxPackets: vs.RxPackets,
			RxBytes: vs.RxBytes, TxPackets: vs.TxPackets, TxBytes: vs.TxBytes, TxDropped: vs.TxDropped})
	}
	return v
}

// tunnelNames adds the tunnels' port names to names, and returns a
// function that names the VTEP a MAC behind one of them is at ("" for
// other ports).
func (d *Daemon) tunnelNames(names map[fdb.PortID]string) func(fdb.PortID, fdb.MAC) string {
	byID := map[fdb.PortID]*tunnel{}
	for _, tn := range d.tunnelList() {
		names[tn.id] = tn.t.Name()
		byID[tn.id] = tn
	}
	return func(id fdb.PortID, mac fdb.MAC) string {
		tn := byID[id]
		if tn == nil {
			return ""
		}
		if v, ok := tn.t.Table().Lookup(mac, tn.t.Now()); ok {
			return v.Addr.String()
		}
		return ""
	}
}

// tunnelPorts describes the tunnels as ports, for `tapswitch ports`.
func (d *Daemon) tunnelPorts(infos map[fdb.PortID]vswitch.PortInfo) []api.Port {
	var out []api.Port
	for _, tn := range d.tunnelList() {
		info := infos[tn.id]
		out = append(out, api.Port{Name: tn.t.Name(), Kind: "vxlan", MTU: tn.t.InnerMTU(), VLAN: tn.vlan,
			Offloads: info.Offloads.String(), Stats: apiStats(info.Stats)})
	}
	return out
}

// tunnelPoints are the tunnels' capture points.
func (d *Daemon) tunnelPoints() []namedPoint {
	var out []namedPoint
	for _, tn := range d.tunnelList() {
		if p, err := d.sw.CapturePoint(tn.id); err == nil {
			out = append(out, namedPoint{name: tn.t.Name(), kind: "vxlan", id: tn.id, p: p})
		}
	}
	return out
}

// vxlanRoutes adds the tunnel endpoints (api/vxlan.go) to mux; bodies are
// decoded as strictly as every other POST's (decodeBody).
func (d *Daemon) vxlanRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/vxlan", getter(d.VXLANs))
	mux.HandleFunc("POST /v1/vxlan", decoded(http.StatusCreated, func(_ *http.Request, spec api.VXLANSpec) (api.VXLAN, error) {
		return d.AddVXLAN(spec)
	}))
	mux.HandleFunc("DELETE /v1/vxlan/{vni}", func(w http.ResponseWriter, r *http.Request) {
		replyNoContent(w, withVNI(r, d.DeleteVXLAN))
	})
	mux.HandleFunc("POST /v1/vxlan/{vni}/fdb", func(w http.ResponseWriter, r *http.Request) {
		var s api.VXLANStatic
		if err := decodeBody(w, r, &s); err != nil {
			writeError(w, err)
			return
		}
		replyNoContent(w, withVNI(r, func(vni uint32) error { return d.AddVXLANStatic(vni, s) }))
	})
	mux.HandleFunc("GET /v1/vxlan/{vni}/neigh", func(w http.ResponseWriter, r *http.Request) {
		var out []api.VXLANNeigh
		err := withVNI(r, func(vni uint32) (err error) { out, err = d.VXLANNeighs(vni); return err })
		reply(w, http.StatusOK, out, err)
	})
	mux.HandleFunc("DELETE /v1/vxlan/{vni}/fdb/{mac}", func(w http.ResponseWriter, r *http.Request) {
		replyNoContent(w, withVNI(r, func(vni uint32) error { return d.DeleteVXLANStatic(vni, r.PathValue("mac")) }))
	})
}

// withVNI runs fn on the request's {vni}, or says why it is not a VNI.
func withVNI(r *http.Request, fn func(vni uint32) error) error {
	vni, err := strconv.ParseUint(r.PathValue("vni"), 10, 24)
	if err != nil {
		return invalid("vni %q: not a number below 16777216", r.PathValue("vni"))
	}
	return fn(uint32(vni))
}

// Per-VTEP metrics.
var (
	mVTEPPackets = desc("vxlan_vtep_packets_total", "Frames exchanged with a remote VTEP, by direction (rx: decapsulated and accepted; tx: sent).", "tunnel", "vtep", "dir")
	mVTEPBytes   = desc("vxlan_vtep_bytes_total", "Bytes of inner frames exchanged with a remote VTEP, by direction.", "tunnel", "vtep", "dir")
	mVTEPDropped = desc("vxlan_vtep_tx_dropped_total", "Frames for a remote VTEP the socket refused.", "tunnel", "vtep")
	mVXLANDrops  = desc("vxlan_dropped_total", "Datagrams and frames a tunnel dropped, by reason.", "tunnel", "reason")
	mVXLANMACs   = desc("vxlan_macs", "MACs in a tunnel's MAC to VTEP table.", "tunnel")
	mVXLANSupp   = desc("vxlan_suppressed_total", "Requests the switch answered instead of sending them through a tunnel (ARP and ND suppression), by protocol (arp, nd).", "tunnel", "proto")
	mVXLANNeighs = desc("vxlan_neighs", "Addresses learned behind a tunnel for ARP and ND suppression.", "tunnel")
)

// vxlanCollector reads the tunnels' counters at scrape time.
type vxlanCollector struct{ d *Daemon }

func (c vxlanCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mVTEPPackets, mVTEPBytes, mVTEPDropped, mVXLANDrops, mVXLANMACs, mVXLANSupp, mVXLANNeighs} {
		ch <- d
	}
}

func (c vxlanCollector) Collect(ch chan<- prometheus.Metric) {
	sc := metricSink(ch)
	for _, v := range c.d.VXLANs() {
		for _, e := range v.VTEPs {
			sc.counters(mVTEPPackets, []labelled{{"rx", e.RxPackets}, {"tx", e.TxPackets}}, v.Name, e.Addr)
			sc.counters(mVTEPBytes, []labelled{{"rx", e.RxBytes}, {"tx", e.TxBytes}}, v.Name, e.Addr)
			sc.counter(mVTEPDropped, e.TxDropped, v.Name, e.Addr)
		}
		s := v.Stats
		sc.counters(mVXLANDrops, []labelled{{"malformed", s.RxMalformed}, {"bad_vni", s.RxBadVNI}, {"denied", s.RxDenied},
			{"claimed_mac", s.RxClaimed}, {"no_vtep", s.RxNoVTEP}, {"too_big", s.TxTooBig}, {"gateway", s.TxGateway},
			{"tx_error", s.TxErrors}}, v.Name)
		sc.gauge(mVXLANMACs, float64(s.MACs), v.Name)
		sc.counters(mVXLANSupp, []labelled{{"arp", s.ARPSuppressed}, {"nd", s.NDSuppressed}}, v.Name)
		sc.gauge(mVXLANNeighs, float64(s.Neighs), v.Name)
	}
}
