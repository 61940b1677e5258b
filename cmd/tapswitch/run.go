package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/daemon"
	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

func cmdRun(args []string, stdout io.Writer) error {
	fs := newFlags("run")
	subnet := fs.String("subnet", daemon.DefaultSubnet.String(), "the containers' IPv4 subnet")
	gateway := fs.String("gateway", "", "the gateway's address (default: the subnet's first address)")
	mtu := fs.Int("mtu", 0, "MTU of the gateway and, unless attach says otherwise, of container interfaces (default 1500, or the underlay's less 50 with --vxlan)")
	ageing := fs.Duration("fdb-ageing", fdb.DefaultAgeing, "how long a learned MAC is kept without traffic")
	fdbMax := fs.Int("fdb-max", fdb.DefaultMaxEntries, "the most MACs the table holds; when full, a new one evicts the oldest of the port holding the most (as Open vSwitch)")
	control := controlFlag(fs)
	metrics := fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (HOST:PORT, or PORT for 127.0.0.1:PORT); off by default")
	helper := fs.Bool("attach-helper", false, "create every container's TAP from a helper inside its namespaces, as without root (the default when the daemon has no CAP_NET_ADMIN)")
	mode := fs.String("mode", string(vswitch.ModeLearning), "the switch's pipeline: learning (MAC learning, VLANs, ACL) or hub (every frame to every port)")
	icc := fs.Bool("icc", true, "inter-container communication; --icc=false lets containers reach only the gateway (and what allow rules permit)")
	gwVLAN := fs.Int("gateway-vlan", vswitch.DefaultVLAN, "the VLAN the gateway is on")
	var v6 ipv6Flags
	v6.add(fs)
	statePath := fs.String("state", "", "the state file, where ACL rules are kept (default: beside the control socket, its .sock replaced by .state.json)")
	liveRestore := fs.Bool("live-restore", false, "keep the containers' TAPs when the daemon stops, crashes or is upgraded, and adopt them again on start; tapswitch shutdown removes them")
	var nf natFlags
	nf.add(fs)
	var vf vxlanFlags
	vf.add(fs)
	var df dnsFlags
	df.add(fs)
	procs := procsFlag(fs)
	err := parseNone(fs, args)
	if err != nil {
		return err
	}
	if *procs < 0 {
		return usagef("--procs %d: must be at least 1 (0: the default)", *procs)
	}
	nprocs := setProcs(*procs)
	cfg := daemon.Config{MTU: *mtu, FDBAgeing: *ageing, FDBMax: *fdbMax, AttachHelper: *helper}
	if cfg.Subnet, err = netip.ParsePrefix(*subnet); err != nil {
		return usagef("--subnet %q: not a CIDR prefix such as 10.90.0.0/16", *subnet)
	}
	if *gateway != "" {
		if cfg.Gateway, err = netip.ParseAddr(*gateway); err != nil {
			return usagef("--gateway %q: not an IP address", *gateway)
		}
	}
	if *metrics != "" {
		if _, err := daemon.MetricsAddr(*metrics); err != nil {
			return usagef("--metrics: %v", err)
		}
	}
	if *fdbMax < 1 {
		return usagef("--fdb-max %d: must be at least 1", *fdbMax)
	}
	if *ageing <= 0 {
		return usagef("--fdb-ageing %s: must be positive", *ageing)
	}
	cfg.Mode = vswitch.Mode(*mode)
	cfg.Isolate = !*icc
	// Config reads a zero VLAN as the default, and a uint16 cannot hold
	// every int: check the flag's value itself.
	if err := api.ValidVLAN(*gwVLAN); err != nil {
		return usagef("--gateway-vlan: %v", err)
	}
	cfg.GatewayVLAN = uint16(*gwVLAN)
	if err := nf.apply(&cfg); err != nil {
		return err
	}
	if err := v6.apply(&cfg); err != nil {
		return err
	}
	if err := vf.apply(&cfg); err != nil {
		return err
	}
	if err := df.apply(&cfg); err != nil {
		return err
	}
	// The rest (subnet, gateway, mtu, mode, ip range) is the daemon's to
	// check, once.
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	path := *control
	if path == "" {
		path = api.DefaultSocket()
	}
	cfg.LiveRestore = *liveRestore
	cfg.StatePath = *statePath
	if cfg.StatePath == "" {
		cfg.StatePath = daemon.StatePath(path)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Log = log
	d, err := daemon.New(cfg)
	if err != nil {
		return err
	}
	ln, err := daemon.Listen(path)
	if err != nil {
		d.Close()
		return err
	}
	// Only now, holding the control socket: no other daemon has the TAPs.
	restored, gone, err := d.Restore()
	if err != nil {
		ln.Close()
		d.Close()
		return err
	}
	if len(restored)+len(gone) > 0 {
		log.Info("ports of the previous daemon", "live_restore", *liveRestore, "restored_or_removed", restored, "gone", gone)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *metrics != "" {
		addr, err := d.ServeMetrics(ctx, *metrics)
		if err != nil {
			ln.Close()
			d.Close()
			return err
		}
		log.Info("metrics", "url", "http://"+addr.String()+"/metrics")
	}
	stopProfile, err := startProfile()
	if err != nil {
		ln.Close()
		d.Close()
		return err
	}
	defer stopProfile()
	info := d.Info()
	log.Info("tapswitch running", "version", api.Version, "control", path, "subnet", info.Subnet, "gateway", info.Gateway, "uplink", info.Uplink,
		"mode", info.Mode, "icc", !info.Isolate, "gateway_vlan", info.GatewayVLAN, "state", info.StateFile, "pid", info.PID, "procs", nprocs)
	go watchdog(ctx, log, shutdownGrace)
	settleMemory()
	if err := notifyReady(); err != nil {
		log.Warn("systemd readiness", "err", err)
	}
	if err := d.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if d.KeptPorts() {
		log.Info("tapswitch stopped: the TAPs stay for the next daemon (--live-restore; tapswitch shutdown removes them)")
	} else {
		log.Info("tapswitch stopped: every TAP it created is removed")
	}
	return nil
}

// settleMemory runs the daemon's first garbage collection now, before it
// serves, and returns what start-up left to the system: RSS once ready is
// then what the daemon holds idle, not a figure that jumps at the first
// collection. That first collection scans the data and BSS segments, and
// faults in about 5.5 MB of them for good (measured: RssAnon 1.3 -> 7.0 MB
// over one runtime.GC in a test binary that imports only
// gopacket/layers), mostly the [65536]EnumMetadata tables of
// gopacket/layers (EthernetTypeMetadata, PPPTypeMetadata), which pcapgo
// brings in for captures. Without this, a flood of any kind (the first
// time the heap reaches 4 MB) looked like 5 MB that never came back.
func settleMemory() { debug.FreeOSMemory() }

// shutdownGrace is how long the daemon may take to stop after SIGTERM or
// SIGINT before the watchdog ends it. A var only for the test build
// (testhooks.go); nothing else changes it.
var shutdownGrace = 10 * time.Second

// watchdog ends the process grace after ctx is done if it is still running
// then: whatever is stuck (a request, a namespace, the kernel), a SIGTERM
// must stop the daemon. It logs the goroutines that were stuck first, so
// that the cause can be found.
func watchdog(ctx context.Context, log *slog.Logger, grace time.Duration) {
	<-ctx.Done()
	time.Sleep(grace)
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	said := make(chan struct{})
	go func() {
		log.Error("shutdown stuck; exiting anyway", "after", grace, "goroutines", runtime.NumGoroutine())
		os.Stderr.Write(buf)
		close(said)
	}()
	// Stderr may be stuck too (a pipe nobody reads): exit all the same.
	select {
	case <-said:
	case <-time.After(time.Second):
	}
	os.Exit(1)
}
