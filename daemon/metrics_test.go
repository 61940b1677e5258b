package daemon

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapswitch/tapswitch/api"
)

// tapUplinkOnly is a collector of the routed TAP uplink's metrics alone,
// from fixed counters (a daemon with that uplink needs root).
type tapUplinkOnly struct{ s api.TAPUplinkStats }

func (c tapUplinkOnly) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }
func (c tapUplinkOnly) Collect(ch chan<- prometheus.Metric) { metricSink(ch).collectTAP(&c.s) }

// TestTAPUplinkMetrics checks that every counter of `stats --json`'s
// tap_uplink reaches /metrics under its name and labels: each counter has
// a value of its own, so a counter sent under another's name shows.
func TestTAPUplinkMetrics(t *testing.T) {
	s := api.TAPUplinkStats{
		RxFrames: 1, RxPackets: 2, RxBytes: 3, RxIgnored: 4, TxPackets: 5, TxBytes: 6, TxErrors: 7,
		NoRoute: 8, ARPIn: 9, ARPOut: 10, PendingQueued: 11, PendingDropped: 12, PendingExpired: 13,
		RxGSO: 14, RxSegmented: 15, RxCsum: 16, TxGSO: 17,
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(tapUplinkOnly{s})
	mf := scrape(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for _, tt := range []struct {
		name   string
		labels []string
		want   uint64
	}{
		{"tapswitch_tap_uplink_rx_frames_total", nil, s.RxFrames},
		{"tapswitch_tap_uplink_packets_total", []string{"direction", "in"}, s.RxPackets},
		{"tapswitch_tap_uplink_bytes_total", []string{"direction", "in"}, s.RxBytes},
		{"tapswitch_tap_uplink_dropped_total", []string{"reason", "ignored"}, s.RxIgnored},
		{"tapswitch_tap_uplink_packets_total", []string{"direction", "out"}, s.TxPackets},
		{"tapswitch_tap_uplink_bytes_total", []string{"direction", "out"}, s.TxBytes},
		{"tapswitch_tap_uplink_dropped_total", []string{"reason", "tx_error"}, s.TxErrors},
		{"tapswitch_tap_uplink_dropped_total", []string{"reason", "no_route"}, s.NoRoute},
		{"tapswitch_tap_uplink_arp_total", []string{"direction", "in"}, s.ARPIn},
		{"tapswitch_tap_uplink_arp_total", []string{"direction", "out"}, s.ARPOut},
		{"tapswitch_tap_uplink_pending_total", []string{"result", "queued"}, s.PendingQueued},
		{"tapswitch_tap_uplink_pending_total", []string{"result", "dropped"}, s.PendingDropped},
		{"tapswitch_tap_uplink_pending_total", []string{"result", "expired"}, s.PendingExpired},
		{"tapswitch_tap_uplink_gso_total", []string{"direction", "in"}, s.RxGSO},
		{"tapswitch_tap_uplink_rx_segmented_total", nil, s.RxSegmented},
		{"tapswitch_tap_uplink_rx_csum_total", nil, s.RxCsum},
		{"tapswitch_tap_uplink_gso_total", []string{"direction", "out"}, s.TxGSO},
	} {
		if got := value(mf, tt.name, tt.labels...); got != float64(tt.want) {
			t.Errorf("%s%v: got %v, want %d", tt.name, tt.labels, got, tt.want)
		}
	}
	// A daemon without the TAP uplink has none of them.
	d := newTestDaemon(t, Config{})
	if f := scrape(t, d.MetricsHandler())["tapswitch_tap_uplink_gso_total"]; f != nil {
		t.Errorf("tapswitch_tap_uplink_gso_total without a TAP uplink: %v", f)
	}
}
