package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/switch/memport"
)

// arpWhoHas is a broadcast ARP request from 10.90.0.2 (02:42:0a:5a:00:02)
// for the gateway, 10.90.0.1, with its virtio_net_hdr.
func arpWhoHas() []byte {
	return memport.WithHdr([]byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst: broadcast
		0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02, // src
		0x08, 0x06, // ARP
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet/IPv4, request
		0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02, 10, 90, 0, 2, // sender
		0, 0, 0, 0, 0, 0, 10, 90, 0, 1, // target
	})
}

// testPort attaches an in-memory port to d's switch and offers its capture
// point as "m1".
func testPort(t *testing.T, d *Daemon) *memport.Port {
	t.Helper()
	mp := memport.New("m1", 64)
	id, err := d.sw.AddPort(mp)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := d.sw.CapturePoint(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddCapturePoint("m1", "test", pt); err != nil {
		t.Fatal(err)
	}
	if err := d.AddCapturePoint("m1", "test", pt); !errors.Is(err, ErrConflict) {
		t.Errorf("second AddCapturePoint m1: %v", err)
	}
	return mp
}

func TestCaptureStream(t *testing.T) {
	d := newTestDaemon(t, Config{})
	mp := testPort(t, d)
	resp := httpGet(t, serveAPI(t, d)+"/v1/capture?all=1&count=3&filter=arp")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-pcapng" || resp.Header.Get(api.CaptureIDHeader) == "" {
		t.Fatalf("status %s, headers %v", resp.Status, resp.Header)
	}
	if n := len(d.Captures()); n != 1 {
		t.Errorf("captures running: %d, want 1", n)
	}
	if err := mp.Inject(arpWhoHas()); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(resp.Body, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	// The request comes in at m1 and goes out to the gateway; the reply
	// comes in from the gateway.
	want := []struct {
		iface string
		dir   pcapgo.NgEpbFlag
	}{{"m1", pcapgo.NgEpbFlagDirectionInbound}, {"gateway", pcapgo.NgEpbFlagDirectionOutbound}, {"gateway", pcapgo.NgEpbFlagDirectionInbound}}
	for i, w := range want {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		if intf.Name != w.iface || opts.Flags == nil || opts.Flags.Direction != w.dir || len(data) != 42 {
			t.Errorf("packet %d: interface %q, flags %+v, %d bytes; want %s, direction %v, 42 bytes", i, intf.Name, opts.Flags, len(data), w.iface, w.dir)
		}
		if time.Since(ci.Timestamp) > time.Minute || time.Since(ci.Timestamp) < 0 {
			t.Errorf("packet %d: timestamp %v", i, ci.Timestamp)
		}
	}
	if _, _, err := r.ReadPacketData(); err == nil {
		t.Error("more than count packets")
	}
	if n := r.NInterfaces(); n != 2 {
		t.Errorf("interfaces: %d, want 2 (gateway, m1)", n)
	}
	if got := resp.Trailer.Get(api.TrailerCaptured); got != "3" {
		t.Errorf("trailer %s: %q, want 3", api.TrailerCaptured, got)
	}
	if got := resp.Trailer.Get(api.TrailerDropped); got != "0" {
		t.Errorf("trailer %s: %q, want 0", api.TrailerDropped, got)
	}
}

func TestCaptureStop(t *testing.T) {
	d := newTestDaemon(t, Config{})
	url := serveAPI(t, d)
	resp := httpGet(t, url+"/v1/capture?port=gateway&format=pcap")
	id := resp.Header.Get(api.CaptureIDHeader)
	req, _ := http.NewRequest(http.MethodDelete, url+"/v1/captures/"+id, nil)
	dr, err := http.DefaultClient.Do(req)
	if err != nil || dr.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", dr, err)
	}
	r, err := pcapgo.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacketData(); err == nil {
		t.Error("a packet from an idle gateway")
	}
	if got := resp.Trailer.Get(api.TrailerCaptured); got != "0" {
		t.Errorf("trailer: %q, want 0", got)
	}
	if n := len(d.Captures()); n != 0 {
		t.Errorf("captures running after stop: %d", n)
	}
}

func TestCaptureErrors(t *testing.T) {
	url := serveAPI(t, newTestDaemon(t, Config{}))
	for _, tt := range []struct {
		query string
		code  int
	}{
		{"port=gateway&filter=tcp+port", 400},
		{"port=nope", 404},
		{"", 400},
		{"all=1&port=gateway", 400},
		{"port=gateway&format=erf", 400},
		{"port=gateway&count=-1", 400},
		{"port=gateway&duration=soon", 400},
	} {
		resp, err := http.Get(url + "/v1/capture?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tt.code || e.Message == "" {
			t.Errorf("%s: %s %q, want %d with a message", tt.query, resp.Status, e.Message, tt.code)
		}
	}
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mf
}

// value returns the value of the metric with the given labels (name=value
// pairs), or -1.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	d := newTestDaemon(t, Config{})
	mp := testPort(t, d)
	h := d.MetricsHandler()
	before := scrape(t, h)
	for _, name := range []string{
		"tapswitch_port_rx_packets_total", "tapswitch_port_tx_bytes_total", "tapswitch_port_rx_dropped_total",
		"tapswitch_fdb_entries", "tapswitch_fdb_events_total", "tapswitch_gateway_arp_requests_total",
		"tapswitch_gateway_dropped_total", "tapswitch_capture_dropped_total", "go_goroutines",
	} {
		if before[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := value(before, "tapswitch_fdb_entries"); v != 1 {
		t.Errorf("fdb entries: %v, want 1 (the gateway)", v)
	}
	mp.Inject(arpWhoHas())
	if _, ok := mp.Recv(5 * time.Second); !ok {
		t.Fatal("no ARP reply")
	}
	// The counters of a write are updated when it returns, which may be
	// after the reply arrived: wait for them, a little.
	grown := func(after map[string]*dto.MetricFamily) []string {
		var not []string
		for _, m := range []struct {
			name   string
			labels []string
		}{
			{"tapswitch_port_tx_packets_total", []string{"port", "gateway"}},
			{"tapswitch_port_rx_packets_total", []string{"port", "gateway"}},
			{"tapswitch_gateway_arp_requests_total", nil},
			{"tapswitch_fdb_events_total", []string{"event", "learned"}},
			{"tapswitch_fdb_entries", nil},
		} {
			if b, a := value(before, m.name, m.labels...), value(after, m.name, m.labels...); !(a > b) {
				not = append(not, fmt.Sprintf("%s%v: %v before, %v after", m.name, m.labels, b, a))
			}
		}
		return not
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		not := grown(scrape(t, h))
		if len(not) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters that did not grow with an ARP exchange: %v", not)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsAddr(t *testing.T) {
	for in, want := range map[string]string{
		"9100":           "127.0.0.1:9100",
		":9100":          "127.0.0.1:9100",
		"localhost:9100": "127.0.0.1:9100",
		"0.0.0.0:9100":   "0.0.0.0:9100",
		"[::1]:0":        "[::1]:0",
	} {
		if got, err := MetricsAddr(in); err != nil || got != want {
			t.Errorf("MetricsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host", "1.2.3.4:http", "99999"} {
		if _, err := MetricsAddr(bad); err == nil {
			t.Errorf("MetricsAddr(%q): no error", bad)
		}
	}
}
