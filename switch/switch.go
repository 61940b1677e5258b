package vswitch

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/fdb"
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

	// Isolate is Docker's icc=false: a port without PortConfig.Gateway
	// reaches only Gateway ports (and they reach it), unless an allow Rule
	// matches the pair; its broadcasts go to Gateway ports only.
	Isolate bool
}

// Switch is a learning Ethernet switch. All methods are safe for concurrent
// use.
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

	// ports is the port table the datapath reads, replaced whole on change.
	ports atomic.Pointer[portTable]

	mu sync.Mutex // guards nextID, rules and changes to ports
	// nextID is the ID the next port gets. IDs are never reused, so a
	// lookup that raced with a removal can never reach a newer port.
	nextID fdb.PortID
	// rules is the rule set last given to SetRules.
	rules *ruleSet

	bufs sync.Pool // *[BufSize]byte, one held by each ingress loop

	stop   chan struct{} // closed by Close
	closed atomic.Bool
	wg     sync.WaitGroup // the ageing loop
}

// portTable is an immutable snapshot of the switch's ports.
type portTable struct {
	byID map[fdb.PortID]*port
	list []*port // in ID order; the flood list
}

// port is the switch's state for one Port.
type port struct {
	id       fdb.PortID
	p        Port
	cfg      PortConfig // fixed at AddPortConfig
	offloads Offloads   // what p accepts on Write (Offloader), fixed at AddPort
	stats    counters
	done     chan struct{} // closed when the ingress loop has returned

	// seg is the buffer software GSO writes segments of frames read
	// from this port into; taken from the pool the first time one is
	// needed, used only by the port's ingress goroutine (offload.go).
	seg *[BufSize]byte
	// capture is the port's capture point: frames it receives (In) and
	// is sent (Out), fed by forward and transmit.
	capture capture.Point
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
	s.ports.Store(&portTable{byID: map[fdb.PortID]*port{}})
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
	np := &port{id: s.nextID, p: p, cfg: pc, offloads: offloadsOf(p), done: make(chan struct{})}
	s.nextID++
	old := s.ports.Load()
	t := &portTable{byID: make(map[fdb.PortID]*port, len(old.byID)+1), list: make([]*port, 0, len(old.list)+1)}
	for id, q := range old.byID {
		t.byID[id] = q
	}
	t.byID[np.id] = np
	t.list = append(append(t.list, old.list...), np)
	s.ports.Store(t)
	go s.ingress(np)
	return np.id, nil
}

// detach takes pt out of the port table. It reports false if pt was not in
// it (already removed).
func (s *Switch) detach(pt *port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.ports.Load()
	if old.byID[pt.id] != pt {
		return false
	}
	t := &portTable{byID: make(map[fdb.PortID]*port, len(old.byID)), list: make([]*port, 0, len(old.list))}
	for id, q := range old.byID {
		if q != pt {
			t.byID[id] = q
		}
	}
	for _, q := range old.list {
		if q != pt {
			t.list = append(t.list, q)
		}
	}
	s.ports.Store(t)
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
