package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsAddr resolves the --metrics argument: "PORT", ":PORT" and
// "localhost:PORT" mean 127.0.0.1:PORT (metrics stay on loopback unless an
// address is given); "HOST:PORT" is used as is ("0.0.0.0:9100" for every
// interface).
func MetricsAddr(s string) (string, error) {
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", s), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", invalid("metrics address %q: HOST:PORT or PORT expected", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", invalid("metrics address %q: bad port", s)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// MetricsHandler serves the daemon's metrics in the Prometheus exposition
// format. The values are read from the datapath's atomic counters when
// scraped: collecting metrics adds no work per frame.
func (d *Daemon) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{d: d}, vxlanCollector{d: d})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "tapswitch: metrics are at /metrics")
	})
	return mux
}

// ServeMetrics listens on addr (see MetricsAddr) and serves MetricsHandler
// until ctx is done. It returns once listening, with the address it bound.
func (d *Daemon) ServeMetrics(ctx context.Context, addr string) (net.Addr, error) {
	addr, err := MetricsAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{Handler: d.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-d.closed:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr(), nil
}

const ns = "tapswitch"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
}

var (
	mPortRxPackets = desc("port_rx_packets_total", "Frames the switch received from the port.", "port")
	mPortRxBytes   = desc("port_rx_bytes_total", "Bytes of Ethernet frames the switch received from the port.", "port")
	mPortTxPackets = desc("port_tx_packets_total", "Frames the switch sent to the port.", "port")
	mPortTxBytes   = desc("port_tx_bytes_total", "Bytes of Ethernet frames the switch sent to the port.", "port")
	mPortRxDropped = desc("port_rx_dropped_total", "Frames received from the port and dropped, by reason: invalid (too short, multicast or zero source MAC), same_port (destination behind the port it came from), spoofed (port security: a source MAC, IPv4 or IPv6 source or ARP sender the port may not use, forged neighbor discovery, and RA guard: router advertisements, redirects and DHCPv6 server replies), vlan_error (a tag on an access port, two tags, or a VLAN the trunk does not carry), denied (an ACL rule or isolation).", "port", "reason")
	mPortTxDropped = desc("port_tx_dropped_total", "Frames the port could not take, by reason: write_failed (queue full, port being removed, frame too big).", "port", "reason")
	mCapCaptured   = desc("capture_frames_total", "Frames copied to captures at the capture point.", "point")
	mCapDropped    = desc("capture_dropped_total", "Frames lost from captures at the capture point because the reader was too slow.", "point")
	mCaptures      = desc("captures_running", "Captures running.")
	mPorts         = desc("ports", "Ports attached to the switch, the gateway included.")
	mRulePackets   = desc("rule_packets_total", "Frames an ACL rule matched.", "id", "action")
	mRuleBytes     = desc("rule_bytes_total", "Bytes of Ethernet frames an ACL rule matched.", "id", "action")
	mStageHits     = desc("pipeline_stage_frames_total", "Frames a stage of the pipeline saw.", "stage")
	mStageDrops    = desc("pipeline_stage_dropped_total", "Frames a stage of the pipeline dropped.", "stage")

	mFDBEntries = desc("fdb_entries", "Entries in the MAC table (static ones included).")
	mFDBStatic  = desc("fdb_static_entries", "Static entries in the MAC table.")
	mFDBEvents  = desc("fdb_events_total", "MAC table events: learned (new entry), moved (MAC seen on another port), aged, flushed (port removed), evicted (the table was full: the oldest entry of the port with the most).", "event")
	mFDBRefused = desc("fdb_learn_refused_total", "Source MACs not learned, by reason: ignored (multicast or zero), limit_port, limit_total, static_conflict.", "reason")

	mGwARPRequests = desc("gateway_arp_requests_total", "ARP requests for the gateway's address.")
	mGwARPReplies  = desc("gateway_arp_replies_total", "ARP replies sent by the gateway.")
	mGwARPConflict = desc("gateway_arp_conflicts_total", "ARP packets from another host claiming the gateway's address.")
	mGwEcho        = desc("gateway_icmp_echo_replies_total", "ICMP echo replies sent by the gateway.")
	mGwICMPErrors  = desc("gateway_icmp_errors_total", "ICMP destination unreachable messages sent by the gateway.")
	mGwResets      = desc("gateway_tcp_resets_total", "TCP resets sent by the gateway.")
	mGwRateLimited = desc("gateway_rate_limited_total", "ICMP errors and TCP resets not sent because of the rate limit.")
	mGwQueueDrops  = desc("gateway_queue_drops_total", "Replies dropped because the gateway's queue was full.")
	mGwNeighbors   = desc("gateway_neighbors", "Entries in the gateway's neighbour table.")
	mGwNeighEvents = desc("gateway_neighbor_events_total", "Neighbour table events: learned, evicted.", "event")
	mGwDropped     = desc("gateway_dropped_total", "Frames the gateway dropped or did not answer, by reason.", "reason")
	mGwAdverts     = desc("gateway_ipv6_adverts_total", "IPv6 advertisements the gateway sent (run --ipv6), by kind: neighbor (NA), router (RA).", "kind")
	mGwRouted      = desc("gateway_routed_packets_total", "Packets the gateway routed, by direction: out (to the uplink), in (from the uplink to a container).", "direction")

	mCTEntries    = desc("conntrack_entries", "Tracked connections, by protocol and state.", "proto", "state")
	mCTMax        = desc("conntrack_max_entries", "The size bound of the connection table.")
	mNATMappings  = desc("nat_mappings", "External ports in use by NAT mappings.")
	mCTEvents     = desc("conntrack_events_total", "Connection table events: created, expired, evicted (to make room), refused (table full, so allocation failed), flushed.", "event")
	mNATPackets   = desc("nat_translated_packets_total", "Packets translated by NAT, by direction.", "direction")
	mNATICMPError = desc("nat_icmp_errors_translated_total", "ICMP errors translated with their embedded headers (RFC 5508).")
	mNATDropped   = desc("nat_dropped_total", "Packets NAT did not translate, by reason.", "reason")

	mHostPackets   = desc("host_uplink_packets_total", "Datagrams the host uplink carried, by direction: out (to the host), in (back to the gateway).", "direction")
	mHostBytes     = desc("host_uplink_bytes_total", "Bytes of datagrams the host uplink carried, by direction.", "direction")
	mHostTCPActive = desc("host_uplink_tcp_connections", "TCP connections the host uplink splices now.")
	mHostTCPEvents = desc("host_uplink_tcp_events_total", "Host uplink TCP events: connected, refused (host connect failed: RST to the container), reset (ended by a reset), limit (over the bound).", "event")
	mHostSockets   = desc("host_uplink_sockets", "Host sockets the host uplink holds now, by kind: udp (one per mapping), icmp (echo), listener (published ports).", "kind")
	mHostOpened    = desc("host_uplink_sockets_opened_total", "Host sockets the host uplink opened, by kind: udp, icmp.", "kind")
	mHostPublish   = desc("host_uplink_published_connections_total", "TCP connections accepted on published ports, by result: accepted, failed (not delivered to the container).", "result")
	mHostDropped   = desc("host_uplink_dropped_total", "Datagrams the host uplink dropped, by reason.", "reason")
	mHostUDPErrors = desc("host_uplink_udp_icmp_errors_total", "ICMP errors about UDP datagrams (port unreachable, ...) the host received and the host uplink handed back to the container.")
	mHostReasm     = desc("host_uplink_reassembled_total", "UDP and ICMP datagrams containers sent fragmented, reassembled by the host uplink.")
)

// collector reads the daemon's counters at scrape time.
type collector struct{ d *Daemon }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		mPortRxPackets, mPortRxBytes, mPortTxPackets, mPortTxBytes, mPortRxDropped, mPortTxDropped,
		mCapCaptured, mCapDropped, mCaptures, mPorts, mRulePackets, mRuleBytes, mStageHits, mStageDrops,
		mFDBEntries, mFDBStatic, mFDBEvents, mFDBRefused,
		mGwARPRequests, mGwARPReplies, mGwARPConflict, mGwEcho, mGwICMPErrors, mGwResets, mGwRateLimited,
		mGwQueueDrops, mGwNeighbors, mGwNeighEvents, mGwDropped, mGwRouted, mGwAdverts,
		mCTEntries, mCTMax, mNATMappings, mCTEvents, mNATPackets, mNATICMPError, mNATDropped,
		mHostPackets, mHostBytes, mHostTCPActive, mHostTCPEvents, mHostSockets, mHostOpened, mHostPublish, mHostDropped, mHostReasm, mHostUDPErrors,
	} {
		ch <- d
	}
	for _, d := range dnsDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	c.d.collectDNS(ch)
	s := c.d.Stats()
	ports := 0
	for _, p := range s.Ports {
		counter(mCapCaptured, p.Capture.Captured, p.Name)
		counter(mCapDropped, p.Capture.Dropped, p.Name)
		if p.Kind != "tap" && p.Kind != "gateway" && p.Kind != "vxlan" {
			continue
		}
		ports++
		st := p.Stats
		counter(mPortRxPackets, st.RxPackets, p.Name)
		counter(mPortRxBytes, st.RxBytes, p.Name)
		counter(mPortTxPackets, st.TxPackets, p.Name)
		counter(mPortTxBytes, st.TxBytes, p.Name)
		counter(mPortRxDropped, st.RxErrors, p.Name, "invalid")
		counter(mPortRxDropped, st.RxFiltered, p.Name, "same_port")
		counter(mPortTxDropped, st.TxDropped, p.Name, "write_failed")
		counter(mPortRxDropped, st.RxSpoofed, p.Name, "spoofed")
		counter(mPortRxDropped, st.RxVLANErrors, p.Name, "vlan_error")
		counter(mPortRxDropped, st.RxDenied, p.Name, "denied")
	}
	for _, r := range c.d.Rules() {
		id := strconv.Itoa(r.ID)
		counter(mRulePackets, r.Packets, id, r.Action)
		counter(mRuleBytes, r.Bytes, id, r.Action)
	}
	for _, st := range c.d.sw.Pipeline() {
		counter(mStageHits, st.Hits, st.Name)
		counter(mStageDrops, st.Drops, st.Name)
	}
	gauge(mPorts, float64(ports))
	gauge(mCaptures, float64(len(s.Captures)))

	f := s.FDB
	gauge(mFDBEntries, float64(f.Entries))
	gauge(mFDBStatic, float64(f.Static))
	counter(mFDBEvents, f.Learned, "learned")
	counter(mFDBEvents, f.Moved, "moved")
	counter(mFDBEvents, f.Aged, "aged")
	counter(mFDBEvents, f.Flushed, "flushed")
	counter(mFDBEvents, f.Evicted, "evicted")
	counter(mFDBRefused, f.Ignored, "ignored")
	counter(mFDBRefused, f.LimitPort, "limit_port")
	counter(mFDBRefused, f.LimitTotal, "limit_total")
	counter(mFDBRefused, f.StaticConflicts, "static_conflict")

	g := s.Gateway
	counter(mGwARPRequests, g.ARPRequests)
	counter(mGwARPReplies, g.ARPReplies)
	counter(mGwARPConflict, g.ARPConflicts)
	counter(mGwEcho, g.EchoReplies)
	counter(mGwICMPErrors, g.ICMPErrors)
	counter(mGwResets, g.TCPResets)
	counter(mGwRateLimited, g.RateLimited)
	counter(mGwQueueDrops, g.QueueDrops)
	gauge(mGwNeighbors, float64(len(c.d.gw.Neighbors())))
	counter(mGwNeighEvents, g.NeighLearned, "learned")
	counter(mGwNeighEvents, g.NeighEvicted, "evicted")
	for _, r := range []struct {
		reason string
		v      uint64
	}{
		{"arp_other", g.ARPOther}, {"offload", g.Offload}, {"too_big", g.TooBig}, {"malformed", g.Malformed},
		{"bad_ipv4", g.BadIPv4}, {"bad_checksum", g.BadChecksum}, {"martian", g.Martian},
		{"fragment", g.Fragments}, {"not_for_us", g.NotForUs}, {"ipv6", g.IPv6},
		{"other_ethertype", g.OtherEtherType}, {"no_error_allowed", g.NoErrorAllowed}, {"ignored", g.Ignored},
	} {
		counter(mGwDropped, r.v, strings.ToLower(r.reason))
	}
	counter(mGwRouted, g.Forwarded, "out")
	counter(mGwRouted, g.ToContainer, "in")
	counter(mGwAdverts, g.NeighAdverts, "neighbor")
	counter(mGwAdverts, g.RouterAdverts, "router")

	if s.NAT == nil {
		return
	}
	n := s.NAT
	// States are counted from the listing: scrape time only.
	byState := map[[2]string]int{}
	for _, e := range c.d.Conntrack() {
		byState[[2]string{e.Proto, e.State}]++
	}
	for k, v := range byState {
		gauge(mCTEntries, float64(v), k[0], k[1])
	}
	gauge(mCTMax, float64(n.Max))
	gauge(mNATMappings, float64(n.Mappings))
	counter(mCTEvents, n.Created, "created")
	counter(mCTEvents, n.Expired, "expired")
	counter(mCTEvents, n.Evicted, "evicted")
	counter(mCTEvents, n.Refused, "refused")
	counter(mCTEvents, n.Flushed, "flushed")
	counter(mNATPackets, n.TranslatedOut, "out")
	counter(mNATPackets, n.TranslatedIn, "in")
	counter(mNATICMPError, n.ICMPErrors)
	for reason, v := range n.Drops {
		counter(mNATDropped, v, reason)
	}
	if h := s.HostUplink; h != nil {
		counter(mHostPackets, h.TxPackets, "out")
		counter(mHostPackets, h.RxPackets, "in")
		counter(mHostBytes, h.TxBytes, "out")
		counter(mHostBytes, h.RxBytes, "in")
		gauge(mHostTCPActive, float64(h.TCPActive))
		counter(mHostTCPEvents, h.TCPTotal, "connected")
		counter(mHostTCPEvents, h.TCPRefused, "refused")
		counter(mHostTCPEvents, h.TCPResets, "reset")
		counter(mHostTCPEvents, h.TCPLimit, "limit")
		gauge(mHostSockets, float64(h.UDPSockets), "udp")
		gauge(mHostSockets, float64(h.ICMPSockets), "icmp")
		gauge(mHostSockets, float64(h.Listeners), "listener")
		counter(mHostOpened, h.UDPTotal, "udp")
		counter(mHostOpened, h.ICMPTotal, "icmp")
		counter(mHostPublish, h.PublishAccepted, "accepted")
		counter(mHostPublish, h.PublishFailed, "failed")
		counter(mHostDropped, h.UDPDropped, "udp")
		counter(mHostDropped, h.FragmentsDropped, "fragment")
		counter(mHostReasm, h.Reassembled)
		counter(mHostUDPErrors, h.UDPErrors)
		counter(mHostDropped, h.ICMPDenied, "icmp_denied")
		counter(mHostDropped, h.ICMPDropped, "icmp")
		counter(mHostDropped, h.LoopbackRefused, "loopback_refused")
		counter(mHostDropped, h.Malformed, "malformed")
		counter(mHostDropped, h.Other, "other")
		counter(mHostDropped, h.Errors, "socket_error")
	}
}
