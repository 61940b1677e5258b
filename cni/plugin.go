package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/api"
)

// Error codes of the plugin's own (the CNI spec leaves 100 and up to
// plugins). The message of each names the cause in the daemon's words.
const (
	// ErrDaemonUnreachable: no daemon answers on the configured socket.
	ErrDaemonUnreachable uint = 100
	// ErrSubnetFull: the daemon's subnet has no free address.
	ErrSubnetFull uint = 101
	// ErrHostPortInUse: a published host port is taken (by another
	// publish, a NAT mapping or another program of the host).
	ErrHostPortInUse uint = 102
	// ErrTaken: the address, MAC or port name asked for is in use.
	ErrTaken uint = 103
)

// timeout bounds one command's talk with the daemon; an attach through
// the namespace helper takes up to 15 s.
const timeout = 30 * time.Second

// Funcs are the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: Add, Del: Del, Check: Check, GC: GC, Status: Status}
}

// Add attaches CNI_NETNS as CNI_IFNAME with the configuration's publishes,
// address and MAC, and prints the result. An ADD repeated for the same
// container and interface prints the same result and attaches nothing.
// On error nothing is left attached or published (the daemon's attach is
// all or nothing).
func Add(args *skel.CmdArgs) error {
	return withDaemon(args, func(ctx context.Context, conf *NetConf, c *api.Client) error {
		req, err := parseRequest(args, conf)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return daemonError(conf.Control, "", err)
		}
		p, found, err := findPort(ctx, c, args)
		if err != nil {
			return daemonError(conf.Control, "", err)
		}
		if !found {
			ar := api.AttachRequest{
				Netns:       args.Netns,
				Name:        req.name,
				IfName:      args.IfName,
				IP:          req.ip,
				MAC:         req.mac,
				Publish:     req.publish,
				ContainerID: args.ContainerID,
				Network:     conf.Name,
			}
			p, err = c.Attach(ctx, ar)
			if unseen(err) {
				p, err = attachByFD(ctx, c, ar)
			}
			if err != nil {
				return daemonError(conf.Control, "attach "+args.Netns+" as "+req.name, err)
			}
		}
		res, err := result(p, args.Netns, info)
		if err != nil {
			return err
		}
		return types.PrintResult(res, conf.CNIVersion)
	})
}

// withDaemon loads the network configuration of args and runs f with a
// client of the daemon it names, within the command's timeout.
func withDaemon(args *skel.CmdArgs, f func(ctx context.Context, conf *NetConf, c *api.Client) error) error {
	conf, err := loadConf(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f(ctx, conf, api.NewClient(conf.Control))
}

// detach detaches the port name; a port already gone (with its namespace)
// is no error.
func detach(ctx context.Context, c *api.Client, name string) error {
	err := c.Detach(ctx, name)
	if se := (*api.StatusError)(nil); errors.As(err, &se) && se.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// unseen tells whether the daemon answered an attach with "not a network
// namespace" (400; 404 from daemons before the path was checked without
// blocking): the path is a bind mount it cannot see, made in a mount
// namespace of the runtime's own (rootless podman's).
func unseen(err error) bool {
	var se *api.StatusError
	return errors.As(err, &se) && (se.Status == http.StatusBadRequest || se.Status == http.StatusNotFound) &&
		strings.Contains(se.Message, "not a network namespace")
}

// attachByFD attaches the namespace of ar.Netns as the plugin sees it, for
// a daemon that cannot see that path: the plugin holds the namespace open
// and names it by its own /proc/PID/fd/N, which the daemon (the same user,
// or root) can open from any mount namespace for as long as the attach
// request lasts. When the plugin cannot open the path as a network
// namespace either, it answers as the daemon did: not found.
func attachByFD(ctx context.Context, c *api.Client, ar api.AttachRequest) (api.Port, error) {
	f, err := os.Open(ar.Netns)
	if err != nil {
		return api.Port{}, &api.StatusError{Status: http.StatusNotFound, Message: fmt.Sprintf("network namespace %s: %v", ar.Netns, err)}
	}
	defer f.Close()
	if typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWNET {
		return api.Port{}, &api.StatusError{Status: http.StatusNotFound, Message: fmt.Sprintf("network namespace not found: %s is not a network namespace", ar.Netns)}
	}
	ar.Netns = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
	return c.Attach(ctx, ar)
}

// result describes port p, in the namespace at sandbox, of the daemon
// described by info as a CNI result.
func result(p api.Port, sandbox string, info api.Info) (*current.Result, error) {
	addr, err := netip.ParsePrefix(p.IP)
	if err != nil {
		return nil, types.NewError(types.ErrInternal, fmt.Sprintf("daemon gave port %s the address %q", p.Name, p.IP), err.Error())
	}
	gw := net.ParseIP(info.Gateway)
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: p.IfName, Mac: p.MAC, Mtu: p.MTU, Sandbox: sandbox}},
		IPs: []*current.IPConfig{{
			Address:   net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)},
			Gateway:   gw,
			Interface: current.Int(0), // podman shows no address without it
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
		DNS:    resultDNS(info),
	}
	return r, addIPv6(r, p, info)
}

// resultDNS is the DNS configuration handed to the runtime: the embedded
// DNS server on the gateway (its IPv4 address, and its IPv6 one with
// --ipv6) and its search domain, when the daemon runs one
// (podman puts the nameservers of a CNI result first in the container's
// resolv.conf, before the host's, and adds the search domains).
func resultDNS(info api.Info) types.DNS {
	if info.DNS == nil || info.DNS.Nameserver == "" {
		return types.DNS{}
	}
	ns := []string{info.DNS.Nameserver}
	if info.DNS.Nameserver6 != "" {
		ns = append(ns, info.DNS.Nameserver6)
	}
	return types.DNS{Nameservers: ns, Search: info.DNS.Search}
}

// findPort returns the port of the container and interface of args.
func findPort(ctx context.Context, c *api.Client, args *skel.CmdArgs) (api.Port, bool, error) {
	ports, err := c.Ports(ctx)
	if err != nil {
		return api.Port{}, false, err
	}
	for _, p := range ports {
		if p.ContainerID == args.ContainerID && p.IfName == args.IfName {
			return p, true, nil
		}
	}
	return api.Port{}, false, nil
}

// Del detaches the port of the container and interface, which removes its
// publishes. It succeeds when the port is already gone, and when no daemon
// runs on the socket: a daemon that stops removes every TAP it made, so
// nothing of the container is left to remove (the CNI spec: DEL succeeds
// when the resources are gone).
func Del(args *skel.CmdArgs) error {
	return withDaemon(args, func(ctx context.Context, conf *NetConf, c *api.Client) error {
		p, found, err := findPort(ctx, c, args)
		if notRunning(err) {
			fmt.Fprintf(os.Stderr, "tapswitch: no daemon on %s; nothing attached to remove: %v\n", conf.Control, err)
			return nil
		}
		if err != nil {
			return daemonError(conf.Control, "", err)
		}
		if !found {
			return nil
		}
		if err := detach(ctx, c, p.Name); err != nil {
			return daemonError(conf.Control, "detach "+p.Name, err)
		}
		return nil
	})
}

// Check verifies that the container's port exists, in CNI_NETNS, with the
// address and MAC of prevResult.
func Check(args *skel.CmdArgs) error {
	return withDaemon(args, func(ctx context.Context, conf *NetConf, c *api.Client) error {
		p, found, err := findPort(ctx, c, args)
		if err != nil {
			return daemonError(conf.Control, "", err)
		}
		if !found {
			return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("container %s has no port for %s on the switch", args.ContainerID, args.IfName), "")
		}
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
		}
		if conf.PrevResult == nil {
			return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs a prevResult", "")
		}
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
		}
		// A port attached through the plugin's /proc/PID/fd/N (attachByFD)
		// has no path to compare.
		if p.Netns != args.Netns && !strings.HasPrefix(p.Netns, "/proc/") {
			return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("port %s is in %s, not in %s", p.Name, p.Netns, args.Netns), "")
		}
		addr, _ := netip.ParsePrefix(p.IP)
		ipOK := false
		for _, ipc := range prev.IPs {
			if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok && a.Unmap() == addr.Addr() {
				ipOK = true
			}
		}
		if !ipOK {
			return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port %s has address %s, which prevResult does not list", p.Name, p.IP), "")
		}
		for _, itf := range prev.Interfaces {
			if itf.Name == args.IfName && itf.Sandbox != "" && !strings.EqualFold(itf.Mac, p.MAC) {
				return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("port %s has MAC %s, prevResult says %s", p.Name, p.MAC, itf.Mac), "")
			}
		}
		return nil
	})
}

// GC detaches the ports of this network whose attachment is not in
// cni.dev/valid-attachments. Ports attached by hand, or through another
// network's configuration, are left alone.
func GC(args *skel.CmdArgs) error {
	return withDaemon(args, func(ctx context.Context, conf *NetConf, c *api.Client) error {
		valid := make(map[types.GCAttachment]bool, len(conf.ValidAttachments))
		for _, a := range conf.ValidAttachments {
			valid[a] = true
		}
		ports, err := c.Ports(ctx)
		if err != nil {
			return daemonError(conf.Control, "", err)
		}
		var errs []error
		for _, p := range ports {
			if p.ContainerID == "" || p.Network != conf.Name || valid[types.GCAttachment{ContainerID: p.ContainerID, IfName: p.IfName}] {
				continue
			}
			if err := detach(ctx, c, p.Name); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", p.Name, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return daemonError(conf.Control, "garbage collection", err)
		}
		return nil
	})
}

// Status fails when the daemon does not answer or its subnet has no free
// address left: then an ADD cannot succeed.
func Status(args *skel.CmdArgs) error {
	return withDaemon(args, func(ctx context.Context, conf *NetConf, c *api.Client) error {
		info, err := c.Info(ctx)
		if err != nil {
			return types.NewError(types.ErrPluginNotAvailable, err.Error(), "socket "+conf.Control)
		}
		ports, err := c.Ports(ctx)
		if err != nil {
			return types.NewError(types.ErrPluginNotAvailable, err.Error(), "socket "+conf.Control)
		}
		subnet, err := netip.ParsePrefix(info.Subnet)
		if err != nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("daemon's subnet %q", info.Subnet), err.Error())
		}
		used := 0
		for _, p := range ports {
			if a, err := netip.ParsePrefix(p.IP); err == nil && subnet.Contains(a.Addr()) {
				used++ // the gateway included
			}
		}
		if free := hostAddrs(subnet) - used; free <= 0 {
			return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("subnet %s is full: no free address left for a container (%d ports)", subnet, len(ports)), "socket "+conf.Control)
		}
		return nil
	})
}

// hostAddrs is the number of host addresses of an IPv4 subnet: without the
// network and broadcast addresses.
func hostAddrs(p netip.Prefix) int {
	bits := 32 - p.Bits()
	if bits > 30 {
		bits = 30
	}
	n := 1 << bits
	if n <= 2 {
		return n
	}
	return n - 2
}

// notRunning tells whether err means that no daemon listens on the socket:
// no socket file, or nobody accepting on it.
func notRunning(err error) bool {
	return err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
}

// daemonError turns an error of the daemon's API into a CNI error whose
// code and message name the cause.
func daemonError(socket, what string, err error) error {
	msg := err.Error()
	if what != "" {
		msg = what + ": " + msg
	}
	var se *api.StatusError
	switch {
	case errors.As(err, &se):
		switch se.Status {
		case http.StatusConflict:
			switch {
			case strings.Contains(se.Message, "no free address"):
				return types.NewError(ErrSubnetFull, "subnet full: "+msg, "")
			case strings.Contains(se.Message, "host port"):
				return types.NewError(ErrHostPortInUse, "host port in use: "+msg, "")
			}
			return types.NewError(ErrTaken, msg, "")
		case http.StatusBadRequest:
			return types.NewError(types.ErrInvalidNetworkConfig, msg, "")
		case http.StatusNotFound:
			return types.NewError(types.ErrInvalidNetNS, msg, "")
		}
		return types.NewError(types.ErrInternal, msg, "")
	case notRunning(err):
		detail := err
		if u := errors.Unwrap(err); u != nil {
			detail = u // the client's message repeats the socket's path
		}
		return types.NewError(ErrDaemonUnreachable, fmt.Sprintf("tapswitch daemon not running: no daemon answers on %s (start it: `tapswitch run`, or systemctl start tapswitch)", socket), detail.Error())
	}
	return types.NewError(types.ErrTryAgainLater, msg, "socket "+socket)
}
