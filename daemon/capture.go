package daemon

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
)

// MaxCaptures bounds the captures running at once: each holds about 4 MiB
// of records.
const MaxCaptures = 16

// observe is the daemon's capture and metrics state.
type observe struct {
	mu sync.Mutex // guards points, captures and nextID
	// points are capture points that are not switch ports, by name (the
	// uplink, the two sides of NAT), with their kind.
	points   map[string]extraPoint
	captures map[string]*activeCapture
	nextID   int
}

type extraPoint struct {
	kind string
	p    *capture.Point
}

// activeCapture is a capture being streamed.
type activeCapture struct {
	id       string
	format   capture.Format
	started  time.Time
	sess     *capture.Session
	stop     chan struct{} // closed by StopCapture
	stopOnce sync.Once
	written  atomic.Uint64
}

// AddCapturePoint makes p capturable as name (`tapswitch capture NAME`, and
// part of --all), with kind shown by `tapswitch stats`. It is how a part of
// the daemon that is not a switch port offers a capture point: the uplink
// keeps a capture.Point, calls its Deliver where packets enter and leave it,
// and registers it once with d.AddCapturePoint("uplink", "uplink", &pt). A
// name already taken by a port or another point is an error.
func (d *Daemon) AddCapturePoint(name, kind string, p *capture.Point) error {
	if name == "gateway" {
		return conflict("capture point name %q is the gateway's", name)
	}
	d.mu.Lock()
	_, isPort := d.ports[name]
	d.mu.Unlock()
	if isPort {
		return conflict("capture point name %q is a port's", name)
	}
	o := &d.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.points[name]; ok {
		return conflict("capture point %q already exists", name)
	}
	if o.points == nil {
		o.points = map[string]extraPoint{}
	}
	o.points[name] = extraPoint{kind: kind, p: p}
	return nil
}

// RemoveCapturePoint removes a point added with AddCapturePoint. Captures
// running on it get no more frames from it.
func (d *Daemon) RemoveCapturePoint(name string) {
	d.obs.mu.Lock()
	delete(d.obs.points, name)
	d.obs.mu.Unlock()
}

// namedPoint is a capture point with the name a capture file gives it.
type namedPoint struct {
	name, kind string
	id         fdb.PortID // fdb.NoPort for points that are not ports
	p          *capture.Point
}

// capturePoints lists every capture point: the gateway, the attached
// containers by name, then the other points by name.
func (d *Daemon) capturePoints() []namedPoint {
	var out []namedPoint
	if p, err := d.sw.CapturePoint(d.gwID); err == nil {
		out = append(out, namedPoint{name: "gateway", kind: "gateway", id: d.gwID, p: p})
	}
	d.mu.Lock()
	var ports []namedPoint
	for _, a := range d.ports {
		if p, err := d.sw.CapturePoint(a.id); err == nil {
			ports = append(ports, namedPoint{name: a.name, kind: "tap", id: a.id, p: p})
		}
	}
	d.mu.Unlock()
	sort.Slice(ports, func(i, j int) bool { return ports[i].name < ports[j].name })
	out = append(out, ports...)
	out = append(out, d.tunnelPoints()...)
	d.obs.mu.Lock()
	var extra []namedPoint
	for name, e := range d.obs.points {
		extra = append(extra, namedPoint{name: name, kind: e.kind, id: fdb.NoPort, p: e.p})
	}
	d.obs.mu.Unlock()
	sort.Slice(extra, func(i, j int) bool { return extra[i].name < extra[j].name })
	return append(out, extra...)
}

// StartCapture starts a capture session for req. It checks everything
// (ports, format, filter) before anything is captured.
func (d *Daemon) startCapture(req api.CaptureRequest) (*activeCapture, error) {
	format, err := capture.ParseFormat(req.Format)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if req.All == (len(req.Ports) > 0) {
		return nil, invalid("give either port names or all, not both or neither")
	}
	if req.Count < 0 || req.Duration < 0 || req.Snaplen < 0 {
		return nil, invalid("count, duration and snaplen must not be negative")
	}
	all := d.capturePoints()
	var pts []namedPoint
	if req.All {
		pts = all
	} else {
		byName := map[string]namedPoint{}
		for _, p := range all {
			byName[p.name] = p
		}
		seen := map[string]bool{}
		for _, name := range req.Ports {
			p, ok := byName[name]
			if !ok {
				return nil, notFound("no port or capture point named %q", name)
			}
			if !seen[name] {
				pts = append(pts, p)
				seen[name] = true
			}
		}
	}
	sess, err := capture.NewSession(capture.Config{Filter: req.Filter, Snaplen: req.Snaplen})
	if err != nil {
		return nil, invalid("%v", err)
	}
	if format == capture.PCAP {
		for _, p := range pts[1:] {
			if p.p.Link != pts[0].p.Link {
				return nil, invalid("pcap cannot hold %s and %s (different link types): use pcapng", pts[0].name, p.name)
			}
		}
	}
	for _, p := range pts {
		if _, err := sess.Attach(p.p, p.name); err != nil {
			sess.Close()
			return nil, invalid("%v", err)
		}
	}
	o := &d.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.captures) >= MaxCaptures {
		sess.Close()
		return nil, conflict("%d captures are running already, the most the daemon runs at once", MaxCaptures)
	}
	o.nextID++
	c := &activeCapture{id: strconv.Itoa(o.nextID), format: format, started: time.Now(), sess: sess, stop: make(chan struct{})}
	if o.captures == nil {
		o.captures = map[string]*activeCapture{}
	}
	o.captures[c.id] = c
	return c, nil
}

// stopCaptures ends every capture stream cleanly, when the daemon stops.
func (d *Daemon) stopCaptures() {
	d.obs.mu.Lock()
	defer d.obs.mu.Unlock()
	for _, c := range d.obs.captures {
		c.stopOnce.Do(func() { close(c.stop) })
	}
}

// StopCapture ends the capture called id: its stream is finished cleanly.
func (d *Daemon) StopCapture(id string) error {
	d.obs.mu.Lock()
	c := d.obs.captures[id]
	d.obs.mu.Unlock()
	if c == nil {
		return notFound("no capture %q", id)
	}
	c.stopOnce.Do(func() { close(c.stop) })
	return nil
}

// Captures lists the running captures.
func (d *Daemon) Captures() []api.CaptureInfo {
	d.obs.mu.Lock()
	list := make([]*activeCapture, 0, len(d.obs.captures))
	for _, c := range d.obs.captures {
		list = append(list, c)
	}
	d.obs.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].started.Before(list[j].started) })
	out := make([]api.CaptureInfo, 0, len(list))
	for _, c := range list {
		out = append(out, c.info())
	}
	return out
}

func (c *activeCapture) info() api.CaptureInfo {
	i := api.CaptureInfo{ID: c.id, Filter: c.sess.Filter().String(), Format: string(c.format), Started: c.started, Captured: c.written.Load()}
	for _, s := range c.sess.Stats() {
		i.Interfaces = append(i.Interfaces, api.CaptureInterface{Name: s.Name, Received: s.Received, Dropped: s.Dropped})
	}
	return i
}

// captureRequest reads a CaptureRequest from the query of GET /v1/capture.
func captureRequest(r *http.Request) (api.CaptureRequest, error) {
	q := r.URL.Query()
	req := api.CaptureRequest{Ports: q["port"], Format: q.Get("format"), Filter: q.Get("filter")}
	switch q.Get("all") {
	case "", "0", "false":
	default:
		req.All = true
	}
	num := func(k string) (int, error) {
		v := q.Get(k)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, invalid("%s %q: not a non-negative integer", k, v)
		}
		return n, nil
	}
	var err error
	if req.Count, err = num("count"); err != nil {
		return req, err
	}
	if req.Snaplen, err = num("snaplen"); err != nil {
		return req, err
	}
	if v := q.Get("duration"); v != "" {
		if req.Duration, err = time.ParseDuration(v); err != nil || req.Duration < 0 {
			return req, invalid("duration %q: not a duration such as 10s", v)
		}
	}
	return req, nil
}

// serveCapture streams a capture file until the capture is stopped (count,
// duration, DELETE /v1/captures/{id}, the client going away, the daemon
// stopping). A slow client never slows the datapath: the session drops
// what it has no room for, and the trailers and the pcapng statistics
// blocks say how much.
func (d *Daemon) serveCapture(w http.ResponseWriter, r *http.Request) {
	req, err := captureRequest(r)
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := d.startCapture(req)
	if err != nil {
		writeError(w, err)
		return
	}
	defer func() {
		c.sess.Close()
		d.obs.mu.Lock()
		delete(d.obs.captures, c.id)
		d.obs.mu.Unlock()
	}()
	h := w.Header()
	h.Set("Content-Type", c.format.ContentType())
	h.Set(api.CaptureIDHeader, c.id)
	h.Set("Trailer", api.TrailerCaptured+", "+api.TrailerReceived+", "+api.TrailerDropped)
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	// A capture streams for as long as it was asked to: no read deadline
	// (it would cancel the request), and a write deadline pushed forward
	// before each write, so that only a client that stops reading is cut.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Now().Add(controlLimits.write))
	w.WriteHeader(http.StatusOK)
	wr, err := capture.NewWriter(w, c.sess.Interfaces(), capture.WriterOptions{
		Format:      c.format,
		Snaplen:     req.Snaplen,
		Filter:      c.sess.Filter().String(),
		Application: "tapswitch " + api.Version,
	})
	if err != nil {
		d.log.Error("capture: file header", "err", err)
		return
	}
	if wr.Flush() != nil || rc.Flush() != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
		case <-d.closed:
		case <-ctx.Done():
			return
		}
		cancel()
	}()
	if req.Duration > 0 {
		t := time.AfterFunc(req.Duration, cancel)
		defer t.Stop()
	}
	d.log.Info("capture started", "id", c.id, "interfaces", len(c.sess.Interfaces()), "filter", c.sess.Filter().String())
	broken := false // the client went away: nothing more can be written
	write := func(rec *capture.Record) bool {
		rc.SetWriteDeadline(time.Now().Add(controlLimits.write))
		err := wr.Write(rec)
		c.sess.Release(rec)
		if err != nil {
			broken = true
			return false
		}
		c.written.Add(1)
		return req.Count == 0 || c.written.Load() < uint64(req.Count)
	}
loop:
	for {
		rec, err := c.sess.Next(ctx)
		if err != nil {
			break
		}
		if !write(rec) {
			break
		}
		// Write what is already waiting, then push it out in one go.
		for {
			rec := c.sess.TryNext()
			if rec == nil {
				break
			}
			if !write(rec) {
				break loop
			}
		}
		if wr.Flush() != nil || rc.Flush() != nil {
			broken = true
			break
		}
	}
	c.sess.Close()
	if r.Context().Err() != nil {
		broken = true
	}
	if !broken {
		// Frames captured before the stop are still written.
		for req.Count == 0 || c.written.Load() < uint64(req.Count) {
			rec := c.sess.TryNext()
			if rec == nil || !write(rec) {
				break
			}
		}
	}
	stats := c.sess.Stats()
	var received, dropped uint64
	for _, s := range stats {
		received += s.Received
		dropped += s.Dropped
	}
	if !broken {
		if err := wr.Finish(stats, c.started, time.Now()); err == nil {
			h.Set(api.TrailerCaptured, strconv.FormatUint(c.written.Load(), 10))
			h.Set(api.TrailerReceived, strconv.FormatUint(received, 10))
			h.Set(api.TrailerDropped, strconv.FormatUint(dropped, 10))
		}
	}
	d.log.Info("capture ended", "id", c.id, "captured", c.written.Load(), "received", received, "dropped", dropped)
}
