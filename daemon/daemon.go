package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/dns"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/gateway"
	"github.com/tapswitch/tapswitch/internal/nshelper"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
)

// DefaultSubnet is the subnet used when none is given: neither Docker
// (172.17.0.0/16 and its pools in 172.16.0.0/12 and 192.168.0.0/16) nor
// podman (10.88.0.0/16) use it by default.
var DefaultSubnet = netip.MustParsePrefix("10.90.0.0/16")

// DefaultMTU is the MTU of the gateway and of attached interfaces unless
// told otherwise.
const DefaultMTU = 1500

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
	// stop is closed by Shutdown, which ends Serve; removeAll is set
	// then: Close removes persistent TAPs too.
	stop      chan struct{}
	stopOnce  sync.Once
	removeAll atomic.Bool
	nat       *natState // nil without an uplink; see nat.go
	// privileged is whether the daemon has CAP_NET_ADMIN and CAP_SYS_ADMIN
	// in its user namespace: it then creates TAPs itself (attach.go).
	privileged bool

	mu sync.Mutex // guards ports and the address and MAC sets derived from it
	// ports are the attached containers by port name.
	ports map[string]*attachment
	// pending are the attachments being made, reserved by name: their
	// names, addresses and MACs are taken (attach.go).
	pending map[string]*attachment

	obs observe // captures, capture points that are not ports (capture.go)

	rules rulesState // ACL rules and the state file (rules.go)
	// subnet6State is the Subnet6 the state file keeps: the random one
	// chosen, or that read back (ipv6.go).
	subnet6State string

	vx  tunnels      // VXLAN tunnels (vxlan.go)
	gso gsoCaps      // the TAPs' gso_max_segs as the tunnels want it (gsocap.go)
	dns *dns.Server  // nil when the DNS server is off (dns.go)
	ctl controlStats // the control socket's connections (limits.go)

	local localDialers // dial helpers for published ports' loopback clients (splice.go)
}

// attachment is a container's TAP attached to the switch.
type attachment struct {
	// req is the attach request as given, kept whole in the state file
	// with --live-restore (restore.go).
	req api.AttachRequest
	// dev is the TAP once attached.
	dev    *tap.Device
	name   string
	ifname string
	netns  string
	// nsIno is the inode number of the namespace (nsfs), the same for
	// every path to it.
	nsIno uint64
	mac   fdb.MAC
	ip    netip.Addr
	ip6   netip.Addr // zero without Config.IPv6
	mtu   int
	id    fdb.PortID
	// proc is the attached process when the TAP was made by the helper:
	// such a TAP keeps its namespace alive, so the port is removed when
	// the process exits instead (attach.go). nil otherwise.
	proc *nshelper.Process
	// helper is whether the TAP was made by the namespace helper.
	helper bool
	// gsoSegs is the gso_max_segs the TAP is known to have (0: not
	// known); gsoWarned whether a failure to set
	// it was logged. Guarded by d.gso.mu once attached (gsocap.go).
	gsoSegs   int
	gsoWarned bool
	// vlan is the access VLAN, or the trunk's native one; trunk the VLANs
	// carried tagged.
	vlan       uint16
	trunk      []uint16
	allowSpoof bool
	allowRA    bool // RA guard off (PortConfig.AllowRA)
	// aliases are the port's DNS names besides its name (dns.go);
	// resolvConf the resolv.conf written for its namespace, and
	// madeEtcDir whether its directory was made for it.
	aliases    []string
	resolvConf string
	madeEtcDir bool
	// owner is the CNI container and network, if attached through CNI.
	owner owner
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
	if cfg.MTU == 0 && len(cfg.VXLAN) > 0 {
		// Containers' packets must cross the overlay whole.
		if cfg.MTU, err = vxlanMTU(cfg.VXLAN[0]); err != nil {
			return nil, err
		}
	}
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
		pending:    map[string]*attachment{},
		closed:     make(chan struct{}),
		stop:       make(chan struct{}),
		privileged: privileged(),
	}
	sw, err := vswitch.New(vswitch.Config{
		FDB:      fdb.Config{Ageing: cfg.FDBAgeing, MaxEntries: cfg.FDBMax},
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
			if d.dns != nil {
				d.dns.Close()
			}
		}
	}()
	d.gwMAC = macFor(cfg.Gateway)
	gcfg := gateway.Config{
		MAC:  net.HardwareAddr(d.gwMAC[:]),
		Addr: netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits()),
		MTU:  cfg.MTU,
	}
	if err := d.setup6(&gcfg); err != nil {
		return nil, err
	}
	if d.nat, err = d.openUplink(); err != nil {
		return nil, err
	}
	if d.nat != nil {
		gcfg.NAT, gcfg.Uplink, gcfg.Clock = d.nat.table, d.nat.up, sw.Now
		gcfg.QueueLen = 1024 // room for bursts from the uplink
		if lo, ok := d.nat.up.(uplink.Loopbacker); ok {
			gcfg.HostLoopback = lo.HostLoopback()
		}
	}
	if err := d.openDNS(&gcfg); err != nil {
		return nil, err
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	d.gw = gw
	if err := d.startDNS(); err != nil {
		return nil, err
	}
	// The gateway routes, so it sends from any IP; its MAC is still checked.
	// Its own addresses are given so that, with ARP and ND suppression
	// on a VXLAN tunnel, a request for them goes to it alone (never
	// across the overlay). AddPortConfig closes the gateway if it fails.
	if d.gwID, err = sw.AddPortConfig(gw, vswitch.PortConfig{VLAN: cfg.GatewayVLAN, MAC: d.gwMAC, Gateway: true, IPs: gatewayIPs(gw, d.gwMAC)}); err != nil {
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
	if d.nat != nil {
		if r, ok := d.nat.up.(uplink.GSOReceiver); ok {
			// TCP super-segments from the uplink to the containers.
			r.SetGSOHandler(gw.FromUplinkGSOSlices)
		}
	}
	d.setLocalSplice()
	for _, spec := range cfg.VXLAN {
		if _, err := d.AddVXLAN(spec); err != nil {
			return nil, err
		}
	}
	d.startNAT()
	return d, nil
}

// Shutdown asks Serve to stop, and Close to remove every port, persistent
// ones (LiveRestore) included.
func (d *Daemon) Shutdown() {
	d.removeAll.Store(true)
	d.stopOnce.Do(func() { close(d.stop) })
}

// Close stops the switch. Every container is detached (its TAP disappears),
// except with LiveRestore, where the TAPs stay, persistent, for the next
// daemon to adopt, unless Shutdown was called.
func (d *Daemon) Close() error {
	var err error
	d.once.Do(func() {
		keep := d.cfg.LiveRestore && !d.removeAll.Load()
		close(d.closed)
		if d.cfg.LiveRestore && !keep {
			d.mu.Lock()
			for _, a := range d.ports {
				a.unpersist()
			}
			d.mu.Unlock()
			if d.nat != nil {
				if p, ok := d.nat.up.(uplink.Persister); ok {
					p.SetPersist(false)
				}
			}
			d.rules.mu.Lock()
			if err := d.writeStateLocked(d.rules.rules, d.rules.next); err != nil {
				d.log.Error("state file: the ports removed are still listed", "err", err)
			}
			d.rules.mu.Unlock()
		}
		d.closeNAT()
		d.local.closeAll()
		err = d.sw.Close()
		d.mu.Lock()
		gone := make([]*attachment, 0, len(d.ports))
		for _, a := range d.ports {
			a.stopWatch()
			gone = append(gone, a)
		}
		clear(d.ports)
		d.mu.Unlock()
		d.closeDNS(gone)
	})
	return err
}
