// Package cni implements tapswitch's CNI plugin (type "tapswitch"): ADD,
// DEL, CHECK, GC and STATUS of the CNI specification (1.1), each a client of
// the daemon's control API. The binary (cmd/tapswitch-cni, installed as
// /opt/cni/bin/tapswitch) hands Funcs to the CNI library's skel.
//
// The plugin keeps no state of its own: the daemon records the container
// ID and network of every port it attached (api.AttachRequest), and DEL,
// CHECK and GC find the port again by (CNI_CONTAINERID, CNI_IFNAME).
package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// DefaultControl is the daemon's socket when the network configuration
// names none (`tapswitch run` as root). The plugin never reads the
// caller's environment for it: podman's cleanup process, which runs DEL,
// has only the configuration.
const DefaultControl = "/run/tapswitch/tapswitch.sock"

// Versions are the CNI specification versions the plugin speaks.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// NetConf is the plugin's entry of a network configuration list:
//
//	{"type": "tapswitch", "control": "/run/tapswitch/tapswitch.sock",
//	 "capabilities": {"portMappings": true, "ips": true, "mac": true}}
type NetConf struct {
	types.PluginConf
	// Control is the daemon's control socket; DefaultControl when empty.
	Control string `json:"control,omitempty"`
	// RuntimeConfig carries what the runtime fills in for the capabilities
	// the configuration declares.
	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`
}

// RuntimeConfig is the part of the configuration the runtime adds for the
// capabilities portMappings, ips and mac (CNI's CONVENTIONS.md).
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
}

// PortMapping is one entry of the portMappings capability. podman sends one
// entry per port of a range.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// cniArgs are the CNI_ARGS the plugin reads; others are refused unless
// IgnoreUnknown=1, as the CNI library does.
type cniArgs struct {
	types.CommonArgs
	IP           types.UnmarshallableString
	MAC          types.UnmarshallableString
	K8S_POD_NAME types.UnmarshallableString // the container's name (podman, Kubernetes)
}

// loadConf parses the plugin's configuration from stdin.
func loadConf(args *skel.CmdArgs) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(args.StdinData, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode the network configuration", err.Error())
	}
	if conf.Control == "" {
		conf.Control = DefaultControl
	}
	return conf, nil
}

// request is what an ADD asks of the daemon, from the configuration,
// CNI_ARGS and the runtime's capabilities.
type request struct {
	name    string // the port's name
	ip, mac string
	publish []string
}

// parseRequest reads the port's name, address, MAC and publishes from
// args and conf. The capabilities (runtimeConfig) win over CNI_ARGS.
func parseRequest(args *skel.CmdArgs, conf *NetConf) (request, error) {
	var ca cniArgs
	if err := types.LoadArgs(args.Args, &ca); err != nil {
		return request{}, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS", err.Error())
	}
	r := request{name: portName(string(ca.K8S_POD_NAME), args.ContainerID, args.IfName)}
	r.ip = string(ca.IP)
	if ips := conf.RuntimeConfig.IPs; len(ips) > 0 {
		if len(ips) > 1 {
			return request{}, types.NewError(types.ErrInvalidNetworkConfig, "runtimeConfig.ips: one IPv4 address", fmt.Sprintf("got %v", ips))
		}
		r.ip = ips[0]
	}
	if r.ip != "" {
		// The capability's form is CIDR ("10.90.0.5/16"); CNI_ARGS' a bare address.
		if p, err := netip.ParsePrefix(r.ip); err == nil {
			r.ip = p.Addr().String()
		}
		if a, err := netip.ParseAddr(r.ip); err != nil || !a.Is4() {
			return request{}, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("address %q: not an IPv4 address", r.ip), "")
		}
	}
	r.mac = string(ca.MAC)
	if m := conf.RuntimeConfig.MAC; m != "" {
		r.mac = m
	}
	pub, err := publishSpecs(conf.RuntimeConfig.PortMappings)
	if err != nil {
		return request{}, err
	}
	r.publish = pub
	return r, nil
}

// portName is the port's name: the container's (K8S_POD_NAME, which podman
// passes too) when it makes a valid port name, else the container ID's first
// 12 characters, as docker and podman show it. An interface other than eth0
// is added after a dot, so one container can have several.
func portName(pod, containerID, ifname string) string {
	name := pod
	if !validName(name) {
		name = containerID
		if len(name) > 12 {
			name = name[:12]
		}
	}
	if ifname != "" && ifname != "eth0" {
		// Interface names may hold bytes a port name may not.
		name += "." + strings.Map(func(r rune) rune {
			if r < 0x80 && validName(string(r)) {
				return r
			}
			return '-'
		}, ifname)
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// validName is the daemon's rule for a port name.
func validName(s string) bool {
	if s == "" || len(s) > 64 || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "_") || strings.HasPrefix(s, "-") {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
