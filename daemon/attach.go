package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
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
	cfg.GSOMaxSegs = d.tapGSOMaxSegs(a.mtu)
	d.tapConfig6(a, &cfg)
	if !d.useHelper() {
		dev, err := tap.Create(cfg)
		return dev, errorKind(err)
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
	exe, err := d.helperExe()
	if err != nil {
		a.stopWatch()
		return nil, err
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
		return nil, errorKind(err)
	}
	return dev, nil
}

// useHelper reports whether the daemon makes and adopts TAPs through the
// namespace helper: without CAP_NET_ADMIN, or with Config.AttachHelper.
func (d *Daemon) useHelper() bool {
	return !d.privileged || d.cfg.AttachHelper
}

// helperExe returns the binary the namespace helper runs.
func (d *Daemon) helperExe() (string, error) {
	if d.cfg.Exe != "" {
		return d.cfg.Exe, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find tapswitch's binary for the namespace helper: %w", err)
	}
	return exe, nil
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
	a.unpersist()
	d.sw.RemovePort(a.id)
	d.forgetAddrs(a)
	d.savePorts()
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
	if p, ok := cfg.Uplink.(uplink.Privileged); ok && !privileged() {
		return &reqError{ErrForbidden, fmt.Sprintf("--uplink %s needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): %s", cfg.Uplink.Kind(), p.Privileged())}
	}
	if cfg.LiveRestore && cfg.StatePath == "" {
		return invalid("--live-restore needs a state file to keep the attachments in")
	}
	return nil
}

// portGone is called by the switch when a TAP's Read fails: its device or
// namespace was deleted from outside.
func (d *Daemon) portGone(id fdb.PortID, name string, err error) {
	d.mu.Lock()
	var gone *attachment
	for _, a := range d.ports {
		if a.id == id {
			gone = a
			delete(d.ports, a.name)
			break
		}
	}
	d.mu.Unlock()
	if gone == nil {
		if id == d.gwID {
			d.log.Error("gateway port failed", "err", err)
		}
		return
	}
	gone.stopWatch()
	d.forgetAddrs(gone)
	d.savePorts()
	d.log.Info("port gone: its interface or namespace was deleted", "port", gone.name, "ip", gone.ip, "err", err)
}

// nameRE is what a port name may look like (Docker's container name rule).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// Attach creates a TAP in the namespace of req, configures it and attaches it
// to the switch. On error nothing is left behind.
func (d *Daemon) Attach(req api.AttachRequest) (api.Port, error) {
	return d.AttachContext(context.Background(), req)
}

// AttachContext is Attach for a caller that may give up: when ctx ends
// before the port is attached, nothing is left behind and ctx's error is
// returned (the control API passes the request's context, so an attach
// whose client went away is not carried out later).
//
// The daemon's lock is held only to check and reserve the name, address,
// MAC and publishes, and to add the finished port: the namespace path is
// checked without blocking first (a FIFO or a file must not wedge the
// control plane), and the slow work (creating the TAP, netlink in the
// container's namespace, the helper) is done without the lock, so listings
// and other attaches go on meanwhile.
func (d *Daemon) AttachContext(ctx context.Context, req api.AttachRequest) (api.Port, error) {
	a, err := d.parseAttach(req)
	if err != nil {
		return api.Port{}, err
	}
	pubs, err := d.parsePublishes(req.Publish)
	if err != nil {
		return api.Port{}, err
	}
	if a.nsIno, err = checkNetns(a.netns, req.PID); err != nil {
		return api.Port{}, err
	}
	if err := d.reserve(a, req, pubs); err != nil {
		return api.Port{}, err
	}
	p, err := d.attachReserved(ctx, a, pubs, func() (*tap.Device, error) { return d.createTap(a, req.PID) })
	if err != nil {
		d.unreserve(a, pubs)
		return api.Port{}, err
	}
	d.savePorts()
	return p, nil
}

// unreserve withdraws the reservation of a and its publishes.
func (d *Daemon) unreserve(a *attachment, pubs []nat.Publish) {
	d.mu.Lock()
	delete(d.pending, a.name)
	if len(pubs) > 0 {
		d.removePublishesTo(a.ip)
	}
	d.mu.Unlock()
}

// checkNetns checks that the namespace of an attach exists and is a network
// namespace, without blocking (tap.OpenNetns), and returns its inode number,
// which tells two paths to one namespace apart from two namespaces.
func checkNetns(path string, pid int) (uint64, error) {
	f, err := tap.OpenNetns(path)
	switch {
	case err == nil:
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return 0, fmt.Errorf("stat %s: %w", path, err)
		}
		return st.Ino, nil
	case pid > 0 && errors.Is(err, tap.ErrNetnsNotFound):
		return 0, notFound("no process with pid %d", pid)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		// As the namespace helper says it (nshelper.ErrNotOwned).
		return 0, &reqError{ErrForbidden, fmt.Sprintf("%s: permission denied: %v", path, nshelper.ErrNotOwned)}
	}
	return 0, errorKind(err)
}

// reserve takes the name, address and MAC of a, and its publishes, under
// the lock: a is pending until attachReserved is done with it.
func (d *Daemon) reserve(a *attachment, req api.AttachRequest, pubs []nat.Publish) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.closed:
		return errShuttingDown
	default:
	}
	if err := d.reserveLocked(a, req); err != nil {
		return err
	}
	if len(pubs) > 0 {
		// Published first, so that a conflict leaves nothing behind;
		// withdrawn if the TAP cannot be made.
		if err := d.addPublishes(a, pubs); err != nil {
			return err
		}
	}
	d.pending[a.name] = a
	return nil
}

// errShuttingDown is returned by attaches that come during Close.
var errShuttingDown = errors.New("daemon is shutting down")

// attachReserved makes the TAP of the reserved attachment a with open
// (creating or adopting it), without the lock, and adds it to the switch
// and to the ports, with the lock. With LiveRestore the TAP is made
// persistent. On error the caller withdraws the reservation.
func (d *Daemon) attachReserved(ctx context.Context, a *attachment, pubs []nat.Publish, open func() (*tap.Device, error)) (_ api.Port, err error) {
	if err := ctx.Err(); err != nil {
		return api.Port{}, fmt.Errorf("attach %s: client gave up: %w", a.name, err)
	}
	dev, err := open()
	if err != nil {
		return api.Port{}, err
	}
	a.gsoSegs = dev.GSOMaxSegs()
	// Once attached, and d.mu released: a tunnel added or removed while
	// the TAP was made (or before the daemon that made an adopted one
	// died) changes its bound (gsocap.go).
	defer func() {
		if err == nil {
			d.syncGSO(a)
		}
	}()
	fail := func() {
		dev.Close()
		a.stopWatch()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		fail()
		return api.Port{}, fmt.Errorf("attach %s: client gave up: %w", a.name, err)
	}
	select {
	case <-d.closed:
		fail()
		return api.Port{}, errShuttingDown
	default:
	}
	pc := vswitch.PortConfig{
		VLAN:       a.vlan,
		Trunk:      a.trunk,
		MAC:        a.mac,
		IPs:        []netip.Addr{a.ip},
		AllowSpoof: a.allowSpoof,
		AllowRA:    a.allowRA,
	}
	if a.ip6.IsValid() {
		pc.IPs = append(pc.IPs, a.ip6)
	}
	if a.id, err = d.sw.AddPortConfig(namedPort{dev, a.name}, pc); err != nil {
		// AddPortConfig has closed the TAP.
		a.stopWatch()
		if errors.Is(err, vswitch.ErrInvalidPortConfig) {
			return api.Port{}, invalid("%v", err)
		}
		return api.Port{}, err
	}
	if d.cfg.LiveRestore {
		// Set last, so that a failed attach leaves no TAP behind.
		if err := dev.SetPersist(true); err != nil {
			d.sw.RemovePort(a.id)
			a.stopWatch()
			return api.Port{}, err
		}
	}
	a.dev = dev
	delete(d.pending, a.name)
	d.ports[a.name] = a
	// Through CNI the runtime writes the container's resolv.conf (from
	// the result's dns), not ip netns exec.
	d.dnsAttachedLocked(a, a.req.NoResolvConf || a.req.ContainerID != "")
	if a.proc != nil {
		go d.watch(a)
	}
	d.log.Info("attached", "port", a.name, "netns", a.netns, "ifname", a.ifname, "mac", a.mac, "ip", a.ip, "publish", a.req.Publish,
		"vlan", a.vlan, "trunk", a.trunk, "allow_spoof", a.allowSpoof, "allow_ra", a.allowRA, "ip6", a.ip6, "helper", a.helper)
	p := d.describe(a, d.portInfo(a.id))
	for _, q := range pubs {
		q.Target = a.ip
		p.Publish = append(p.Publish, q.String())
	}
	return p, nil
}

// parseAttach checks the parts of req that need no state.
func (d *Daemon) parseAttach(req api.AttachRequest) (*attachment, error) {
	a := &attachment{req: req, name: req.Name, ifname: req.IfName, mtu: req.MTU, vlan: req.VLAN, allowSpoof: req.AllowSpoof, allowRA: req.AllowRA}
	switch {
	case req.Netns != "" && req.PID != 0:
		return nil, invalid("give either a namespace path or a pid, not both")
	case req.Netns != "":
		a.netns = req.Netns
		if a.name == "" {
			a.name = filepath.Base(req.Netns)
		}
	case req.PID > 0:
		a.netns = "/proc/" + strconv.Itoa(req.PID) + "/ns/net"
		if a.name == "" {
			a.name = "pid-" + strconv.Itoa(req.PID)
		}
	case req.PID < 0:
		return nil, invalid("pid %d: must be positive", req.PID)
	default:
		return nil, invalid("a namespace path (--netns) or a pid (--pid) is required")
	}
	if !nameRE.MatchString(a.name) {
		return nil, invalid("port name %q: must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", a.name)
	}
	if a.name == "gateway" || a.name == "uplink" {
		return nil, conflict("port name %q is reserved for the %s", a.name, a.name)
	}
	if tunnelName(a.name) {
		return nil, conflict("port name %q is reserved for VXLAN tunnels", a.name)
	}
	if a.ifname == "" {
		a.ifname = "eth0"
	}
	o, err := parseOwner(req)
	if err != nil {
		return nil, err
	}
	a.owner = o
	if err := tap.ValidIfName(a.ifname); err != nil {
		return nil, invalid("%v", err)
	}
	if a.mtu == 0 {
		a.mtu = d.cfg.MTU
	}
	if a.mtu < tap.MinMTU || a.mtu > tap.MaxMTU {
		return nil, invalid("mtu %d: must be between %d and %d", a.mtu, tap.MinMTU, tap.MaxMTU)
	}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil {
			return nil, invalid("ip %q: not an IP address", req.IP)
		}
		if err := hostAddr(d.cfg.Subnet, ip); err != nil {
			return nil, fmt.Errorf("ip %s: %w", ip, err)
		}
		if ip == d.cfg.Gateway {
			return nil, conflict("ip %s is the gateway's address", ip)
		}
		a.ip = ip
	}
	if err := d.parseIP6(a, req.IP6); err != nil {
		return nil, err
	}
	if req.MAC != "" {
		mac, err := fdb.ParseMAC(req.MAC)
		if err != nil {
			return nil, invalid("mac %q: %v", req.MAC, err)
		}
		if mac.IsMulticast() {
			return nil, invalid("mac %s is a multicast address; a port needs a unicast one", mac)
		}
		if mac.IsZero() {
			return nil, invalid("mac %s is the zero address", mac)
		}
		a.mac = mac
	}
	if len(req.Aliases) > 0 && d.cfg.DNS == nil {
		return nil, invalid("--alias needs the DNS server, which is off (run --dns=false)")
	}
	if a.aliases, err = parseAliases(req.Aliases); err != nil {
		return nil, err
	}
	if a.vlan == 0 {
		a.vlan = vswitch.DefaultVLAN
	}
	if err := api.ValidVLAN(int(a.vlan)); err != nil {
		return nil, invalid("%v", err)
	}
	for _, v := range req.Trunk {
		if err := api.ValidVLAN(int(v)); err != nil {
			return nil, invalid("trunk %v", err)
		}
		if v == a.vlan {
			return nil, invalid("trunk VLAN %d is the port's native (untagged) VLAN; leave it out of the trunk or choose another --vlan", v)
		}
		if slices.Contains(a.trunk, v) {
			return nil, invalid("trunk VLAN %d given twice", v)
		}
		a.trunk = append(a.trunk, v)
	}
	return a, nil
}

// reserveLocked checks a against the attached ports and those being
// attached, and fills in its address and MAC. d.mu is held.
func (d *Daemon) reserveLocked(a *attachment, req api.AttachRequest) error {
	if _, ok := d.ports[a.name]; ok {
		return conflict("port name %q is already in use", a.name)
	}
	if _, ok := d.pending[a.name]; ok {
		return conflict("port name %q is already in use (being attached)", a.name)
	}
	if err := d.ownerConflictLocked(a); err != nil {
		return err
	}
	used := make(map[netip.Addr]string, len(d.ports)+len(d.pending))
	macs := make(map[fdb.MAC]string, len(d.ports)+len(d.pending)+1)
	macs[d.gwMAC] = "the gateway"
	for _, set := range []map[string]*attachment{d.ports, d.pending} {
		for _, p := range set {
			used[p.ip] = p.name
			macs[p.mac] = p.name
			if (p.netns == a.netns || p.nsIno != 0 && p.nsIno == a.nsIno) && p.ifname == a.ifname {
				return conflict("interface %s in %s is already attached as port %s", a.ifname, a.netns, p.name)
			}
		}
	}
	if a.ip.IsValid() {
		if owner, ok := used[a.ip]; ok {
			return conflict("ip %s is taken by port %s", a.ip, owner)
		}
	} else {
		ip, err := d.nextFree(used)
		if err != nil {
			return err
		}
		a.ip = ip
	}
	if err := d.reserve6Locked(a); err != nil {
		return err
	}
	if req.MAC == "" {
		a.mac = macFor(a.ip)
	}
	if owner, ok := macs[a.mac]; ok {
		return conflict("mac %s is taken by %s", a.mac, owner)
	}
	return nil
}

// nextFree returns the lowest free host address of the subnet, from the
// second one up (Docker's 172.17.0.2 first), within the IP range if one
// is set.
func (d *Daemon) nextFree(used map[netip.Addr]string) (netip.Addr, error) {
	pool := d.cfg.Subnet
	if d.cfg.IPRange.IsValid() {
		pool = d.cfg.IPRange
	}
	for ip := pool.Addr().Next(); ip.IsValid() && pool.Contains(ip); ip = ip.Next() {
		if ip == d.cfg.Gateway || hostAddr(d.cfg.Subnet, ip) != nil {
			continue
		}
		if _, ok := used[ip]; !ok {
			return ip, nil
		}
	}
	return netip.Addr{}, conflict("no free address left in %s", pool)
}

// forgetAddrs forgets what the gateway, NAT and DNS hold for the
// addresses of a, a port that has left.
func (d *Daemon) forgetAddrs(a *attachment) {
	d.gw.Forget(a.ip)
	d.gw.Forget(a.ip6)
	d.forgetNAT(a.ip)
	d.forgetNAT(a.ip6)
	d.dnsDetached(a)
}

// Detach removes the port called name; its TAP disappears from its namespace.
func (d *Daemon) Detach(name string) error {
	d.mu.Lock()
	a, ok := d.ports[name]
	if ok {
		delete(d.ports, name)
	}
	d.mu.Unlock()
	if !ok {
		return notFound("no port named %q", name)
	}
	a.stopWatch()
	a.unpersist()
	err := d.sw.RemovePort(a.id)
	d.forgetAddrs(a)
	if err != nil && !errors.Is(err, vswitch.ErrNoPort) {
		return err
	}
	d.savePorts()
	d.log.Info("detached", "port", name)
	return nil
}
