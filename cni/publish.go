package cni

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// publishSpecs turns the portMappings capability into the daemon's publish
// specs ([HOSTIP:]HOSTPORT[-END]:PORT[-END]/PROTO). Runtimes send one entry
// per port of a range (podman's -p 8000-8002:80-82 is three); entries that
// continue each other (the next host port and the next container port, same
// protocol and host address) are joined into one range again, so that the
// daemon keeps, and `tapswitch ports` shows, what the user asked for.
func publishSpecs(pms []PortMapping) ([]string, error) {
	type mapping struct {
		hostIP           string
		proto            string
		host, container  int
		hostEnd, contEnd int
	}
	ms := make([]mapping, 0, len(pms))
	seen := make(map[string]bool, len(pms)) // proto/host port: NAT keeps one publish per host port and protocol, whatever the host address
	for _, pm := range pms {
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port mapping %d:%d/%s: protocol must be tcp or udp", pm.HostPort, pm.ContainerPort, pm.Protocol), "")
		}
		if pm.HostPort < 1 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port mapping %d:%d/%s: ports must be 1-65535", pm.HostPort, pm.ContainerPort, proto), "")
		}
		hostIP := ""
		if pm.HostIP != "" {
			a, err := netip.ParseAddr(pm.HostIP)
			if err != nil || a.Is4In6() || a.Zone() != "" {
				return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port mapping %d:%d/%s: host address %q: not an IPv4 or IPv6 address", pm.HostPort, pm.ContainerPort, proto, pm.HostIP), "")
			}
			switch {
			case a.IsUnspecified():
				// Every address, of both families, as before.
			case a.Is6():
				hostIP = "[" + a.String() + "]"
			default:
				hostIP = a.String()
			}
		}
		key := proto + "/" + strconv.Itoa(pm.HostPort)
		if seen[key] {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port mapping %d:%d/%s: host port %d/%s is mapped twice", pm.HostPort, pm.ContainerPort, proto, pm.HostPort, proto), "")
		}
		seen[key] = true
		ms = append(ms, mapping{hostIP: hostIP, proto: proto, host: pm.HostPort, container: pm.ContainerPort, hostEnd: pm.HostPort, contEnd: pm.ContainerPort})
	}
	slices.SortStableFunc(ms, func(a, b mapping) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.hostIP, b.hostIP), cmp.Compare(a.host, b.host))
	})
	var joined []mapping
	for _, m := range ms {
		if n := len(joined); n > 0 {
			last := &joined[n-1]
			if last.proto == m.proto && last.hostIP == m.hostIP && m.host == last.hostEnd+1 && m.container == last.contEnd+1 {
				last.hostEnd, last.contEnd = m.host, m.container
				continue
			}
		}
		joined = append(joined, m)
	}
	specs := make([]string, 0, len(joined))
	for _, m := range joined {
		var b strings.Builder
		if m.hostIP != "" {
			b.WriteString(m.hostIP + ":")
		}
		b.WriteString(portRange(m.host, m.hostEnd) + ":" + portRange(m.container, m.contEnd) + "/" + m.proto)
		specs = append(specs, b.String())
	}
	return specs, nil
}

func portRange(first, last int) string {
	if first == last {
		return strconv.Itoa(first)
	}
	return strconv.Itoa(first) + "-" + strconv.Itoa(last)
}
