package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/switch/tap"
)

// Live restore (--live-restore), as Docker's and as Open vSwitch keeps its
// ports across a restart of ovs-vswitchd: the containers' TAPs are
// persistent (TUNSETPERSIST), so that they outlive the daemon, crashed,
// killed or upgraded, with their addresses and routes, and the attachments
// are kept in the state file. The next daemon adopts every TAP whose
// namespace and interface are still there (Restore), with its publishes,
// and reports and forgets the others; the containers do nothing. Frames
// sent during the gap are lost (TCP retransmits them); what lived only in
// the daemon's memory is gone: learned MACs and neighbours (learned again
// from the next frames), NAT mappings and connections (outbound
// connections through the uplink break; published ports come back), TCP
// connections the host uplink's netstack terminated.

// savedPort is an attachment in the state file: the request as it was
// given, whole (fields added to api.AttachRequest come along), and what the
// daemon chose for it.
type savedPort struct {
	Request api.AttachRequest `json:"request"`
	Name    string            `json:"name"`
	IfName  string            `json:"ifname"`
	Netns   string            `json:"netns"`
	// NetnsInode tells the namespace apart from another one at the same
	// path (a /proc/PID path whose PID was reused).
	NetnsInode uint64   `json:"netns_inode"`
	MAC        string   `json:"mac"`
	IP         string   `json:"ip"`
	IP6        string   `json:"ip6,omitempty"`     // run --ipv6
	Publish    []string `json:"publish,omitempty"` // published to it now, -p syntax
}

// writeStateLocked writes the state file with rules, next and, with
// LiveRestore, the attached ports. d.rules.mu is held.
func (d *Daemon) writeStateLocked(rules []api.Rule, next int) error {
	st := state{Version: stateVersion, NextRuleID: next, Rules: rules, Subnet6: d.subnet6State}
	if d.cfg.LiveRestore && !d.removeAll.Load() {
		st.Ports = d.savedPorts()
	}
	return st.save(d.rules.path)
}

// savedPorts returns the attached ports as the state file keeps them.
func (d *Daemon) savedPorts() []savedPort {
	pubs := d.publishesOf()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]savedPort, 0, len(d.ports))
	for _, a := range d.ports {
		req := a.req
		req.Aliases = a.aliases // as changed since the attach (SetAliases)
		out = append(out, savedPort{
			Request: req, Name: a.name, IfName: a.ifname, Netns: a.netns, NetnsInode: a.nsIno,
			MAC: a.mac.String(), IP: a.ip.String(), Publish: pubs[a.name],
		})
		if a.ip6.IsValid() {
			out[len(out)-1].IP6 = a.ip6.String()
		}
	}
	return out
}

// savePorts writes the state file after the ports changed, with
// LiveRestore; not once the daemon is closing, so that a SIGTERM leaves
// the ports for the next start.
func (d *Daemon) savePorts() {
	if !d.cfg.LiveRestore {
		return
	}
	select {
	case <-d.closed:
		return
	default:
	}
	d.rules.mu.Lock()
	defer d.rules.mu.Unlock()
	if err := d.writeStateLocked(d.rules.rules, d.rules.next); err != nil {
		d.log.Error("state file: the ports could not be saved; a restart would not restore them", "err", err)
	}
}

// unpersist clears the persist flag of a's TAP, so that the kernel deletes
// it when its file is closed.
func (a *attachment) unpersist() {
	if a.dev != nil {
		a.dev.SetPersist(false)
	}
}

// Restore is called once the daemon holds its control socket (so that no
// other daemon uses the TAPs): with LiveRestore it adopts the ports the
// state file lists, as they were, with their publishes, and forgets (and
// reports) those whose namespace or interface is gone; without it, it
// removes the TAPs a live-restore daemon left there and says so. It returns
// the names of the ports restored (or removed) and of those gone. An
// adopted TAP gets the gso_max_segs of this daemon's tunnels (--vxlan),
// which the last daemon's may not have had (attachReserved, gsocap.go).
func (d *Daemon) Restore() (done, gone []string, err error) {
	if d.rules.path == "" {
		return nil, nil, nil
	}
	st, err := loadState(d.rules.path)
	if err != nil || len(st.Ports) == 0 {
		return nil, nil, err
	}
	for _, sp := range st.Ports {
		var err error
		if d.cfg.LiveRestore {
			err = d.restorePort(sp)
		} else {
			err = d.removeLeftover(sp)
		}
		switch {
		case err == nil && d.cfg.LiveRestore:
			d.log.Info("port restored", "port", sp.Name, "netns", sp.Netns, "ifname", sp.IfName, "ip", sp.IP, "publish", sp.Publish)
			done = append(done, sp.Name)
		case err == nil:
			d.log.Info("removed the TAP of a port a live-restore daemon left (this one runs without --live-restore)", "port", sp.Name, "netns", sp.Netns, "ifname", sp.IfName)
			done = append(done, sp.Name)
		default:
			d.log.Warn("port not restored: gone", "port", sp.Name, "netns", sp.Netns, "ifname", sp.IfName, "reason", err)
			gone = append(gone, sp.Name)
		}
	}
	// What is attached now, nothing else (and nothing without
	// LiveRestore).
	d.rules.mu.Lock()
	defer d.rules.mu.Unlock()
	if err := d.writeStateLocked(d.rules.rules, d.rules.next); err != nil {
		return done, gone, err
	}
	return done, gone, nil
}

// restorePort adopts the TAP of sp and attaches it as it was.
func (d *Daemon) restorePort(sp savedPort) error {
	a, err := d.parseAttach(sp.Request)
	if err != nil {
		return err
	}
	if a.name != sp.Name || a.netns != sp.Netns || a.ifname != sp.IfName {
		return fmt.Errorf("state file: port %s does not match its request", sp.Name)
	}
	if a.ip, err = netip.ParseAddr(sp.IP); err != nil {
		return fmt.Errorf("state file: port %s: ip %q: %w", sp.Name, sp.IP, err)
	}
	if a.mac, err = fdb.ParseMAC(sp.MAC); err != nil {
		return fmt.Errorf("state file: port %s: mac %q: %w", sp.Name, sp.MAC, err)
	}
	if err := d.parseIP6(a, sp.IP6); err != nil {
		return fmt.Errorf("state file: port %s: %w", sp.Name, err)
	}
	if a.nsIno, err = checkNetns(a.netns, sp.Request.PID); err != nil {
		return err
	}
	if a.nsIno != sp.NetnsInode {
		return fmt.Errorf("%s is another namespace now", a.netns)
	}
	pubs, err := d.parsePublishes(sp.Publish)
	if err != nil {
		return err
	}
	req := sp.Request
	req.IP, req.MAC = sp.IP, sp.MAC // as chosen then
	if err := d.reserve(a, req, pubs); err != nil {
		return err
	}
	if pid := sp.Request.PID; pid > 0 {
		// The adopted TAP's file keeps the namespace alive (tap.Adopt):
		// the port goes when the process exits.
		if a.proc, err = nshelper.WatchPID(pid); err != nil {
			d.unreserve(a, pubs)
			return err
		}
	}
	_, err = d.attachReserved(context.Background(), a, pubs, func() (*tap.Device, error) {
		return d.adopt(a)
	})
	if err != nil {
		d.unreserve(a, pubs)
		return err
	}
	return nil
}

// adopt attaches to the persistent TAP of a: itself with CAP_NET_ADMIN,
// through the namespace helper otherwise (an unprivileged daemon: the
// helper is root in the container's user namespace, which is what
// attaching to an existing TAP takes; TUNSETPERSIST on the file it hands
// back takes nothing).
func (d *Daemon) adopt(a *attachment) (*tap.Device, error) {
	mac := net.HardwareAddr(a.mac[:])
	if !d.useHelper() {
		return tap.Adopt(a.netns, a.ifname, mac, false)
	}
	a.helper = true
	var dev *tap.Device
	err := d.withHelper(func(ctx context.Context, exe string) (err error) {
		dev, err = nshelper.Adopt(ctx, exe, a.netns, a.ifname, mac, false, d.privileged)
		return err
	})
	return dev, err
}

// withHelper runs fn with the namespace helper's binary and a context
// that bounds its run.
func (d *Daemon) withHelper(fn func(ctx context.Context, exe string) error) error {
	exe, err := d.helperExe()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	return fn(ctx, exe)
}

// removeLeftover deletes the persistent TAP of sp, if it is still there:
// itself with CAP_NET_ADMIN, through the namespace helper otherwise.
func (d *Daemon) removeLeftover(sp savedPort) error {
	mac, err := net.ParseMAC(sp.MAC)
	if err != nil {
		return fmt.Errorf("state file: port %s: mac %q: %w", sp.Name, sp.MAC, err)
	}
	if d.useHelper() {
		err := d.withHelper(func(ctx context.Context, exe string) error {
			return nshelper.Remove(ctx, exe, sp.Netns, sp.IfName, mac, d.privileged)
		})
		if errors.Is(err, nshelper.ErrGone) {
			return fmt.Errorf("no interface %s in %s: %w", sp.IfName, sp.Netns, err)
		}
		return err
	}
	err = tap.Remove(sp.Netns, sp.IfName, mac)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("no interface %s in %s", sp.IfName, sp.Netns)
	}
	return err
}

// KeptPorts reports whether Close left the TAPs for the next daemon
// (LiveRestore without Shutdown).
func (d *Daemon) KeptPorts() bool {
	return d.cfg.LiveRestore && !d.removeAll.Load()
}
