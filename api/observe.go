package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Capture and statistics endpoints:
//
//	GET    /v1/capture?port=NAME[&port=NAME...]|all=1[&format=pcapng|pcap][&count=N][&duration=D][&snaplen=N][&filter=EXPR]
//	       streams a pcapng (or pcap) file until stopped; trailers carry the counts
//	GET    /v1/captures          []CaptureInfo, the captures running
//	DELETE /v1/captures/{id}     stops a capture: its stream ends cleanly (204)
//	GET    /v1/stats             Stats

// Headers and trailers of a capture stream.
const (
	// CaptureIDHeader names the capture, for DELETE /v1/captures/{id}.
	CaptureIDHeader = "Tapswitch-Capture-Id"
	// TrailerCaptured counts the packets written to the stream.
	TrailerCaptured = "Tapswitch-Captured"
	// TrailerReceived counts the packets that passed the filter.
	TrailerReceived = "Tapswitch-Received"
	// TrailerDropped counts the packets that passed the filter but were
	// dropped because the reader was too slow.
	TrailerDropped = "Tapswitch-Dropped"
)

// CaptureRequest asks for a capture. Exactly one of Ports and All is set.
type CaptureRequest struct {
	Ports    []string      // port names; "gateway" is the gateway's port
	All      bool          // every port, one pcapng interface each
	Format   string        // "pcapng" (default) or "pcap"
	Count    int           // stop after this many packets; 0: no limit
	Duration time.Duration // stop after this long; 0: no limit
	Snaplen  int           // bytes kept of each frame; 0: the daemon's default (262144)
	Filter   string        // tcpdump-style expression; empty: every frame
}

// Query encodes r as the query of GET /v1/capture.
func (r CaptureRequest) Query() url.Values {
	q := url.Values{}
	for _, p := range r.Ports {
		q.Add("port", p)
	}
	if r.All {
		q.Set("all", "1")
	}
	if r.Format != "" {
		q.Set("format", r.Format)
	}
	if r.Count > 0 {
		q.Set("count", strconv.Itoa(r.Count))
	}
	if r.Duration > 0 {
		q.Set("duration", r.Duration.String())
	}
	if r.Snaplen > 0 {
		q.Set("snaplen", strconv.Itoa(r.Snaplen))
	}
	if r.Filter != "" {
		q.Set("filter", r.Filter)
	}
	return q
}

// CaptureInfo describes a running capture.
type CaptureInfo struct {
	ID         string             `json:"id"`
	Filter     string             `json:"filter,omitempty"`
	Format     string             `json:"format"`
	Started    time.Time          `json:"started"`
	Captured   uint64             `json:"captured"` // written to the stream
	Interfaces []CaptureInterface `json:"interfaces"`
}

// CaptureInterface is one capture point of a capture.
type CaptureInterface struct {
	Name     string `json:"name"`
	Received uint64 `json:"received"` // frames that passed the filter
	Dropped  uint64 `json:"dropped"`  // of those, lost because the reader was too slow
}

// CaptureResult is what a capture stream's trailers say once it has ended.
type CaptureResult struct {
	Captured, Received, Dropped uint64
}

// CaptureStream is a running capture: read the pcapng or pcap bytes from it.
type CaptureStream struct {
	// ID names the capture for StopCapture.
	ID string
	// ContentType is the stream's media type.
	ContentType string
	resp        *http.Response
	eof         bool
}

// Read reads the capture file's bytes.
func (s *CaptureStream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	if errors.Is(err, io.EOF) {
		s.eof = true
	}
	return n, err
}

// Close ends the stream from this side (the daemon stops the capture).
func (s *CaptureStream) Close() error { return s.resp.Body.Close() }

// Result returns the counts from the stream's trailers; ok is false until
// the stream has been read to its end, or if it was cut.
func (s *CaptureStream) Result() (r CaptureResult, ok bool) {
	if !s.eof {
		return r, false
	}
	get := func(k string) (uint64, bool) {
		v, err := strconv.ParseUint(s.resp.Trailer.Get(k), 10, 64)
		return v, err == nil
	}
	var ok1, ok2, ok3 bool
	r.Captured, ok1 = get(TrailerCaptured)
	r.Received, ok2 = get(TrailerReceived)
	r.Dropped, ok3 = get(TrailerDropped)
	return r, ok1 && ok2 && ok3
}

// Capture starts a capture and returns once the daemon has accepted it (a
// bad filter or an unknown port is an error here). The stream has no
// timeout: it ends when the capture stops, when ctx is done, or on Close.
func (c *Client) Capture(ctx context.Context, r CaptureRequest) (*CaptureStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tapswitch/v1/capture?"+r.Query().Encode(), nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the tapswitch daemon at %s (is `tapswitch run` running?): %w", c.socket, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return &CaptureStream{ID: resp.Header.Get(CaptureIDHeader), ContentType: resp.Header.Get("Content-Type"), resp: resp}, nil
}

// StopCapture stops the capture called id: its stream ends cleanly, with
// its trailers.
func (c *Client) StopCapture(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/captures/"+url.PathEscape(id), nil, nil)
}

// Captures lists the running captures.
func (c *Client) Captures(ctx context.Context) ([]CaptureInfo, error) {
	return call[[]CaptureInfo](ctx, c, http.MethodGet, "/v1/captures", nil)
}

// Stats returns the switch's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	return call[Stats](ctx, c, http.MethodGet, "/v1/stats", nil)
}

// statusError reads an error response.
func statusError(resp *http.Response) error {
	var e Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("daemon answered %s", resp.Status)
	}
	return &StatusError{Status: resp.StatusCode, Message: e.Message}
}

// Stats are the switch's counters, as `tapswitch stats` shows them.
type Stats struct {
	Ports    []PortCounters `json:"ports"`
	FDB      FDBStats       `json:"fdb"`
	Gateway  GatewayStats   `json:"gateway"`
	Captures []CaptureInfo  `json:"captures"`
	// NAT is the connection tracking's counters; nil without an uplink.
	NAT *ConntrackStats `json:"nat,omitempty"`
	// DNS is the embedded DNS server's counters; nil when it is off.
	DNS *DNSStats `json:"dns,omitempty"`
	// HostUplink is the host uplink's counters; nil with another uplink.
	HostUplink *HostUplinkStats `json:"host_uplink,omitempty"`
	// TAPUplink is the routed TAP uplink's counters; nil with another
	// uplink.
	TAPUplink *TAPUplinkStats `json:"tap_uplink,omitempty"`
	// Process is the daemon process's own resources.
	Process ProcessStats `json:"process"`
	// Control is the control socket's connections and what its limits
	// did.
	Control ControlStats `json:"control"`
	// VXLAN is the tunnels' counters, per remote VTEP among them.
	VXLAN []VXLAN `json:"vxlan,omitempty"`
}

// ProcessStats are the daemon process's resources, to check that
// connections leave nothing behind.
type ProcessStats struct {
	Goroutines int `json:"goroutines"`
	OpenFDs    int `json:"open_fds"` // -1 when /proc/self/fd cannot be read
}

// ControlStats are the control socket's connections: how many are open,
// and how many its cap on connections closed.
type ControlStats struct {
	Connections int64 `json:"connections"` // open now
	// IdleClosed counts connections closed, idle the longest, to make
	// room for a new one past the cap.
	IdleClosed uint64 `json:"idle_closed"`
	// Refused counts connections answered 503 past the cap, every open
	// one having a request in progress.
	Refused uint64 `json:"refused"`
}

// TAPUplinkStats are the routed TAP uplink's counters (uplink/tap.Stats).
type TAPUplinkStats struct {
	RxFrames       uint64 `json:"rx_frames"`
	RxPackets      uint64 `json:"rx_packets"`
	RxBytes        uint64 `json:"rx_bytes"`
	RxIgnored      uint64 `json:"rx_ignored"`
	TxPackets      uint64 `json:"tx_packets"`
	TxBytes        uint64 `json:"tx_bytes"`
	TxErrors       uint64 `json:"tx_errors"`
	NoRoute        uint64 `json:"no_route"`
	ARPIn          uint64 `json:"arp_in"`
	ARPOut         uint64 `json:"arp_out"`
	NDIn           uint64 `json:"nd_in"`  // neighbor solicitations and advertisements read (IPv6)
	NDOut          uint64 `json:"nd_out"` // and sent
	Echo6          uint64 `json:"echo6"`  // ICMPv6 echo requests to the uplink answered
	PendingQueued  uint64 `json:"pending_queued"`
	PendingDropped uint64 `json:"pending_dropped"`
	PendingExpired uint64 `json:"pending_expired"`
	RxGSO          uint64 `json:"rx_gso"`       // TCP super-frames handed to the gateway whole
	RxSegmented    uint64 `json:"rx_segmented"` // super-frames segmented in software
	RxCsum         uint64 `json:"rx_csum"`      // partial checksums completed
	TxGSO          uint64 `json:"tx_gso"`       // TCP super-frames written whole
}

// HostUplinkStats are the host uplink's counters (uplink/host.Stats).
type HostUplinkStats struct {
	TxPackets        uint64 `json:"tx_packets"`
	TxBytes          uint64 `json:"tx_bytes"`
	RxPackets        uint64 `json:"rx_packets"`
	RxBytes          uint64 `json:"rx_bytes"`
	TCPActive        uint64 `json:"tcp_active"`
	TCPTotal         uint64 `json:"tcp_total"`
	TCPRefused       uint64 `json:"tcp_refused"`
	TCPResets        uint64 `json:"tcp_resets"`
	TCPLimit         uint64 `json:"tcp_limit"`
	UDPSockets       uint64 `json:"udp_sockets"`
	UDPTotal         uint64 `json:"udp_total"`
	UDPDropped       uint64 `json:"udp_dropped"`
	UDPErrors        uint64 `json:"udp_errors"`
	Reassembled      uint64 `json:"reassembled"`
	FragmentsDropped uint64 `json:"fragments_dropped"`
	ICMPSockets      uint64 `json:"icmp_sockets"`
	ICMPTotal        uint64 `json:"icmp_total"`
	ICMPDenied       uint64 `json:"icmp_denied"`
	ICMPDropped      uint64 `json:"icmp_dropped"`
	LoopbackRefused  uint64 `json:"loopback_refused"`
	Listeners        uint64 `json:"listeners"`
	PublishAccepted  uint64 `json:"publish_accepted"`
	PublishFailed    uint64 `json:"publish_failed"`
	PublishSpliced   uint64 `json:"publish_spliced"` // loopback clients spliced into the container's namespace
	SpliceFailed     uint64 `json:"splice_failed"`   // loopback clients whose connection inside could not be opened (netstack instead)
	Malformed        uint64 `json:"malformed"`
	Other            uint64 `json:"other_dropped"`
	Errors           uint64 `json:"errors"`
}

// PortCounters are one port's counters, and those of its capture point
// (uplinks and other capture points that are not ports have only those).
type PortCounters struct {
	Name    string       `json:"name"`
	Kind    string       `json:"kind"` // "tap", "gateway", or the kind of capture point ("uplink")
	Stats   PortStats    `json:"stats"`
	Capture CaptureStats `json:"capture"`
}

// CaptureStats are a capture point's counters over every capture it had.
type CaptureStats struct {
	Captured uint64 `json:"captured"`
	Dropped  uint64 `json:"dropped"` // lost because a capture's reader was too slow
}

// FDBStats are the MAC table's counters (see fdb.Stats).
type FDBStats struct {
	Entries         int    `json:"entries"`
	Static          int    `json:"static"`
	Learned         uint64 `json:"learned"`
	Moved           uint64 `json:"moved"`
	Aged            uint64 `json:"aged"`
	Flushed         uint64 `json:"flushed"`
	Ignored         uint64 `json:"ignored"`
	LimitPort       uint64 `json:"limit_port"`
	LimitTotal      uint64 `json:"limit_total"`
	Evicted         uint64 `json:"evicted"`
	StaticConflicts uint64 `json:"static_conflicts"`
}

// GatewayStats are the gateway's counters (see gateway.Stats).
type GatewayStats struct {
	ARPRequests     uint64 `json:"arp_requests"`
	ARPReplies      uint64 `json:"arp_replies"`
	ARPOther        uint64 `json:"arp_other"`
	ARPConflicts    uint64 `json:"arp_conflicts"`
	EchoReplies     uint64 `json:"echo_replies"`
	ICMPErrors      uint64 `json:"icmp_errors"`
	TCPResets       uint64 `json:"tcp_resets"`
	RateLimited     uint64 `json:"rate_limited"`
	QueueDrops      uint64 `json:"queue_drops"`
	NeighLearned    uint64 `json:"neigh_learned"`
	NeighEvicted    uint64 `json:"neigh_evicted"`
	Forwarded       uint64 `json:"forwarded"`
	FragmentsSent   uint64 `json:"fragments_sent"`
	UplinkIn        uint64 `json:"uplink_in"`
	ToContainer     uint64 `json:"to_container"`
	NATDrops        uint64 `json:"nat_drops"`
	UplinkErrors    uint64 `json:"uplink_errors"`
	TTLExceeded     uint64 `json:"ttl_exceeded"`
	FragNeeded      uint64 `json:"frag_needed"`
	PendingQueued   uint64 `json:"pending_queued"`
	PendingDropped  uint64 `json:"pending_dropped"`
	PendingExpired  uint64 `json:"pending_expired"`
	ARPRequestsSent uint64 `json:"arp_requests_sent"`
	NeighAdverts    uint64 `json:"neigh_adverts"`
	RouterAdverts   uint64 `json:"router_adverts"`
	Forwarded6      uint64 `json:"forwarded6"`     // IPv6 packets sent through the uplink (NAT66, or the host uplink's)
	ToContainer6    uint64 `json:"to_container6"`  // IPv6 packets from it (or hairpinned) to a container
	NeighSolicits   uint64 `json:"neigh_solicits"` // neighbor solicitations for containers' IPv6 addresses
	LocalIn         uint64 `json:"local_in"`       // datagrams to the embedded DNS server
	LocalOut        uint64 `json:"local_out"`      // datagrams it sent
	Offload         uint64 `json:"offload"`
	TooBig          uint64 `json:"too_big"`
	Malformed       uint64 `json:"malformed"`
	BadIPv4         uint64 `json:"bad_ipv4"`
	BadChecksum     uint64 `json:"bad_checksum"`
	Martian         uint64 `json:"martian"`
	Fragments       uint64 `json:"fragments"`
	NotForUs        uint64 `json:"not_for_us"`
	IPv6            uint64 `json:"ipv6"`
	OtherEtherType  uint64 `json:"other_ethertype"`
	NoErrorAllowed  uint64 `json:"no_error_allowed"`
	Ignored         uint64 `json:"ignored"`
}
