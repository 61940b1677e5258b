package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/internal/nshelper"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/uplink/host"
)

// DefaultSubnet is the subnet used when none is given: neither Docker
// (172.17.0.0/16 and its pools in 172.16.0.0/12 and 192.168.0.0/16) nor
// podman (10.88.0.0/16) use it by default.
var DefaultSubnet = netip.MustParsePrefix("10.90.0.0/16")

// DefaultMTU is the MTU of the gateway and of attached interfaces unless
// told otherwise.
const DefaultMTU = 1500

// Errors the daemon's methods wrap, so that the control API can answer with
// the right status.
var (
	// ErrInvalid is returned when a request has malformed or out-of-range input.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound is returned when a named port or namespace does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a name, address or MAC is already in use.
	ErrConflict = errors.New("already in use")
	// ErrForbidden is returned when the daemon may not act on a namespace:
	// without root, one that belongs to another user.
	ErrForbidden = errors.New("forbidden")
)

// reqError is an error with a kind (ErrInvalid, ErrNotFound, ErrConflict)
// that chooses the status code, and a message that stands alone.
type reqError struct {
	kind error
	msg  string
}

func (e *reqError) Error() string        { return e.msg }
func (e *reqError) Is(target error) bool { return target == e.kind }

func invalid(format string, a ...any) error {
	return &reqError{ErrInvalid, fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &reqError{ErrConflict, fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &reqError{ErrNotFound, fmt.Sprintf(format, a...)}
}

// Config configures a Daemon.
type Config struct {
	Subnet    netip.Prefix  // the containers' subnet; zero means DefaultSubnet
	Gateway   netip.Addr    // the gateway's address; zero means the subnet's first address
	MTU       int           // zero means DefaultMTU
	FDBAgeing time.Duration // zero means fdb.DefaultAgeing
	Log       *slog.Logger  // nil means slog.Default()
	// Uplink is the routed TAP uplink; nil means none (no NAT, no
	// published ports, outside destinations unreachable).
	Uplink *uplink.Config
	// HostUplink is the host-socket uplink; nil means none. At most one
	// of Uplink and HostUplink is set.
	HostUplink *host.Config
	// NAT configures connection tracking (MaxEntries, Timeouts, port
	// range); External and Internal are set from Uplink and Subnet.
	NAT nat.Config
	// AttachHelper makes every attach go through the namespace helper
	// (attach.go), as it does anyway when the daemon has no CAP_NET_ADMIN.
	AttachHelper bool
	// Exe is the tapswitch binary the helper runs; "" means the daemon's
	// own (os.Executable).
	Exe string
	// Mode is the switch's pipeline: learning ("" means it) or hub.
	Mode vswitch.Mode
	// Isolate is Docker's icc=false: containers reach the gateway only,
	// unless an allow rule names a pair of them.
	Isolate bool
	// GatewayVLAN is the VLAN the gateway is on; 0 means vswitch.DefaultVLAN.
	GatewayVLAN uint16
	// StatePath is the state file, where ACL rules are kept across
	// restarts (see StatePath); "" keeps them in memory only.
	StatePath string
}

// Daemon is a running switch with its gateway and attached containers. Its
// methods are safe for concurrent use.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	sw     *vswitch.Switch
	gw     *gateway.Gateway
	gwID   fdb.PortID
	gwMAC  fdb.MAC
	closed chan struct{}
	once   sync.Once
	nat    *natState // nil without an uplink; see nat.go
	// privileged is whether the daemon has CAP_NET_ADMIN and CAP_SYS_ADMIN
	// in its user namespace: it then creates TAPs itself (attach.go).
	privileged bool

	mu sync.Mutex // guards ports and the address and MAC sets derived from it
	// ports are the attached containers by port name.
	ports map[string]*attachment

	obs observe // captures, capture points that are not ports (capture.go)

	rules rulesState // ACL rules and the state file (rules.go)
}

// attachment is a container's TAP attached to the switch.
type attachment struct {
	name   string
	ifname string
	netns  string
	mac    fdb.MAC
	ip     netip.Addr
	mtu    int
	id     fdb.PortID
	// proc is the attached process when the TAP was made by the helper:
	// such a TAP keeps its namespace alive, so the port is removed when
	// the process exits instead (attach.go). nil otherwise.
	proc *nshelper.Process
	// helper is whether the TAP was made by the namespace helper.
	helper bool
	// vlan is the access VLAN, or the trunk's native one; trunk the VLANs
	// carried tagged.
	vlan       uint16
	trunk      []uint16
	allowSpoof bool
}

// namedPort is a container's TAP under its port name: the TAP's own Name is
// its interface name in the namespace (eth0 for nearly every container),
// and the switch matches ACL rules by Port.Name.
type namedPort struct {
	*tap.Device
	name string
}

func (p namedPort) Name() string { return p.name }

// New validates cfg, checks that the subnet does not overlap a route of the
// current network namespace, and starts a switch with its gateway.
func New(cfg Config) (_ *Daemon, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := checkRoutes(cfg.Subnet); err != nil {
		return nil, err
	}
	if err := checkPrivileges(cfg); err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:        cfg,
		log:        cfg.Log,
		ports:      map[string]*attachment{},
		closed:     make(chan struct{}),
		privileged: privileged(),
	}
	sw, err := vswitch.New(vswitch.Config{
		FDB:      fdb.Config{Ageing: cfg.FDBAgeing},
		PortGone: d.portGone,
		Mode:     cfg.Mode,
		Isolate:  cfg.Isolate,
	})
	if err != nil {
		return nil, err
	}
	d.sw = sw
	defer func() {
		if err != nil {
			sw.Close()
			if d.nat != nil {
				d.nat.up.Close()
			}
		}
	}()
	d.gwMAC = macFor(cfg.Gateway)
	gcfg := gateway.Config{
		MAC:  net.HardwareAddr(d.gwMAC[:]),
		Addr: netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits()),
		MTU:  cfg.MTU,
	}
	if d.nat, err = d.openUplink(); err != nil {
		return nil, err
	}
	if d.nat != nil {
		gcfg.NAT, gcfg.Uplink, gcfg.Clock = d.nat.table, d.nat.up, sw.Now
		gcfg.QueueLen = 1024 // room for bursts from the uplink
		if hc := d.cfg.HostUplink; hc != nil && hc.HostLoopback {
			gcfg.HostLoopback = hc.Loopback
		}
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	d.gw = gw
	// The gateway routes, so it sends from any IP; its MAC is still checked.
	// AddPortConfig closes the gateway if it fails.
	if d.gwID, err = sw.AddPortConfig(gw, vswitch.PortConfig{VLAN: cfg.GatewayVLAN, MAC: d.gwMAC, Gateway: true}); err != nil {
		return nil, err
	}
	// The gateway never moves: pin its MAC, in its VLAN, so a container
	// cannot take it over by sending with it as source.
	if err := sw.FDB().AddStatic(fdb.Key{MAC: d.gwMAC, VLAN: cfg.GatewayVLAN}, d.gwID); err != nil {
		return nil, fmt.Errorf("gateway fdb entry: %w", err)
	}
	if err := d.loadRules(cfg.StatePath); err != nil {
		return nil, err
	}
	if d.nat != nil && d.nat.host != nil {
		// TCP super-segments from the netstack to the containers.
		d.nat.host.SetGSOHandler(gw.FromUplinkGSOSlices)
	}
	d.startNAT()
	return d, nil
}

// fill validates c and sets its defaults.
func (c *Config) fill() error {
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.Subnet.Addr().Is4() {
		return invalid("subnet %s: only IPv4 subnets are supported", c.Subnet)
	}
	if c.Subnet.Bits() > 30 {
		return invalid("subnet %s: too small, a /30 at most is needed for a gateway and a container", c.Subnet)
	}
	if c.Subnet.Addr() != c.Subnet.Masked().Addr() {
		return invalid("subnet %s has host bits set (did you mean %s?)", c.Subnet, c.Subnet.Masked())
	}
	if !c.Gateway.IsValid() {
		c.Gateway = c.Subnet.Addr().Next()
	}
	if err := hostAddr(c.Subnet, c.Gateway); err != nil {
		return fmt.Errorf("gateway %s: %w", c.Gateway, err)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < tap.MinMTU || c.MTU > tap.MaxMTU {
		return invalid("mtu %d: must be between %d and %d", c.MTU, tap.MinMTU, tap.MaxMTU)
	}
	if c.FDBAgeing < 0 {
		return invalid("fdb ageing %s: must not be negative", c.FDBAgeing)
	}
	if c.FDBAgeing == 0 {
		c.FDBAgeing = fdb.DefaultAgeing
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	switch c.Mode {
	case "":
		c.Mode = vswitch.ModeLearning
	case vswitch.ModeLearning, vswitch.ModeHub:
	default:
		return invalid("mode %q: learning or hub", c.Mode)
	}
	if c.GatewayVLAN == 0 {
		c.GatewayVLAN = vswitch.DefaultVLAN
	}
	if err := api.ValidVLAN(int(c.GatewayVLAN)); err != nil {
		return invalid("gateway %v", err)
	}
	return nil
}

// hostAddr checks that a is a usable host address of subnet: inside it, and
// neither its network nor its broadcast address.
func hostAddr(subnet netip.Prefix, a netip.Addr) error {
	if !a.Is4() {
		return invalid("not an IPv4 address")
	}
	if !subnet.Contains(a) {
		return invalid("outside the subnet %s", subnet)
	}
	if a == subnet.Addr() {
		return invalid("the network address of %s", subnet)
	}
	if a == broadcast(subnet) {
		return invalid("the broadcast address of %s", subnet)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkRoutes refuses a subnet that overlaps a route of the current network
// namespace (the default route aside, which overlaps everything): the
// containers could not reach what that route leads to, as Docker refuses a
// bridge network that overlaps a host route.
func checkRoutes(subnet netip.Prefix) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		addr, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		dst := netip.PrefixFrom(addr, ones)
		if dst.Overlaps(subnet) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = " dev " + l.Attrs().Name
			}
			return conflict("subnet %s overlaps the route %s%s of this network namespace; choose another with --subnet", subnet, dst, dev)
		}
	}
	return nil
}

// macFor is the MAC Docker gave a container before 25.0: 02:42 (locally
// administered, unicast) followed by its IPv4 address, so that it is unique
// within the subnet and readable.
func macFor(ip netip.Addr) fdb.MAC {
	a := ip.As4()
	return fdb.MAC{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

// Close detaches every container (their TAPs disappear) and stops the switch.
func (d *Daemon) Close() error {
	var err error
	d.once.Do(func() {
		close(d.closed)
		d.closeNAT()
		err = d.sw.Close()
		d.mu.Lock()
		for _, a := range d.ports {
			a.stopWatch()
		}
		clear(d.ports)
		d.mu.Unlock()
	})
	return err
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
	d.gw.Forget(gone.ip)
	d.forgetNAT(gone.ip)
	d.log.Info("port gone: its interface or namespace was deleted", "port", gone.name, "ip", gone.ip, "err", err)
}

// nameRE is what a port name may look like (Docker's container name rule).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// Attach creates a TAP in the namespace of req, configures it and attaches it
// to the switch. On error nothing is left behind.
func (d *Daemon) Attach(req api.AttachRequest) (api.Port, error) {
	a, err := d.parseAttach(req)
	if err != nil {
		return api.Port{}, err
	}
	pubs, err := d.parsePublishes(req.Publish)
	if err != nil {
		return api.Port{}, err
	}
	// One attach at a time: addresses, names and MACs are checked and taken
	// under the same lock.
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.closed:
		return api.Port{}, errors.New("daemon is shutting down")
	default:
	}
	if err := d.reserveLocked(a, req); err != nil {
		return api.Port{}, err
	}
	if len(pubs) > 0 {
		// Published first, so that a conflict leaves nothing behind;
		// withdrawn if the TAP cannot be made.
		if err := d.addPublishes(a, pubs); err != nil {
			return api.Port{}, err
		}
		defer func() {
			if _, ok := d.ports[a.name]; !ok {
				d.removePublishesTo(a.ip)
			}
		}()
	}
	dev, err := d.createTap(a, req.PID)
	if err != nil {
		return api.Port{}, err
	}
	pc := vswitch.PortConfig{
		VLAN:       a.vlan,
		Trunk:      a.trunk,
		MAC:        a.mac,
		IPs:        []netip.Addr{a.ip},
		AllowSpoof: a.allowSpoof,
	}
	if a.id, err = d.sw.AddPortConfig(namedPort{dev, a.name}, pc); err != nil {
		// AddPortConfig has closed the TAP.
		a.stopWatch()
		if errors.Is(err, vswitch.ErrInvalidPortConfig) {
			return api.Port{}, invalid("%v", err)
		}
		return api.Port{}, err
	}
	d.ports[a.name] = a
	if a.proc != nil {
		go d.watch(a)
	}
	d.log.Info("attached", "port", a.name, "netns", a.netns, "ifname", a.ifname, "mac", a.mac, "ip", a.ip, "publish", req.Publish,
		"vlan", a.vlan, "trunk", a.trunk, "allow_spoof", a.allowSpoof, "helper", a.helper)
	p := d.describe(a, d.portInfo(a.id))
	for _, q := range pubs {
		q.Target = a.ip
		p.Publish = append(p.Publish, q.String())
	}
	return p, nil
}

// parseAttach checks the parts of req that need no state.
func (d *Daemon) parseAttach(req api.AttachRequest) (*attachment, error) {
	a := &attachment{name: req.Name, ifname: req.IfName, mtu: req.MTU, vlan: req.VLAN, allowSpoof: req.AllowSpoof}
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
	if a.ifname == "" {
		a.ifname = "eth0"
	}
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

// reserveLocked checks a against the attached ports and fills in its address
// and MAC. d.mu is held.
func (d *Daemon) reserveLocked(a *attachment, req api.AttachRequest) error {
	if _, ok := d.ports[a.name]; ok {
		return conflict("port name %q is already in use", a.name)
	}
	used := make(map[netip.Addr]string, len(d.ports))
	macs := make(map[fdb.MAC]string, len(d.ports)+1)
	macs[d.gwMAC] = "the gateway"
	for _, p := range d.ports {
		used[p.ip] = p.name
		macs[p.mac] = p.name
		if p.netns == a.netns && p.ifname == a.ifname {
			return conflict("interface %s in %s is already attached as port %s", a.ifname, a.netns, p.name)
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
	if req.MAC == "" {
		a.mac = macFor(a.ip)
	}
	if owner, ok := macs[a.mac]; ok {
		return conflict("mac %s is taken by %s", a.mac, owner)
	}
	return nil
}

// nextFree returns the lowest free host address of the subnet, from the
// second one up (Docker's 172.17.0.2 first).
func (d *Daemon) nextFree(used map[netip.Addr]string) (netip.Addr, error) {
	bcast := broadcast(d.cfg.Subnet)
	for ip := d.cfg.Subnet.Addr().Next(); ip != bcast && d.cfg.Subnet.Contains(ip); ip = ip.Next() {
		if ip == d.cfg.Gateway {
			continue
		}
		if _, ok := used[ip]; !ok {
			return ip, nil
		}
	}
	return netip.Addr{}, conflict("no free address left in %s", d.cfg.Subnet)
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
	err := d.sw.RemovePort(a.id)
	d.gw.Forget(a.ip)
	d.forgetNAT(a.ip)
	if err != nil && !errors.Is(err, vswitch.ErrNoPort) {
		return err
	}
	d.log.Info("detached", "port", name)
	return nil
}

// Ports lists the gateway and the attached containers, the gateway first,
// then by name.
func (d *Daemon) Ports() []api.Port {
	infos := map[fdb.PortID]vswitch.PortInfo{}
	for _, p := range d.sw.Ports() {
		infos[p.ID] = p
	}
	pubs := d.publishesOf()
	d.mu.Lock()
	out := make([]api.Port, 0, len(d.ports)+1)
	for _, a := range d.ports {
		p := d.describe(a, infos[a.id])
		p.Publish = pubs[a.name]
		out = append(out, p)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	gw := api.Port{
		Name:     "gateway",
		Kind:     "gateway",
		MAC:      d.gwMAC.String(),
		IP:       netip.PrefixFrom(d.cfg.Gateway, d.cfg.Subnet.Bits()).String(),
		MTU:      d.cfg.MTU,
		Offloads: infos[d.gwID].Offloads.String(),
		Stats:    apiStats(infos[d.gwID].Stats),
		VLAN:     d.cfg.GatewayVLAN,
	}
	return append([]api.Port{gw}, out...)
}

// Port describes the port called name.
func (d *Daemon) Port(name string) (api.Port, error) {
	for _, p := range d.Ports() {
		if p.Name == name {
			return p, nil
		}
	}
	return api.Port{}, notFound("no port named %q", name)
}

func (d *Daemon) describe(a *attachment, info vswitch.PortInfo) api.Port {
	return api.Port{
		Name:       a.name,
		Kind:       "tap",
		IfName:     a.ifname,
		Netns:      a.netns,
		MAC:        a.mac.String(),
		IP:         netip.PrefixFrom(a.ip, d.cfg.Subnet.Bits()).String(),
		MTU:        a.mtu,
		Offloads:   info.Offloads.String(),
		Stats:      apiStats(info.Stats),
		VLAN:       a.vlan,
		Trunk:      a.trunk,
		AllowSpoof: a.allowSpoof,
	}
}

// portInfo returns the switch's description of port id.
func (d *Daemon) portInfo(id fdb.PortID) vswitch.PortInfo {
	for _, p := range d.sw.Ports() {
		if p.ID == id {
			return p
		}
	}
	return vswitch.PortInfo{}
}

func apiStats(s vswitch.PortStats) api.PortStats {
	return api.PortStats{
		RxPackets:    s.RxPackets,
		RxBytes:      s.RxBytes,
		RxErrors:     s.RxErrors,
		RxFiltered:   s.RxFiltered,
		TxPackets:    s.TxPackets,
		TxBytes:      s.TxBytes,
		TxDropped:    s.TxDropped,
		RxSpoofed:    s.RxSpoofed,
		RxVLANErrors: s.RxVLANErrors,
		RxDenied:     s.RxDenied,
	}
}

// FDB lists the MAC table with port names.
func (d *Daemon) FDB() []api.FDBEntry {
	names := map[fdb.PortID]string{d.gwID: "gateway"}
	d.mu.Lock()
	for _, a := range d.ports {
		names[a.id] = a.name
	}
	d.mu.Unlock()
	entries := d.sw.FDB().Entries(d.sw.Now())
	out := make([]api.FDBEntry, 0, len(entries))
	for _, e := range entries {
		name, ok := names[e.Port]
		if !ok {
			name = "#" + strconv.FormatUint(uint64(e.Port), 10)
		}
		out = append(out, api.FDBEntry{
			MAC:    e.MAC.String(),
			VLAN:   e.VLAN,
			Port:   name,
			Static: e.Static,
			Age:    e.Age.Seconds(),
		})
	}
	return out
}

// Info describes the daemon.
func (d *Daemon) Info() api.Info {
	return api.Info{
		Version:     api.Version,
		PID:         os.Getpid(),
		Subnet:      d.cfg.Subnet.String(),
		Gateway:     d.cfg.Gateway.String(),
		GatewayMAC:  d.gwMAC.String(),
		MTU:         d.cfg.MTU,
		FDBAgeing:   d.cfg.FDBAgeing.Seconds(),
		FDBEntries:  d.sw.FDB().Len(),
		Uplink:      d.uplinkString(),
		Mode:        string(d.cfg.Mode),
		Isolate:     d.cfg.Isolate,
		GatewayVLAN: d.cfg.GatewayVLAN,
		StateFile:   d.cfg.StatePath,
	}
}

// mode is the switch's mode.
func (d *Daemon) mode() vswitch.Mode { return d.cfg.Mode }
