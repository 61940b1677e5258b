// Package api defines tapswitch's control API: the JSON bodies exchanged over
// the daemon's unix socket, and a client for it.
//
// The API is HTTP/1.1 over a unix socket, so curl can speak it:
//
//	curl --unix-socket /run/tapswitch/tapswitch.sock http://tapswitch/v1/ports
//
// Endpoints (all bodies JSON):
//
//	GET    /v1/info          Info
//	GET    /v1/ports         []Port (the gateway included)
//	POST   /v1/ports         AttachRequest -> Port (201)
//	GET    /v1/ports/{name}  Port
//	DELETE /v1/ports/{name}  204
//	GET    /v1/fdb           []FDBEntry
//
// and those of NAT, listed in nat.go, of captures and statistics, in
// observe.go, and of ACL rules and the pipeline, in rules.go.
//
// Errors are a status code of 400 (bad input), 403 (a namespace the daemon
// may not enter: without root, one of another user), 404 (no such port,
// namespace or process), 409 (a name, address or MAC already in use) or 500,
// with an Error body.
package api

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Version is tapswitch's version, reported by the CLI and the daemon.
const Version = "0.1.0"

// AttachRequest asks the daemon to create a TAP in a network namespace and
// attach it to the switch. Exactly one of Netns and PID is set.
type AttachRequest struct {
	Netns  string `json:"netns,omitempty"`  // path of the namespace, e.g. /run/netns/c1
	PID    int    `json:"pid,omitempty"`    // a process whose namespace to use (/proc/PID/ns/net)
	Name   string `json:"name,omitempty"`   // port name; default: the namespace's file name, or pid-PID
	IfName string `json:"ifname,omitempty"` // interface name in the namespace; default eth0
	IP     string `json:"ip,omitempty"`     // address in the subnet; default: the next free one from .2 up
	// IP6 is the IPv6 address in the daemon's IPv6 subnet (run --ipv6);
	// default: the next free one from ::2 up. Refused without --ipv6.
	IP6 string `json:"ip6,omitempty"`
	MAC string `json:"mac,omitempty"` // default: 02:42 followed by the IPv4 address, as Docker did
	MTU int    `json:"mtu,omitempty"` // default: the daemon's MTU
	// Publish are published ports in Docker's -p syntax (needs an uplink).
	Publish []string `json:"publish,omitempty"`
	// VLAN is the port's access VLAN, or a trunk's native (untagged) VLAN;
	// 0 means 1.
	VLAN uint16 `json:"vlan,omitempty"`
	// Trunk are the VLANs the port carries 802.1Q-tagged; empty: an access
	// port.
	Trunk []uint16 `json:"trunk,omitempty"`
	// AllowSpoof turns port security off for the port: it may send from
	// any MAC and IP (routers, labs).
	AllowSpoof bool `json:"allow_spoof,omitempty"`
	// AllowRA lets the port send IPv6 router advertisements, redirects
	// and DHCPv6 server messages, which RA guard drops otherwise.
	AllowRA bool `json:"allow_ra,omitempty"`
	// Aliases are further DNS names of the port, besides its name.
	Aliases []string `json:"aliases,omitempty"`
	// NoResolvConf keeps attach from writing /etc/netns/NAME/resolv.conf
	// for a /run/netns/NAME namespace.
	NoResolvConf bool `json:"no_resolv_conf,omitempty"`
	// ContainerID and Network are set by the CNI plugin: the runtime's
	// container ID and the CNI network's name, by which the plugin's DEL,
	// CHECK and GC find the port again (with IfName). Empty for a port
	// attached by hand.
	ContainerID string `json:"container_id,omitempty"`
	Network     string `json:"network,omitempty"`
}

// Port describes a port of the switch.
type Port struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // "tap" or "gateway"
	IfName string `json:"ifname,omitempty"`
	Netns  string `json:"netns,omitempty"`
	MAC    string `json:"mac"`
	IP     string `json:"ip"` // with the subnet's prefix length, as `ip addr` shows it
	// IP6 is the IPv6 address with its prefix length (/64), "" when the
	// daemon runs without --ipv6.
	IP6 string `json:"ip6,omitempty"`
	MTU int    `json:"mtu"`
	// Offloads are what the switch may hand the port whole: "csum,tso4,..."
	// for a TAP that negotiated them, "none" for the gateway.
	Offloads string    `json:"offloads"`
	Stats    PortStats `json:"stats"`
	// Publish are the port's published ports, e.g. "8080:80/tcp".
	Publish []string `json:"publish,omitempty"`
	// VLAN is the access VLAN, or a trunk's native VLAN.
	VLAN uint16 `json:"vlan"`
	// Trunk are the VLANs carried tagged; empty for an access port.
	Trunk []uint16 `json:"trunk,omitempty"`
	// Aliases are the port's DNS names besides its name.
	Aliases []string `json:"aliases,omitempty"`
	// ResolvConf is the resolv.conf attach wrote for the namespace
	// (removed on detach); "" when it wrote none.
	ResolvConf string `json:"resolv_conf,omitempty"`
	// AllowSpoof: port security is off for this port.
	AllowSpoof bool `json:"allow_spoof,omitempty"`
	// AllowRA: RA guard is off for this port.
	AllowRA bool `json:"allow_ra,omitempty"`
	// ContainerID and Network: those of the AttachRequest (CNI).
	ContainerID string `json:"container_id,omitempty"`
	Network     string `json:"network,omitempty"`
}

// VLANs describes a port's VLANs as `tapswitch ports` shows them: "10" for
// an access port, "1,T:10,20" for a trunk with native VLAN 1.
func (p Port) VLANs() string {
	s := strconv.Itoa(int(p.VLAN))
	if len(p.Trunk) == 0 {
		return s
	}
	t := make([]string, len(p.Trunk))
	for i, v := range p.Trunk {
		t[i] = strconv.Itoa(int(v))
	}
	return s + ",T:" + strings.Join(t, ",")
}

// PortStats are a port's counters as the switch sees them: rx is what the
// switch received from the port, tx what it sent to it.
type PortStats struct {
	RxPackets  uint64 `json:"rx_packets"`
	RxBytes    uint64 `json:"rx_bytes"`
	RxErrors   uint64 `json:"rx_errors"`   // frames too short, or from a multicast or zero MAC
	RxFiltered uint64 `json:"rx_filtered"` // destination behind the ingress port
	TxPackets  uint64 `json:"tx_packets"`
	TxBytes    uint64 `json:"tx_bytes"`
	TxDropped  uint64 `json:"tx_dropped"` // the port could not take the frame
	// RxSpoofed counts port security violations: a source MAC, IPv4
	// source or ARP sender the port was not attached with.
	RxSpoofed uint64 `json:"rx_spoofed"`
	// RxVLANErrors counts frames tagged on an access port, with more than
	// one tag, or for a VLAN the trunk does not carry.
	RxVLANErrors uint64 `json:"rx_vlan_errors"`
	// RxDenied counts frames dropped by an ACL rule or by isolation.
	RxDenied uint64 `json:"rx_denied"`
}

// Drops is the sum of every drop counter.
func (s PortStats) Drops() uint64 {
	return s.RxErrors + s.RxFiltered + s.TxDropped + s.RxSpoofed + s.RxVLANErrors + s.RxDenied
}

// FDBEntry is one entry of the MAC table, as `bridge fdb show` lists them.
type FDBEntry struct {
	MAC    string  `json:"mac"`
	VLAN   uint16  `json:"vlan,omitempty"`
	Port   string  `json:"port"`
	Static bool    `json:"static"`
	Age    float64 `json:"age_seconds"` // since last seen; 0 for static entries
	// VTEP is, for a MAC behind a VXLAN tunnel, the remote VTEP it was
	// learned from (or pinned to); "" for local ports.
	VTEP string `json:"vtep,omitempty"`
}

// Info describes the running daemon.
type Info struct {
	Version    string  `json:"version"`
	PID        int     `json:"pid"`
	Subnet     string  `json:"subnet"`
	Gateway    string  `json:"gateway"`
	GatewayMAC string  `json:"gateway_mac"`
	MTU        int     `json:"mtu"`
	FDBAgeing  float64 `json:"fdb_ageing_seconds"`
	FDBEntries int     `json:"fdb_entries"`
	Uplink     string  `json:"uplink"`  // "none" or the uplink's spec
	Mode       string  `json:"mode"`    // "learning" or "hub"
	Isolate    bool    `json:"isolate"` // run --icc=false
	// GatewayVLAN is the VLAN the gateway is on.
	GatewayVLAN uint16 `json:"gateway_vlan"`
	// StateFile is where the daemon keeps its rules; "" for none.
	StateFile string `json:"state_file,omitempty"`
	// Subnet6, Gateway6 and GatewayLL are the IPv6 subnet, the gateway's
	// address in it and its link-local address (run --ipv6); RA is
	// whether it sends router advertisements. Empty without --ipv6.
	Subnet6   string `json:"subnet6,omitempty"`
	Gateway6  string `json:"gateway6,omitempty"`
	GatewayLL string `json:"gateway_ll,omitempty"`
	RA        bool   `json:"ra,omitempty"`
	// IPRange is the part of the subnet this host hands out (--ip-range);
	// "" means the whole subnet.
	IPRange string `json:"ip_range,omitempty"`
	// DNS is the embedded DNS server, what a container's resolv.conf
	// (or a CNI result's dns field) names; nil when it is off.
	DNS *DNSInfo `json:"dns,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Message string `json:"error"`
}

// SockEnv is the environment variable that overrides the default socket.
const SockEnv = "TAPSWITCH_SOCK"

// DefaultSocket is the control socket used when none is given:
// $TAPSWITCH_SOCK, else /run/tapswitch/tapswitch.sock for root, else
// $XDG_RUNTIME_DIR/tapswitch.sock (falling back to the system temporary
// directory when XDG_RUNTIME_DIR is unset).
func DefaultSocket() string {
	if s := os.Getenv(SockEnv); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return "/run/tapswitch/tapswitch.sock"
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tapswitch-"+strconv.Itoa(os.Geteuid()))
	}
	return filepath.Join(dir, "tapswitch.sock")
}
