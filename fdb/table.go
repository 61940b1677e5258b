package fdb

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// PortID identifies a switch port. Ports are numbered from 1; [NoPort] (0)
// means "no port".
type PortID uint32

// NoPort is the zero PortID: no port. Lookup returns it on a miss.
const NoPort PortID = 0

// Key is what the table is indexed by: a MAC address within a VLAN, as the
// Linux bridge keys its fdb by (addr, vid); untagged frames are in their
// port's VLAN, 1 by default. Key is comparable and 8 bytes long.
type Key struct {
	MAC  MAC
	VLAN uint16
}

// String returns "02:42:ac:11:00:02 vlan 5".
func (k Key) String() string {
	return k.MAC.String() + " vlan " + strconv.Itoa(int(k.VLAN))
}

// pack folds k into the uint64 the table's map is keyed by, which Go hashes
// faster than an 8-byte struct.
func (k Key) pack() uint64 {
	m := k.MAC
	return uint64(m[0])<<56 | uint64(m[1])<<48 | uint64(m[2])<<40 |
		uint64(m[3])<<32 | uint64(m[4])<<24 | uint64(m[5])<<16 | uint64(k.VLAN)
}

func unpack(u uint64) Key {
	return Key{
		MAC:  MAC{byte(u >> 56), byte(u >> 48), byte(u >> 40), byte(u >> 32), byte(u >> 24), byte(u >> 16)},
		VLAN: uint16(u),
	}
}

// Defaults used for the zero fields of a [Config].
const (
	// DefaultAgeing is the Linux bridge's default ageing_time
	// (BR_DEFAULT_AGEING_TIME, 300 s).
	DefaultAgeing = 300 * time.Second
	// DefaultMaxEntries bounds the whole table.
	DefaultMaxEntries = 65536
	// DefaultMaxPerPort bounds the dynamic entries of one port.
	DefaultMaxPerPort = 8192
)

// Config sets the behaviour of a [Table]. The zero Config is valid and
// means all the defaults.
type Config struct {
	// Ageing is how long a dynamic entry lives after the last frame from
	// its MAC; 0 means DefaultAgeing. Unlike the Linux bridge, where an
	// ageing_time of 0 disables learning, there is no such mode here.
	Ageing time.Duration
	// MaxEntries bounds all entries, static and dynamic; 0 means
	// DefaultMaxEntries.
	MaxEntries int
	// MaxPerPort bounds the dynamic entries of each port; 0 means
	// DefaultMaxPerPort. Static entries do not count against it.
	MaxPerPort int
}

// ErrInvalidConfig is returned (wrapped, naming the field) by [New] when a
// Config field is negative.
var ErrInvalidConfig = errors.New("invalid fdb config")

// ErrNotUnicast is returned by [Table.AddStatic] when the MAC is a multicast,
// broadcast or all-zero address, which a station cannot own.
var ErrNotUnicast = errors.New("not a unicast MAC address")

// ErrNoPort is returned by [Table.AddStatic] when the port is [NoPort].
var ErrNoPort = errors.New("no port given")

// ErrFull is returned by [Table.AddStatic] when the table already holds
// MaxEntries entries; delete or flush entries first.
var ErrFull = errors.New("fdb full")

// LearnResult says what [Table.Learn] did with a source address.
type LearnResult uint8

// The results of [Table.Learn]. Only Learned and Moved change the table
// (and take its write lock); the others leave it as it was, apart from the
// last-seen time of a Refreshed entry.
const (
	// Refreshed: the MAC is known on the same port (or is a static entry
	// of that port); its last-seen time was updated atomically under the
	// read lock.
	Refreshed LearnResult = iota
	// Learned: a new dynamic entry was added. A MAC whose entry had
	// already aged (but was not yet removed by Expire) is also Learned:
	// the old entry is counted as aged and replaced.
	Learned
	// Moved: the MAC was known on another port and now points to this one
	// (a station moved, or a loop).
	Moved
	// Ignored: the source is multicast (broadcast included) or all-zero,
	// or the port is NoPort; such sources are never learned.
	Ignored
	// LimitPort: not learned (or not moved) because the port already has
	// MaxPerPort dynamic entries.
	LimitPort
	// LimitTotal: not learned because the table already has MaxEntries
	// entries, all static (dynamic ones are evicted instead).
	LimitTotal
	// StaticConflict: a static entry holds the MAC on another port; it is
	// not moved.
	StaticConflict
)

var learnResultNames = [...]string{
	Refreshed:      "refreshed",
	Learned:        "learned",
	Moved:          "moved",
	Ignored:        "ignored",
	LimitPort:      "limit-port",
	LimitTotal:     "limit-total",
	StaticConflict: "static-conflict",
}

// String returns a short lower-case name such as "limit-port".
func (r LearnResult) String() string {
	if int(r) < len(learnResultNames) {
		return learnResultNames[r]
	}
	return "LearnResult(" + strconv.Itoa(int(r)) + ")"
}

// Entry is one row of the table as returned by [Table.Entries].
type Entry struct {
	Key
	Port   PortID
	Static bool
	// Age is the time since a frame from the MAC was last seen (with the
	// refresh granularity described at Table.Learn); 0 for static entries.
	Age time.Duration
}

// String returns "02:42:ac:11:00:02 vlan 5 port 3 age 1.5s", with "static"
// in place of the age for a static entry.
func (e Entry) String() string {
	s := e.Key.String() + " port " + strconv.FormatUint(uint64(e.Port), 10)
	if e.Static {
		return s + " static"
	}
	return s + " age " + e.Age.String()
}

// entry is the value of the table's map. It is reached through a pointer so
// that its last-seen time can be updated in place under the read lock.
type entry struct {
	// lastSeen is the caller's now at the last frame from the MAC; it only
	// grows, and is written with atomics under either side of Table.mu.
	lastSeen atomic.Int64
	port     PortID // guarded by Table.mu
	static   bool   // guarded by Table.mu
	// ik is the entry's key (Key.pack); prev and next link the dynamic
	// entries of a port in the order they came to it (evict.go). All
	// guarded by Table.mu.
	ik         uint64
	prev, next *entry
}

// touch raises e.lastSeen to now, unless that would move it by less than
// gran. Like the Linux bridge, which stores fdb->updated only when jiffies
// changed, this keeps frames from one station from writing the entry's cache
// line on every frame while other cores read it.
func (e *entry) touch(now, gran int64) {
	for {
		old := e.lastSeen.Load()
		if now <= old || now-old < gran {
			return
		}
		if e.lastSeen.CompareAndSwap(old, now) {
			return
		}
	}
}

// Table is a MAC forwarding database. It is safe for concurrent use by
// multiple goroutines; see the package documentation for what locks each
// method takes. A Table must be created with [New].
type Table struct {
	ageing     int64 // ns
	gran       int64 // ns; refresh granularity, ageing/1024
	maxEntries int
	maxPerPort int

	mu      sync.RWMutex      // guards m, perPort, statics and the port and static fields of every entry
	m       map[uint64]*entry // keyed by Key.pack
	perPort map[PortID]int    // dynamic entries per port; ports with none are absent
	order   map[PortID]*order // dynamic entries per port, oldest first (evict.go)
	statics int               // static entries in m

	n atomic.Int64 // len(m), for Len and Stats without the lock

	learned, moved, aged, flushed  atomic.Uint64
	ignored, limitPort, limitTotal atomic.Uint64
	evicted                        atomic.Uint64
	staticConflicts                atomic.Uint64
}

// New returns an empty table. Zero fields of cfg take their defaults; a
// negative field is an error wrapping [ErrInvalidConfig] that names it.
func New(cfg Config) (*Table, error) {
	switch {
	case cfg.Ageing < 0:
		return nil, fmt.Errorf("new fdb: %w: Ageing is negative (%v)", ErrInvalidConfig, cfg.Ageing)
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("new fdb: %w: MaxEntries is negative (%d)", ErrInvalidConfig, cfg.MaxEntries)
	case cfg.MaxPerPort < 0:
		return nil, fmt.Errorf("new fdb: %w: MaxPerPort is negative (%d)", ErrInvalidConfig, cfg.MaxPerPort)
	}
	if cfg.Ageing == 0 {
		cfg.Ageing = DefaultAgeing
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxPerPort == 0 {
		cfg.MaxPerPort = DefaultMaxPerPort
	}
	return &Table{
		ageing:     int64(cfg.Ageing),
		gran:       int64(cfg.Ageing) >> 10,
		maxEntries: cfg.MaxEntries,
		maxPerPort: cfg.MaxPerPort,
		m:          make(map[uint64]*entry),
		perPort:    make(map[PortID]int),
		order:      make(map[PortID]*order),
	}, nil
}

// Config returns the configuration in effect, defaults filled in.
func (t *Table) Config() Config {
	return Config{Ageing: time.Duration(t.ageing), MaxEntries: t.maxEntries, MaxPerPort: t.maxPerPort}
}

// isAged reports whether e is a dynamic entry not seen for Ageing at now
// (as has_expired in br_fdb.c: updated + ageing_time <= now).
func (t *Table) isAged(e *entry, now int64) bool {
	return !e.static && now-e.lastSeen.Load() >= t.ageing
}

// Learn records that a frame with source k.MAC arrived on port at now, as
// br_fdb_update does in the Linux bridge, and says what it did.
//
// A MAC already known on the same port (the case of nearly every frame)
// takes only the read lock: its last-seen time is raised to now with an
// atomic compare-and-swap, and only when that moves it by at least
// Ageing/1024 (about 0.3 s for the default), so a station's entry ages out
// between Ageing-Ageing/1024 and Ageing after its last frame. A frame
// refused by a limit or by a static entry is also decided under the read lock.
// Only a new MAC and a move take the write lock.
//
// Limits: a new MAC on a port that already has MaxPerPort dynamic entries is
// LimitPort; a MAC moving to a port at its MaxPerPort limit is LimitPort
// and stays on its old port. Then the MAC is not learned, the event is
// counted in [Stats], and the caller still forwards the frame; frames
// towards that MAC are then flooded as for any unknown destination. A new
// MAC when the table has MaxEntries entries evicts one (see evict.go) and is
// Learned; LimitTotal only when every entry is static. Aged entries hold their slots until Expire removes them
// (or Learn replaces them), so the owner should call Expire periodically.
//
// Static entries are never moved (StaticConflict); they behave like Linux
// entries added with "bridge fdb add ... static sticky" (BR_FDB_STICKY).
//
// Learn does not allocate when it returns without taking the write lock.
func (t *Table) Learn(k Key, port PortID, now int64) LearnResult {
	if port == NoPort || k.MAC.IsMulticast() || k.MAC.IsZero() {
		t.ignored.Add(1)
		return Ignored
	}
	ik := k.pack()

	t.mu.RLock()
	e := t.m[ik]
	r := t.classifyLocked(e, port, now)
	switch r {
	case Refreshed:
		if !e.static {
			e.touch(now, t.gran)
		}
		t.mu.RUnlock()
		return r
	case Learned, Moved:
		t.mu.RUnlock()
	default:
		t.mu.RUnlock()
		t.countRefusal(r)
		return r
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	// The table may have changed between the two locks: decide again.
	e = t.m[ik]
	r = t.classifyLocked(e, port, now)
	switch r {
	case Refreshed:
		if !e.static {
			e.touch(now, t.gran)
		}
	case Learned:
		if e != nil { // aged, not yet expired: as if Expire had run first
			t.removeLocked(ik, e)
			t.aged.Add(1)
		} else if len(t.m) >= t.maxEntries {
			t.evictLocked()
		}
		t.insertLocked(ik, port, false, now)
		t.learned.Add(1)
	case Moved:
		t.unlinkLocked(e)
		t.decPortLocked(e.port)
		t.perPort[port]++
		e.port = port
		t.linkLocked(e)
		e.touch(now, 0)
		t.moved.Add(1)
	default:
		t.countRefusal(r)
	}
	return r
}

// classifyLocked decides what Learn does with a frame from the MAC whose
// entry is e (nil if none) arriving on port. t.mu must be held, either side.
func (t *Table) classifyLocked(e *entry, port PortID, now int64) LearnResult {
	if e != nil {
		switch {
		case e.static && e.port == port:
			return Refreshed
		case e.static:
			return StaticConflict
		case !t.isAged(e, now):
			if e.port == port {
				return Refreshed
			}
			if t.perPort[port] >= t.maxPerPort {
				return LimitPort
			}
			return Moved
		case e.port == port:
			// Aged on the same port: replacing it frees and takes
			// back the same slot.
			return Learned
		}
		// Aged on another port: replacing it frees a slot in the
		// total but not on this port.
		if t.perPort[port] >= t.maxPerPort {
			return LimitPort
		}
		return Learned
	}
	if t.perPort[port] >= t.maxPerPort {
		return LimitPort
	}
	if len(t.m) >= t.maxEntries && len(t.m) == t.statics {
		// Full of static entries: nothing to evict.
		return LimitTotal
	}
	return Learned
}

// insertLocked adds a new entry. t.mu must be held for writing.
func (t *Table) insertLocked(ik uint64, port PortID, static bool, now int64) {
	e := &entry{port: port, static: static, ik: ik}
	e.lastSeen.Store(now)
	t.m[ik] = e
	if static {
		t.statics++
	} else {
		t.perPort[port]++
		t.linkLocked(e)
	}
	t.n.Store(int64(len(t.m)))
}

// removeLocked removes the entry e of key ik. t.mu must be held for writing.
func (t *Table) removeLocked(ik uint64, e *entry) {
	delete(t.m, ik)
	if e.static {
		t.statics--
	} else {
		t.unlinkLocked(e)
		t.decPortLocked(e.port)
	}
	t.n.Store(int64(len(t.m)))
}

// decPortLocked takes one from the dynamic count of port, dropping the port
// from the map at zero so that removed ports leave nothing behind.
func (t *Table) decPortLocked(port PortID) {
	if c := t.perPort[port]; c > 1 {
		t.perPort[port] = c - 1
	} else {
		delete(t.perPort, port)
	}
}

// Lookup returns the port behind k at now. A dynamic entry not seen for
// Ageing is a miss even before Expire removes it. Lookup takes only the read
// lock and does not allocate.
func (t *Table) Lookup(k Key, now int64) (PortID, bool) {
	ik := k.pack()
	t.mu.RLock()
	e := t.m[ik]
	if e == nil || t.isAged(e, now) {
		t.mu.RUnlock()
		return NoPort, false
	}
	port := e.port
	t.mu.RUnlock()
	return port, true
}

// AddStatic adds a static entry for k on port, or makes the existing entry of
// k static and points it to port. Static entries never age and are never
// moved by Learn; only AddStatic, Delete and FlushPort change them. They
// count against MaxEntries but not against MaxPerPort.
//
// It returns an error wrapping [ErrNoPort] for NoPort, [ErrNotUnicast] for a
// multicast, broadcast or zero MAC, and [ErrFull] when k is new and the table
// already has MaxEntries entries.
func (t *Table) AddStatic(k Key, port PortID) error {
	if port == NoPort {
		return fmt.Errorf("add static %v: %w", k, ErrNoPort)
	}
	if k.MAC.IsMulticast() || k.MAC.IsZero() {
		return fmt.Errorf("add static %v: %w", k, ErrNotUnicast)
	}
	ik := k.pack()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[ik]; e != nil {
		if !e.static {
			t.unlinkLocked(e)
			t.decPortLocked(e.port)
			e.static = true
			t.statics++
		}
		e.port = port
		return nil
	}
	if len(t.m) >= t.maxEntries {
		return fmt.Errorf("add static %v: %w (%d entries)", k, ErrFull, t.maxEntries)
	}
	t.insertLocked(ik, port, true, 0)
	return nil
}

// Delete removes the entry of k, static or dynamic (aged or not), and reports
// whether there was one.
func (t *Table) Delete(k Key) bool {
	ik := k.pack()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ik]
	if e == nil {
		return false
	}
	t.removeLocked(ik, e)
	return true
}

// FlushPort removes every entry, dynamic and static, of port, as the Linux
// bridge does when a port is deleted (br_fdb_delete_by_port), and returns how
// many it removed. It walks the whole table under the write lock.
func (t *Table) FlushPort(port PortID) int {
	if port == NoPort {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for ik, e := range t.m {
		if e.port == port {
			t.removeLocked(ik, e)
			n++
		}
	}
	t.flushed.Add(uint64(n))
	return n
}

// Expire removes the dynamic entries not seen for Ageing at now, freeing
// their per-port slots, and returns how many it removed; this is the Linux
// bridge's br_fdb_cleanup. It looks for them under the read lock and takes
// the write lock only when it found some, so a periodic Expire that finds
// nothing never stops the datapath. It allocates a list of the aged keys.
func (t *Table) Expire(now int64) int {
	var stale []uint64
	t.mu.RLock()
	for ik, e := range t.m {
		if t.isAged(e, now) {
			stale = append(stale, ik)
		}
	}
	t.mu.RUnlock()
	if len(stale) == 0 {
		return 0
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, ik := range stale {
		// Refreshed, moved, replaced or deleted since: check again.
		if e := t.m[ik]; e != nil && t.isAged(e, now) {
			t.removeLocked(ik, e)
			n++
		}
	}
	t.aged.Add(uint64(n))
	return n
}

// Len returns the number of entries, static and dynamic, aged entries that
// Expire has not yet removed included. It takes no lock.
func (t *Table) Len() int { return int(t.n.Load()) }

// PortCount returns the number of dynamic entries of port, the number that
// MaxPerPort bounds (aged entries not yet expired included).
func (t *Table) PortCount(port PortID) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.perPort[port]
}

// Entries returns a snapshot of the table at now for the control plane, as
// "bridge fdb show", sorted by port, then VLAN, then MAC. Dynamic entries
// that have aged are left out, as Lookup would miss them. It allocates the
// slice and holds the read lock while it copies.
func (t *Table) Entries(now int64) []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, len(t.m))
	for ik, e := range t.m {
		if t.isAged(e, now) {
			continue
		}
		en := Entry{Key: unpack(ik), Port: e.port, Static: e.static}
		if !e.static {
			en.Age = time.Duration(max(0, now-e.lastSeen.Load()))
		}
		out = append(out, en)
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int {
		if c := cmp.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		if c := cmp.Compare(a.VLAN, b.VLAN); c != 0 {
			return c
		}
		return cmp.Compare(a.Key.pack(), b.Key.pack())
	})
	return out
}
