package vswitch

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/wire"
)

// ErrNoPort is returned when a port ID names no port of the switch.
var ErrNoPort = errors.New("no such port")

// Config configures a Switch. The zero value is usable.
type Config struct {
	// FDB configures the MAC table (ageing and limits).
	FDB fdb.Config

	// Clock returns nanoseconds on a monotonic clock; it is read once per
	// frame and by the ageing loop. Nil means the process's monotonic clock,
	// read every 100 ms rather than per frame (see Switch.coarse). Tests set
	// it to control ageing.
	Clock func() int64

	// PortGone, if set, is called (on the port's ingress goroutine) after a
	// port whose Read failed has been removed from the switch: for a TAP,
	// the device or its namespace was deleted. It is not called for ports
	// removed with RemovePort or Close.
	PortGone func(id fdb.PortID, name string, err error)

	// Mode selects the pipeline: ModeLearning (also "") or ModeHub.
	Mode Mode

	// Stages, if not nil, is the pipeline to use instead of the Mode's
	// (LearningStages or HubStages); SetPipeline changes it later.
	Stages []PipelineStage

	// Isolate is Docker's icc=false: a port without PortConfig.Gateway
	// reaches only Gateway ports (and they reach it), unless an allow Rule
	// matches the pair; its broadcasts go to Gateway ports only.
	Isolate bool
}

// Switch is an Ethernet switch whose forwarding is a pipeline of stages
// (a learning switch by default, a hub in ModeHub). All methods are safe
// for concurrent use.
type Switch struct {
	cfg   Config
	clock func() int64
	fdb   *fdb.Table

	// coarse is the default clock: the monotonic time, refreshed every
	// coarseTick by the ageing loop, so that a frame pays an atomic load
	// instead of a clock_gettime (time.Since). FDB ages are counted in
	// seconds; 100 ms of lag changes nothing (the Linux bridge uses
	// jiffies), and the daemon wakes only 10 times a second for it when idle.
	coarse atomic.Int64
	tick   func() int64 // the precise clock behind coarse; nil with Config.Clock

	// ports is the snapshot the datapath reads (ports, VLAN members,
	// compiled rules, pipeline), replaced whole on any change by
	// publishLocked.
	ports atomic.Pointer[portTable]

	mu sync.Mutex // guards nextID, list, rules, pipe and publishing
	// nextID is the ID the next port gets. IDs are never reused, so a
	// lookup that raced with a removal can never reach a newer port.
	nextID fdb.PortID
	// list is the switch's ports in ID order.
	list []*port
	// rules is the rule set last given to SetRules.
	rules *ruleSet
	// pipe is the pipeline in use.
	pipe *pipeline

	bufs sync.Pool // *[BufSize]byte, one held by each ingress loop

	stop   chan struct{} // closed by Close
	closed atomic.Bool
	wg     sync.WaitGroup // the ageing loop
}

// portTable is an immutable snapshot of everything the datapath reads:
// the ports, where each is in the list (its position, which port sets
// use), the members of each VLAN, the compiled rules and the pipeline.
type portTable struct {
	byID map[fdb.PortID]*port
	list []*port // in ID order; the flood list
	pos  map[fdb.PortID]int

	// members are the ports carrying each VLAN (access, native or
	// trunk), indexed by VLAN ID up to the highest in use: a slice, not
	// a map, because every frame looks its VLAN up (a map[uint16] hash
	// was a quarter of a frame's cost).
	members  []bitset
	all      bitset         // every port (hub mode)
	gateways bitset         // Gateway ports
	routers  bitset         // Gateway, AllowRA and unsecured ports (tunnels, routers): where IPv6 router-only multicast goes
	isolate  bool           // Config.Isolate
	acl      *compiledRules // nil: no rule can match
	pipe     *pipeline
	// macs are the ports attached with a MAC (PortConfig.MAC), by MAC.
	macs map[fdb.MAC]fdb.PortID
	// local are the addresses of the ports attached with a MAC and IPs,
	// by VLAN and address; suppress the ports with neighbour suppression
	// on, by VLAN (suppress.go).
	local    map[neighKey]localNeigh
	suppress [][]NeighSuppressor
}

// placement is a port's view of a snapshot: the table and the port's
// position in it, loaded with one atomic load per frame.
type placement struct {
	t   *portTable
	pos int
}

// port is the switch's state for one Port.
type port struct {
	id       fdb.PortID
	p        Port
	cfg      PortConfig  // fixed at AddPortConfig
	ip4      [][4]byte   // cfg.IPs, IPv4
	ip6      [][16]byte  // cfg.IPs, IPv6
	ll6      [16]byte    // the link-local address of cfg.MAC (EUI-64)
	trunk    *[64]uint64 // cfg.Trunk as a bit per VLAN; nil for an access port
	offloads Offloads    // what p accepts on Write (Offloader), fixed at AddPort
	answerer Answerer    // p if it is one, fixed at AddPort
	// suppressor is p if it is a NeighSuppressor with suppression on,
	// fixed at AddPort.
	suppressor NeighSuppressor
	stats      counters
	done       chan struct{} // closed when the ingress loop has returned

	// where is the snapshot the port's ingress loop uses; nil once the
	// port is detached.
	where atomic.Pointer[placement]
	// frame is the parsed view the ingress loop reuses for every frame.
	frame Frame

	// seg is the buffer software GSO writes segments of frames read
	// from this port into; taken from the pool the first time one is
	// needed, used only by the port's ingress goroutine (offload.go).
	seg *[BufSize]byte
	// ans is where the ingress goroutine takes the answers of Answerer
	// ports, taken the first time one is needed (answer.go).
	ans *answerState
	// capture is the port's capture point: frames it receives (In) and
	// is sent (Out), fed by forward and transmit.
	capture capture.Point
}

// publishLocked builds a snapshot from the switch's ports, rules and
// pipeline, and makes the datapath use it: one atomic store for the table,
// then one per port for its placement. s.mu is held.
func (s *Switch) publishLocked() {
	n := len(s.list)
	t := &portTable{
		byID:     make(map[fdb.PortID]*port, n),
		list:     slices.Clone(s.list),
		pos:      make(map[fdb.PortID]int, n),
		all:      newBitset(n),
		gateways: newBitset(n),
		routers:  newBitset(n),
		isolate:  s.cfg.Isolate,
		pipe:     s.pipe,
	}
	member := func(vlan uint16, i int) {
		if int(vlan) >= len(t.members) {
			t.members = append(t.members, make([]bitset, int(vlan)+1-len(t.members))...)
		}
		m := t.members[vlan]
		if m == nil {
			m = newBitset(n)
			t.members[vlan] = m
		}
		m.set(i)
	}
	for i, pt := range t.list {
		t.byID[pt.id] = pt
		t.pos[pt.id] = i
		t.all.set(i)
		if pt.cfg.Gateway {
			t.gateways.set(i)
		}
		if pt.cfg.Gateway || pt.cfg.AllowRA || !pt.cfg.secure() {
			t.routers.set(i)
		}
		if !pt.cfg.MAC.IsZero() {
			if t.macs == nil {
				t.macs = map[fdb.MAC]fdb.PortID{}
			}
			t.macs[pt.cfg.MAC] = pt.id
		}
		member(pt.cfg.VLAN, i)
		for _, v := range pt.cfg.Trunk {
			member(v, i)
		}
		t.addLocalNeigh(pt)
		if pt.suppressor != nil {
			t.addSuppressor(pt)
		}
	}
	t.acl = compileRules(s.rules, t.list)
	s.ports.Store(t)
	for i, pt := range t.list {
		pt.where.Store(&placement{t: t, pos: i})
	}
}

// New returns a switch with no ports, and starts its FDB ageing loop, which
// Close stops.
func New(cfg Config) (*Switch, error) {
	if !cfg.Mode.valid() {
		return nil, fmt.Errorf("unknown mode %q (want %s or %s)", cfg.Mode, ModeLearning, ModeHub)
	}
	table, err := fdb.New(cfg.FDB)
	if err != nil {
		return nil, fmt.Errorf("fdb: %w", err)
	}
	s := &Switch{
		cfg:    cfg,
		clock:  cfg.Clock,
		fdb:    table,
		nextID: 1,
		rules:  &ruleSet{},
		stop:   make(chan struct{}),
	}
	if s.clock == nil {
		epoch := time.Now()
		s.tick = func() int64 { return int64(time.Since(epoch)) }
		s.coarse.Store(s.tick())
		s.clock = s.coarse.Load
	}
	s.bufs.New = func() any { return new([BufSize]byte) }
	stages := cfg.Stages
	if stages == nil {
		stages = LearningStages()
		if cfg.Mode == ModeHub {
			stages = HubStages()
		}
	}
	if s.pipe, err = newPipeline(stages); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.publishLocked()
	s.mu.Unlock()
	ageing := cfg.FDB.Ageing
	if ageing == 0 {
		ageing = fdb.DefaultAgeing
	}
	s.wg.Add(1)
	go s.ageLoop(ageing)
	return s, nil
}

// ageLoop removes aged FDB entries. The datapath already treats an aged
// entry as a miss, so this only bounds memory; a tenth of the ageing time,
// between 100 ms and 1 s, keeps the table close to what it reports.
func (s *Switch) ageLoop(ageing time.Duration) {
	defer s.wg.Done()
	every := min(max(ageing/10, 100*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var tick <-chan time.Time
	if s.tick != nil {
		c := time.NewTicker(coarseTick)
		defer c.Stop()
		tick = c.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-tick:
			s.coarse.Store(s.tick())
		case <-t.C:
			s.fdb.Expire(s.clock())
		}
	}
}

// coarseTick is how often the default clock is refreshed.
const coarseTick = 100 * time.Millisecond

// FDB returns the switch's MAC table, for listings and static entries.
func (s *Switch) FDB() *fdb.Table { return s.fdb }

// PortOfMAC returns the port attached with mac as its PortConfig.MAC, if
// any: a port whose MAC is known before it sends anything. It takes no lock
// and allocates nothing, so a port may call it for every frame.
func (s *Switch) PortOfMAC(mac fdb.MAC) (fdb.PortID, bool) {
	id, ok := s.ports.Load().macs[mac]
	return id, ok
}

// Now returns the switch's clock, the one FDB ages are measured against.
func (s *Switch) Now() int64 { return s.clock() }

// AddPort attaches p as an access port of DefaultVLAN without port
// security: AddPortConfig(p, PortConfig{}).
func (s *Switch) AddPort(p Port) (fdb.PortID, error) {
	return s.AddPortConfig(p, PortConfig{})
}

// AddPortConfig attaches p with the configuration pc and starts reading
// from it. The switch owns p from now on, also when it returns an error:
// it closes p when the port is removed, when the switch is closed, or at
// once if the port cannot be added (the switch is closed, or pc is invalid:
// an error wrapping ErrInvalidPortConfig).
func (s *Switch) AddPortConfig(p Port, pc PortConfig) (fdb.PortID, error) {
	pc, err := pc.normalize()
	if err != nil {
		p.Close()
		return fdb.NoPort, fmt.Errorf("add port %s: %w", p.Name(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		p.Close()
		return fdb.NoPort, fmt.Errorf("add port %s: switch closed", p.Name())
	}
	np := &port{id: s.nextID, p: p, cfg: pc, offloads: offloadsOf(p), answerer: answererOf(p), suppressor: suppressorOf(p), done: make(chan struct{})}
	for _, ip := range pc.IPs {
		if ip.Is4() {
			np.ip4 = append(np.ip4, ip.As4())
		} else {
			np.ip6 = append(np.ip6, ip.As16())
		}
	}
	np.ll6 = wire.LinkLocal(pc.MAC)
	if pc.Trunk != nil {
		np.trunk = new([64]uint64)
		for _, v := range pc.Trunk {
			np.trunk[v>>6] |= 1 << (v & 63)
		}
	}
	s.nextID++
	s.list = append(s.list, np)
	s.publishLocked()
	go s.ingress(np)
	return np.id, nil
}

// detach takes pt out of the port table. It reports false if pt was not in
// it (already removed).
func (s *Switch) detach(pt *port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.list, pt)
	if i < 0 {
		return false
	}
	s.list = slices.Delete(slices.Clone(s.list), i, i+1)
	s.publishLocked()
	pt.where.Store(nil)
	return true
}

// RemovePort detaches the port, closes it, waits for its ingress loop to end
// and forgets the MACs learned on it. Frames already being forwarded to it
// are dropped and counted.
func (s *Switch) RemovePort(id fdb.PortID) error {
	pt := s.ports.Load().byID[id]
	if pt == nil || !s.detach(pt) {
		return fmt.Errorf("remove port %d: %w", id, ErrNoPort)
	}
	err := pt.p.Close()
	<-pt.done
	// Only now: the ingress loop can no longer learn a MAC for this port.
	s.fdb.FlushPort(id)
	if err != nil {
		return fmt.Errorf("close port %s: %w", pt.p.Name(), err)
	}
	return nil
}

// Close removes every port and stops the switch. It returns the first error
// from closing a port.
func (s *Switch) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	var first error
	for _, pt := range s.ports.Load().list {
		if err := s.RemovePort(pt.id); err != nil && first == nil && !errors.Is(err, ErrNoPort) {
			first = err
		}
	}
	close(s.stop)
	s.wg.Wait()
	return first
}

// PortInfo describes a port of the switch.
type PortInfo struct {
	ID   fdb.PortID
	Name string
	// Config is the port's configuration, VLAN 0 replaced by DefaultVLAN.
	// Its slices are shared: do not modify them.
	Config PortConfig
	// Offloads is what the port accepts on Write (see Offloader).
	Offloads Offloads
	Stats    PortStats
}

// Ports lists the switch's ports in ID order.
func (s *Switch) Ports() []PortInfo {
	list := s.ports.Load().list
	out := make([]PortInfo, len(list))
	for i, pt := range list {
		out[i] = PortInfo{ID: pt.id, Name: pt.p.Name(), Config: pt.cfg, Offloads: pt.offloads, Stats: pt.stats.snapshot()}
	}
	return out
}

// Stats returns the counters of one port.
func (s *Switch) Stats(id fdb.PortID) (PortStats, error) {
	pt := s.ports.Load().byID[id]
	if pt == nil {
		return PortStats{}, fmt.Errorf("port %d: %w", id, ErrNoPort)
	}
	return pt.stats.snapshot(), nil
}
