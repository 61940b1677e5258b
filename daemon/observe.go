package daemon

import (
	"net/http"
	"os"
	"runtime"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/uplink/host"
	tapup "github.com/tapswitch/tapswitch/uplink/tap"
)

// observeRoutes adds the capture and statistics endpoints to the control API.
func (d *Daemon) observeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/capture", d.serveCapture)
	mux.HandleFunc("GET /v1/captures", getter(d.Captures))
	mux.HandleFunc("DELETE /v1/captures/{id}", func(w http.ResponseWriter, r *http.Request) {
		replyNoContent(w, d.StopCapture(r.PathValue("id")))
	})
	mux.HandleFunc("GET /v1/stats", getter(d.Stats))
}

// Stats returns the counters of every port and capture point, of the FDB
// and of the gateway, and the running captures. Each counter is read
// atomically; together they are not one instant's snapshot.
func (d *Daemon) Stats() api.Stats {
	byID := map[uint32]vswitch.PortStats{}
	for _, p := range d.sw.Ports() {
		byID[uint32(p.ID)] = p.Stats
	}
	s := api.Stats{
		FDB:      api.FDBStats(d.sw.FDB().Stats()),
		Gateway:  api.GatewayStats(d.gw.Stats()),
		Captures: d.Captures(),
	}
	for _, p := range d.capturePoints() {
		cs := p.p.Stats()
		pc := api.PortCounters{Name: p.name, Kind: p.kind, Capture: api.CaptureStats{Captured: cs.Captured, Dropped: cs.Dropped}}
		if ps, ok := byID[uint32(p.id)]; ok && p.id != fdb.NoPort {
			pc.Stats = apiStats(ps)
		}
		s.Ports = append(s.Ports, pc)
	}
	if d.nat != nil {
		cs := d.ConntrackStats()
		s.NAT = &cs
		if h, ok := d.nat.up.(interface{ Stats() host.Stats }); ok {
			hs := api.HostUplinkStats(h.Stats())
			s.HostUplink = &hs
		}
		if u, ok := d.nat.up.(interface{ Stats() tapup.Stats }); ok {
			ts := api.TAPUplinkStats(u.Stats())
			s.TAPUplink = &ts
		}
	}
	s.VXLAN = d.VXLANs()
	s.DNS = d.dnsStats()
	s.Process.Goroutines = runtime.NumGoroutine()
	s.Control = d.ctl.stats()
	s.Process.OpenFDs = -1
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.Process.OpenFDs = len(fds)
	}
	return s
}
