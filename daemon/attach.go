package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/switch/tap"
)

// helperTimeout bounds one run of the namespace helper.
const helperTimeout = 15 * time.Second

// createTap creates the TAP of a in its namespace. pid is the process of
// --pid, 0 for --netns.
//
// A privileged daemon creates the TAP in its own namespace and moves it in
// (tap.Create): the kernel then deletes it with the namespace, and the port
// goes when its Read fails. Without CAP_NET_ADMIN (or with
// Config.AttachHelper), a helper entered into the namespace's user and
// network namespaces creates it there (package nshelper). Such a TAP keeps
// its namespace alive, so with --pid the process is watched and the port
// removed when it exits; with --netns the port stays until it is detached,
// and the namespace with it.
func (d *Daemon) createTap(a *attachment, pid int) (*tap.Device, error) {
	cfg := tap.Config{
		Netns:   a.netns,
		Name:    a.ifname,
		MAC:     net.HardwareAddr(a.mac[:]),
		MTU:     a.mtu,
		Addr:    netip.PrefixFrom(a.ip, d.cfg.Subnet.Bits()),
		Gateway: d.cfg.Gateway,
	}
	if d.privileged && !d.cfg.AttachHelper {
		dev, err := tap.Create(cfg)
		return dev, tapError(err)
	}
	a.helper = true
	if pid > 0 {
		// The pidfd first: opened before the namespace, it names the
		// process whose namespace the helper enters.
		p, err := nshelper.WatchPID(pid)
		if errors.Is(err, nshelper.ErrNoProcess) {
			return nil, notFound("no process with pid %d", pid)
		}
		if err != nil {
			return nil, err
		}
		a.proc = p
	}
	exe := d.cfg.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			a.stopWatch()
			return nil, fmt.Errorf("find tapswitch's binary for the namespace helper: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	dev, err := nshelper.Create(ctx, exe, cfg, d.privileged)
	if err == nil && a.proc != nil && a.proc.Exited() {
		// It died while the helper ran: nothing would remove the port.
		dev.Close()
		err = notFound("pid %d exited during attach", pid)
	}
	if err != nil {
		a.stopWatch()
		if errors.Is(err, nshelper.ErrNotOwned) {
			return nil, &reqError{ErrForbidden, err.Error()}
		}
		return nil, tapError(err)
	}
	return dev, nil
}

// tapError gives an error of tap.Create the kind the API answers with.
func tapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tap.ErrNetnsNotFound):
		return notFound("%v", err)
	case errors.Is(err, tap.ErrLinkExists):
		return conflict("%v", err)
	case errors.Is(err, tap.ErrInvalidConfig):
		return invalid("%v", err)
	}
	return err
}

// watch waits for the process of a to exit and then removes its port. It
// returns early when stopWatch closes the pidfd (detach, port gone, close).
func (d *Daemon) watch(a *attachment) {
	if err := a.proc.Wait(); err != nil {
		return
	}
	d.mu.Lock()
	cur, ok := d.ports[a.name]
	if ok && cur == a {
		delete(d.ports, a.name)
	}
	d.mu.Unlock()
	if !ok || cur != a {
		return
	}
	a.stopWatch()
	d.sw.RemovePort(a.id)
	d.gw.Forget(a.ip)
	d.forgetNAT(a.ip)
	d.log.Info("port gone: its process exited", "port", a.name, "ip", a.ip)
}

// stopWatch closes the pidfd of a, if any, which ends watch.
func (a *attachment) stopWatch() {
	if a.proc != nil {
		a.proc.Close()
	}
}

// privileged reports whether this process has CAP_NET_ADMIN and
// CAP_SYS_ADMIN in its user namespace, as root does: what creating a TAP
// and moving it into another namespace takes.
func privileged() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_NET_ADMIN) && has(unix.CAP_SYS_ADMIN)
}

// checkPrivileges refuses what cfg asks for that needs root when the
// daemon does not have it, with an error that says so: the routed TAP
// uplink is created in another namespace and moved. Everything else of the
// daemon works unprivileged.
func checkPrivileges(cfg Config) error {
	if cfg.Uplink != nil && !privileged() {
		return &reqError{ErrForbidden, "--uplink tap needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): it creates a TAP and moves it into another namespace"}
	}
	return nil
}
