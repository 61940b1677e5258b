package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapswitch/tapswitch/api"
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
	mGwRouted      = desc("gateway_routed_packets_total", "Packets the gateway routed, by family (ipv4, ipv6: through an uplink that carries IPv6) and direction: out (to the uplink), in (from the uplink to a container).", "family", "direction")

	mCTEntries    = desc("conntrack_entries", "Tracked connections, by family (ipv4, ipv6), protocol and state.", "family", "proto", "state")
	mCTMax        = desc("conntrack_max_entries", "The size bound of the connection table.")
	mNATMappings  = desc("nat_mappings", "External ports in use by NAT mappings.")
	mCTEvents     = desc("conntrack_events_total", "Connection table events: created, expired, evicted (to make room), refused (table full, so allocation failed), flushed.", "event")
	mNATPackets   = desc("nat_translated_packets_total", "Packets translated by NAT, by direction.", "direction")
	mNATICMPError = desc("nat_icmp_errors_translated_total", "ICMP errors translated with their embedded headers (RFC 5508).")
	mNATDropped   = desc("nat_dropped_total", "Packets NAT did not translate, by reason.", "reason")

	mCtlConns  = desc("control_connections", "Connections open on the control socket.")
	mCtlClosed = desc("control_connections_closed_total", "Control socket connections the daemon ended because of its cap on connections, by reason: idle_longest (the one idle the longest, closed to make room for a new one), refused (a new one answered 503: every open one had a request in progress).", "reason")

	mHostPackets   = desc("host_uplink_packets_total", "Datagrams the host uplink carried, by direction: out (to the host), in (back to the gateway).", "direction")
	mHostBytes     = desc("host_uplink_bytes_total", "Bytes of datagrams the host uplink carried, by direction.", "direction")
	mHostTCPActive = desc("host_uplink_tcp_connections", "TCP connections the host uplink splices now.")
	mHostTCPEvents = desc("host_uplink_tcp_events_total", "Host uplink TCP events: connected, refused (host connect failed: RST to the container), reset (ended by a reset), limit (over the bound).", "event")
	mHostSockets   = desc("host_uplink_sockets", "Host sockets the host uplink holds now, by kind: udp (one per mapping), icmp (echo), listener (published ports).", "kind")
	mHostOpened    = desc("host_uplink_sockets_opened_total", "Host sockets the host uplink opened, by kind: udp, icmp.", "kind")
	mHostPublish   = desc("host_uplink_published_connections_total", "TCP connections accepted on published ports, by result: accepted, failed (not delivered to the container), spliced (from the host's loopback, spliced to a connection inside the container), splice_failed (that connection could not be opened: through the netstack instead).", "result")
	mHostDropped   = desc("host_uplink_dropped_total", "Datagrams the host uplink dropped, by reason.", "reason")
	mHostUDPErrors = desc("host_uplink_udp_icmp_errors_total", "ICMP errors about UDP datagrams (port unreachable, ...) the host received and the host uplink handed back to the container.")
	mHostReasm     = desc("host_uplink_reassembled_total", "UDP and ICMP datagrams containers sent fragmented, reassembled by the host uplink.")

	mTAPPackets   = desc("tap_uplink_packets_total", "IPv4 datagrams the routed TAP uplink carried, by direction: out (written to its TAP), in (read from it and handed to the gateway).", "direction")
	mTAPBytes     = desc("tap_uplink_bytes_total", "Bytes of IPv4 datagrams the routed TAP uplink carried, by direction.", "direction")
	mTAPRxFrames  = desc("tap_uplink_rx_frames_total", "Frames read from the routed TAP uplink's TAP, ARP and ignored ones included.")
	mTAPGSO       = desc("tap_uplink_gso_total", "TCP super-frames the routed TAP uplink carried whole, by direction: in (read from its TAP, handed to the gateway's GSO path), out (written to its TAP).", "direction")
	mTAPSegmented = desc("tap_uplink_rx_segmented_total", "Super-frames read from the routed TAP uplink's TAP and segmented in software.")
	mTAPCsum      = desc("tap_uplink_rx_csum_total", "Frames read from the routed TAP uplink's TAP whose partial checksum the uplink completed.")
	mTAPARP       = desc("tap_uplink_arp_total", "ARP packets of the routed TAP uplink, by direction: in, out.", "direction")
	mTAPPending   = desc("tap_uplink_pending_total", "Packets the routed TAP uplink held for ARP resolution, by result: queued, dropped (queue full), expired (no reply in time).", "result")
	mTAPDropped   = desc("tap_uplink_dropped_total", "Packets the routed TAP uplink dropped, by reason: ignored (frames read that are neither ARP nor IPv4 for the uplink, or malformed), tx_error (write failed, over the MTU), no_route (off-link without a gateway).", "reason")
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
		mCtlConns, mCtlClosed,
		mCTEntries, mCTMax, mNATMappings, mCTEvents, mNATPackets, mNATICMPError, mNATDropped,
		mHostPackets, mHostBytes, mHostTCPActive, mHostTCPEvents, mHostSockets, mHostOpened, mHostPublish, mHostDropped, mHostReasm, mHostUDPErrors,
		mTAPPackets, mTAPBytes, mTAPRxFrames, mTAPGSO, mTAPSegmented, mTAPCsum, mTAPARP, mTAPPending, mTAPDropped,
	} {
		ch <- d
	}
	for _, d := range dnsDescs {
		ch <- d
	}
}

// metricSink sends metrics to a Prometheus collector's channel.
type metricSink chan<- prometheus.Metric

// labelled is one value of a metric and the label that tells it from the
// metric's other values.
type labelled struct {
	label string
	v     uint64
}

// unlabelled is the value of a metric that has no labels.
type unlabelled struct {
	d *prometheus.Desc
	v uint64
}

func (ch metricSink) counter(d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (ch metricSink) gauge(d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// counters sends a counter of d for each value in vs, labelled with labels
// and then the value's own label.
func (ch metricSink) counters(d *prometheus.Desc, vs []labelled, labels ...string) {
	for _, v := range vs {
		ch.counter(d, v.v, append(labels[:len(labels):len(labels)], v.label)...)
	}
}

// each sends a counter for each of the metrics without labels in vs.
func (ch metricSink) each(vs ...unlabelled) {
	for _, v := range vs {
		ch.counter(v.d, v.v)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	sc := metricSink(ch)
	c.d.collectDNS(sc)
	s := c.d.Stats()
	ports := 0
	for _, p := range s.Ports {
		sc.counter(mCapCaptured, p.Capture.Captured, p.Name)
		sc.counter(mCapDropped, p.Capture.Dropped, p.Name)
		if p.Kind != "tap" && p.Kind != "gateway" && p.Kind != "vxlan" {
			continue
		}
		ports++
		st := p.Stats
		sc.counter(mPortRxPackets, st.RxPackets, p.Name)
		sc.counter(mPortRxBytes, st.RxBytes, p.Name)
		sc.counter(mPortTxPackets, st.TxPackets, p.Name)
		sc.counter(mPortTxBytes, st.TxBytes, p.Name)
		sc.counters(mPortRxDropped, []labelled{{"invalid", st.RxErrors}, {"same_port", st.RxFiltered},
			{"spoofed", st.RxSpoofed}, {"vlan_error", st.RxVLANErrors}, {"denied", st.RxDenied}}, p.Name)
		sc.counter(mPortTxDropped, st.TxDropped, p.Name, "write_failed")
	}
	for _, r := range c.d.Rules() {
		id := strconv.Itoa(r.ID)
		sc.counter(mRulePackets, r.Packets, id, r.Action)
		sc.counter(mRuleBytes, r.Bytes, id, r.Action)
	}
	for _, st := range c.d.sw.Pipeline() {
		sc.counter(mStageHits, st.Hits, st.Name)
		sc.counter(mStageDrops, st.Drops, st.Name)
	}
	sc.gauge(mPorts, float64(ports))
	sc.gauge(mCaptures, float64(len(s.Captures)))

	f := s.FDB
	sc.gauge(mFDBEntries, float64(f.Entries))
	sc.gauge(mFDBStatic, float64(f.Static))
	sc.counters(mFDBEvents, []labelled{{"learned", f.Learned}, {"moved", f.Moved}, {"aged", f.Aged},
		{"flushed", f.Flushed}, {"evicted", f.Evicted}})
	sc.counters(mFDBRefused, []labelled{{"ignored", f.Ignored}, {"limit_port", f.LimitPort},
		{"limit_total", f.LimitTotal}, {"static_conflict", f.StaticConflicts}})

	g := s.Gateway
	sc.each(unlabelled{mGwARPRequests, g.ARPRequests}, unlabelled{mGwARPReplies, g.ARPReplies},
		unlabelled{mGwARPConflict, g.ARPConflicts}, unlabelled{mGwEcho, g.EchoReplies},
		unlabelled{mGwICMPErrors, g.ICMPErrors}, unlabelled{mGwResets, g.TCPResets},
		unlabelled{mGwRateLimited, g.RateLimited}, unlabelled{mGwQueueDrops, g.QueueDrops})
	sc.gauge(mGwNeighbors, float64(len(c.d.gw.Neighbors())))
	sc.counters(mGwNeighEvents, []labelled{{"learned", g.NeighLearned}, {"evicted", g.NeighEvicted}})
	sc.counters(mGwDropped, []labelled{
		{"arp_other", g.ARPOther}, {"offload", g.Offload}, {"too_big", g.TooBig}, {"malformed", g.Malformed},
		{"bad_ipv4", g.BadIPv4}, {"bad_checksum", g.BadChecksum}, {"martian", g.Martian},
		{"fragment", g.Fragments}, {"not_for_us", g.NotForUs}, {"ipv6", g.IPv6},
		{"other_ethertype", g.OtherEtherType}, {"no_error_allowed", g.NoErrorAllowed}, {"ignored", g.Ignored},
	})
	sc.counters(mGwRouted, []labelled{{"out", g.Forwarded}, {"in", g.ToContainer}}, "ipv4")
	sc.counters(mGwRouted, []labelled{{"out", g.Forwarded6}, {"in", g.ToContainer6}}, "ipv6")
	sc.counters(mGwAdverts, []labelled{{"neighbor", g.NeighAdverts}, {"router", g.RouterAdverts}})
	sc.gauge(mCtlConns, float64(s.Control.Connections))
	sc.counters(mCtlClosed, []labelled{{"idle_longest", s.Control.IdleClosed}, {"refused", s.Control.Refused}})

	if s.NAT == nil {
		return
	}
	n := s.NAT
	// States are counted from the listing: scrape time only.
	byState := map[[3]string]int{}
	for _, e := range c.d.Conntrack() {
		byState[[3]string{e.Family, e.Proto, e.State}]++
	}
	for k, v := range byState {
		sc.gauge(mCTEntries, float64(v), k[0], k[1], k[2])
	}
	sc.gauge(mCTMax, float64(n.Max))
	sc.gauge(mNATMappings, float64(n.Mappings))
	sc.counters(mCTEvents, []labelled{{"created", n.Created}, {"expired", n.Expired}, {"evicted", n.Evicted},
		{"refused", n.Refused}, {"flushed", n.Flushed}})
	sc.counters(mNATPackets, []labelled{{"out", n.TranslatedOut}, {"in", n.TranslatedIn}})
	sc.counter(mNATICMPError, n.ICMPErrors)
	for reason, v := range n.Drops {
		sc.counter(mNATDropped, v, reason)
	}
	if h := s.HostUplink; h != nil {
		sc.collectHost(h)
	}
	if u := s.TAPUplink; u != nil {
		sc.collectTAP(u)
	}
}

// collectTAP sends the routed TAP uplink's metrics (`stats --json`'s
// tap_uplink).
func (ch metricSink) collectTAP(u *api.TAPUplinkStats) {
	ch.counters(mTAPPackets, []labelled{{"out", u.TxPackets}, {"in", u.RxPackets}})
	ch.counters(mTAPBytes, []labelled{{"out", u.TxBytes}, {"in", u.RxBytes}})
	ch.counter(mTAPRxFrames, u.RxFrames)
	ch.counters(mTAPGSO, []labelled{{"in", u.RxGSO}, {"out", u.TxGSO}})
	ch.counter(mTAPSegmented, u.RxSegmented)
	ch.counter(mTAPCsum, u.RxCsum)
	ch.counters(mTAPARP, []labelled{{"in", u.ARPIn}, {"out", u.ARPOut}})
	ch.counters(mTAPPending, []labelled{{"queued", u.PendingQueued}, {"dropped", u.PendingDropped}, {"expired", u.PendingExpired}})
	ch.counters(mTAPDropped, []labelled{{"ignored", u.RxIgnored}, {"tx_error", u.TxErrors}, {"no_route", u.NoRoute}})
}

// collectHost sends the host uplink's metrics.
func (ch metricSink) collectHost(h *api.HostUplinkStats) {
	ch.counters(mHostPackets, []labelled{{"out", h.TxPackets}, {"in", h.RxPackets}})
	ch.counters(mHostBytes, []labelled{{"out", h.TxBytes}, {"in", h.RxBytes}})
	ch.gauge(mHostTCPActive, float64(h.TCPActive))
	ch.counters(mHostTCPEvents, []labelled{{"connected", h.TCPTotal}, {"refused", h.TCPRefused},
		{"reset", h.TCPResets}, {"limit", h.TCPLimit}})
	ch.gauge(mHostSockets, float64(h.UDPSockets), "udp")
	ch.gauge(mHostSockets, float64(h.ICMPSockets), "icmp")
	ch.gauge(mHostSockets, float64(h.Listeners), "listener")
	ch.counters(mHostOpened, []labelled{{"udp", h.UDPTotal}, {"icmp", h.ICMPTotal}})
	ch.counters(mHostPublish, []labelled{{"accepted", h.PublishAccepted}, {"failed", h.PublishFailed},
		{"spliced", h.PublishSpliced}, {"splice_failed", h.SpliceFailed}})
	ch.counter(mHostReasm, h.Reassembled)
	ch.counter(mHostUDPErrors, h.UDPErrors)
	ch.counters(mHostDropped, []labelled{{"udp", h.UDPDropped}, {"fragment", h.FragmentsDropped},
		{"icmp_denied", h.ICMPDenied}, {"icmp", h.ICMPDropped}, {"loopback_refused", h.LoopbackRefused},
		{"malformed", h.Malformed}, {"other", h.Other}, {"socket_error", h.Errors}})
}
