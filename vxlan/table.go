package vxlan

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
)

// DefaultMaxEntries bounds a Table whose Config gives no limit.
const DefaultMaxEntries = 8192

// ErrFull is returned by AddStatic when the table holds MaxEntries entries.
var ErrFull = errors.New("vxlan: mac table full")

// TableConfig configures a Table.
type TableConfig struct {
	// Ageing is how long a learned entry lives without a frame from its
	// MAC; zero means fdb.DefaultAgeing (300 s, as the Linux bridge and
	// vxlan device).
	Ageing time.Duration
	// MaxEntries bounds the number of entries; zero means
	// DefaultMaxEntries. A full table learns nothing new until entries
	// age out.
	MaxEntries int
}

// Table maps the MACs seen behind the tunnel to the VTEP that sent them,
// as the Linux vxlan device's FDB does (`bridge fdb show dev vxlan42`).
// Lookups take a read lock; Learn takes the write lock only for a new or
// moved MAC, and refreshes an entry with an atomic store at most once per
// second (agedMap). The clock is passed in (nanoseconds). All methods are
// safe for concurrent use.
type Table struct {
	agedMap[fdb.MAC, *VTEP]
}

// limits returns cfg's ageing (nanoseconds) and bound, the defaults for
// zero values; what names the table in the error.
func (cfg TableConfig) limits(what string) (int64, int, error) {
	if cfg.Ageing < 0 || cfg.MaxEntries < 0 {
		return 0, 0, fmt.Errorf("%s: negative ageing %s or limit %d", what, cfg.Ageing, cfg.MaxEntries)
	}
	if cfg.Ageing == 0 {
		cfg.Ageing = fdb.DefaultAgeing
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	return int64(cfg.Ageing), cfg.MaxEntries, nil
}

// NewTable returns an empty table.
func NewTable(cfg TableConfig) (*Table, error) {
	t := &Table{}
	if err := t.init(cfg, "vxlan table"); err != nil {
		return nil, err
	}
	return t, nil
}

// Learn records that mac is behind v at time now. A multicast or zero MAC
// is never learned; a static entry never moves; a full table learns
// nothing new (counted).
func (t *Table) Learn(mac fdb.MAC, v *VTEP, now int64) {
	if mac.IsMulticast() || mac.IsZero() {
		return
	}
	t.learn(mac, v, now)
}

// Lookup returns the VTEP mac is behind, if known and not aged.
func (t *Table) Lookup(mac fdb.MAC, now int64) (*VTEP, bool) {
	v, _ := t.lookup(mac, now)
	return v, v != nil
}

// AddStatic pins mac behind v: it never ages and Learn never moves it, as
// `bridge fdb append ... dev vxlan42 dst ADDR` does.
func (t *Table) AddStatic(mac fdb.MAC, v *VTEP) error {
	if mac.IsMulticast() || mac.IsZero() {
		return fmt.Errorf("static entry %s: %w", mac, fdb.ErrNotUnicast)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[mac]; !ok && len(t.m) >= t.max {
		return fmt.Errorf("static entry %s: %w", mac, ErrFull)
	}
	t.m[mac] = &agedEntry[*VTEP]{val: v, static: true}
	return nil
}

// Delete removes mac's entry, static or learned; it reports whether there
// was one.
func (t *Table) Delete(mac fdb.MAC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[mac]
	delete(t.m, mac)
	return ok
}

// Entry is one entry of a Table, for listings.
type Entry struct {
	MAC    fdb.MAC
	VTEP   *VTEP
	Static bool
	// Age is the time since the last frame from MAC (0 for a static
	// entry).
	Age time.Duration
}

// Entries lists the entries not aged at now, by MAC.
func (t *Table) Entries(now int64) []Entry {
	out := list(&t.agedMap, now, func(mac fdb.MAC, e *agedEntry[*VTEP], age time.Duration) Entry {
		return Entry{MAC: mac, VTEP: e.val, Static: e.static, Age: age}
	})
	slices.SortFunc(out, func(a, b Entry) int { return slices.Compare(a.MAC[:], b.MAC[:]) })
	return out
}

// TableStats are a Table's counters.
type TableStats struct {
	Entries int    `json:"entries"`
	Learned uint64 `json:"learned"`
	Moved   uint64 `json:"moved"`
	// Full counts MACs not learned because the table was full.
	Full uint64 `json:"full"`
}
