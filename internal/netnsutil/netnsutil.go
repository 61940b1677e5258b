// Package netnsutil runs code and TCP servers inside named network
// namespaces, for the demo, the integration tests and the soak benchmark.
package netnsutil

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Path returns the file of the named namespace, as `ip netns` keeps it.
func Path(name string) string { return "/run/netns/" + name }

// Add creates the named namespace with `ip netns add` and brings its
// loopback up.
func Add(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		Del(name)
		return fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Del deletes the named namespace with `ip netns del`.
func Del(name string) error {
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on an OS thread that has entered the network namespace at
// path. Sockets fn creates stay in that namespace for their lifetime, and
// may be used from any goroutine after Do returns.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	return DoIn(target, path, fn)
}

// DoIn is Do for a namespace the caller has opened (and closes); name
// names it in errors.
func DoIn(target netns.NsHandle, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is locked and never unlocked if it cannot return to
		// its namespace: the runtime then ends it with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from netns %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ServeTCP listens on addr of network (tcp4, tcp6) inside the named
// namespace and serves the listener (Serve) on a goroutine of its own,
// until the listener it returns is closed.
func ServeTCP(name, network, addr string, handle func(net.Conn)) (net.Listener, error) {
	var ln net.Listener
	if err := Do(Path(name), func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		return nil, err
	}
	go Serve(ln, handle)
	return ln, nil
}

// Serve accepts connections on ln, in whichever namespace it was made,
// until ln is closed, and runs handle on each, on a goroutine of its own,
// closing the connection when handle returns.
func Serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
