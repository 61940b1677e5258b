package daemon

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// rulesState is the daemon's ACL rule set as the user gave it, kept in the
// same order (ID order) as the switch's.
type rulesState struct {
	// path is the state file; "" keeps the rules in memory only.
	path string

	// mu guards rules, srs and next, and orders writes of the state file.
	mu    sync.Mutex
	rules []api.Rule
	srs   []vswitch.Rule // the switch's rules for rules, parsed once
	next  int            // the ID the next rule gets
}

// ruleRoutes adds the rule and pipeline endpoints (api/rules.go) to mux.
func (d *Daemon) ruleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rules", getter(d.Rules))
	mux.HandleFunc("POST /v1/rules", decoded(http.StatusCreated, func(_ *http.Request, req api.Rule) (api.RuleStats, error) {
		return d.AddRule(req)
	}))
	mux.HandleFunc("DELETE /v1/rules/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 1 {
			writeError(w, invalid("rule ID %q: a positive number expected", r.PathValue("id")))
			return
		}
		replyNoContent(w, d.DeleteRule(id))
	})
	mux.HandleFunc("GET /v1/pipeline", getter(d.Pipeline))
}

// loadRules reads the state file and hands its rules to the switch.
func (d *Daemon) loadRules(path string) error {
	d.rules.path = path
	d.rules.next = 1
	if path == "" {
		return nil
	}
	st, err := loadState(path)
	if err != nil {
		return err
	}
	srs, err := switchRules(st.Rules)
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := d.sw.SetRules(srs); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	d.rules.rules, d.rules.srs, d.rules.next = st.Rules, srs, st.NextRuleID
	if len(st.Rules) > 0 {
		d.log.Info("rules loaded", "state", path, "rules", len(st.Rules))
	}
	return nil
}

// parseRule checks r (api.Rule.Validate, the one check of a rule, and the
// port names) and returns it written the one way the daemon lists it
// (lower-case MACs, prefixes as netip prints them) with the switch's rule
// for it. Each MAC and prefix is parsed once, here.
func parseRule(r api.Rule) (api.Rule, vswitch.Rule, error) {
	if err := r.Validate(); err != nil {
		return r, vswitch.Rule{}, invalid("%v", err)
	}
	for _, n := range []struct{ what, name string }{
		{"--port", r.Port}, {"--src-port", r.SrcPort}, {"--dst-port", r.DstPort}, {"mirror", r.MirrorTo},
	} {
		if n.name != "" && n.name != "gateway" && !nameRE.MatchString(n.name) {
			return r, vswitch.Rule{}, invalid("%s %q: not a port name", n.what, n.name)
		}
	}
	act, err := vswitch.ParseAction(r.Action)
	if err != nil {
		return r, vswitch.Rule{}, invalid("rule %d: %v", r.ID, err)
	}
	sr := vswitch.Rule{
		ID: r.ID, Port: r.Port, SrcPort: r.SrcPort, DstPort: r.DstPort, VLAN: r.VLAN,
		EtherType: r.EtherType, Proto: r.Proto,
		SPortLo: r.SPortLo, SPortHi: r.SPortHi, DPortLo: r.DPortLo, DPortHi: r.DPortHi,
		Action: act, MirrorTo: r.MirrorTo,
	}
	// Validate has checked every MAC and prefix with the same parsers.
	if sr.SrcMAC, r.SrcMAC, err = canon(r.SrcMAC, fdb.ParseMAC); err == nil {
		sr.DstMAC, r.DstMAC, err = canon(r.DstMAC, fdb.ParseMAC)
	}
	if err == nil {
		sr.Src, r.Src, err = canon(r.Src, api.ParsePrefix)
	}
	if err == nil {
		sr.Dst, r.Dst, err = canon(r.Dst, api.ParsePrefix)
	}
	if err != nil {
		return r, vswitch.Rule{}, invalid("%v", err)
	}
	return r, sr, nil
}

// canon parses s, when it is not empty, and returns the value with its
// canonical text.
func canon[T fmt.Stringer](s string, parse func(string) (T, error)) (T, string, error) {
	var zero T
	if s == "" {
		return zero, "", nil
	}
	v, err := parse(s)
	if err != nil {
		return zero, s, err
	}
	return v, v.String(), nil
}

// switchRules returns the switch's rules for rules, checking each.
func switchRules(rules []api.Rule) ([]vswitch.Rule, error) {
	out := make([]vswitch.Rule, 0, len(rules))
	for _, r := range rules {
		_, sr, err := parseRule(r)
		if err != nil {
			return nil, err
		}
		out = append(out, sr)
	}
	return out, nil
}

// setRulesLocked gives the switch srs, the switch's rules for rules, then
// writes rules to the state file with next; if the file cannot be written
// the switch gets the old rules back, so that what runs is always what a
// restart would load. d.rules.mu is held.
func (d *Daemon) setRulesLocked(rules []api.Rule, srs []vswitch.Rule, next int) error {
	if err := d.sw.SetRules(srs); err != nil {
		return invalid("%v", err)
	}
	if d.rules.path != "" {
		if err := d.writeStateLocked(rules, next); err != nil {
			d.sw.SetRules(d.rules.srs)
			return err
		}
	}
	d.rules.rules, d.rules.srs, d.rules.next = rules, srs, next
	return nil
}

// AddRule adds r with the next ID (r.ID must be 0), applies it at once and
// keeps it in the state file. It returns the rule as stored.
func (d *Daemon) AddRule(r api.Rule) (api.RuleStats, error) {
	if r.ID != 0 {
		return api.RuleStats{}, invalid("a new rule gets its ID from the daemon: leave id out")
	}
	r, sr, err := parseRule(r)
	if err != nil {
		return api.RuleStats{}, err
	}
	d.rules.mu.Lock()
	defer d.rules.mu.Unlock()
	r.ID = d.rules.next
	sr.ID = r.ID
	if err := d.setRulesLocked(append(slices.Clip(d.rules.rules), r), append(slices.Clip(d.rules.srs), sr), r.ID+1); err != nil {
		return api.RuleStats{}, err
	}
	d.log.Info("rule added", "id", r.ID, "match", r.Match(), "action", r.Action, "mirror_to", r.MirrorTo)
	return api.RuleStats{Rule: r, Missing: d.missingPorts(r)}, nil
}

// DeleteRule removes the rule with the given ID.
func (d *Daemon) DeleteRule(id int) error {
	d.rules.mu.Lock()
	defer d.rules.mu.Unlock()
	i := slices.IndexFunc(d.rules.rules, func(r api.Rule) bool { return r.ID == id })
	if i < 0 {
		return notFound("no rule %d", id)
	}
	rules := slices.Delete(slices.Clone(d.rules.rules), i, i+1)
	srs := slices.Delete(slices.Clone(d.rules.srs), i, i+1)
	if err := d.setRulesLocked(rules, srs, d.rules.next); err != nil {
		return err
	}
	d.log.Info("rule deleted", "id", id)
	return nil
}

// Rules lists the rules in ID order with the switch's counters.
func (d *Daemon) Rules() []api.RuleStats {
	counts := map[int]vswitch.RuleStats{}
	for _, rs := range d.sw.Rules() {
		counts[rs.ID] = rs
	}
	d.rules.mu.Lock()
	rules := d.rules.rules
	d.rules.mu.Unlock()
	out := make([]api.RuleStats, 0, len(rules))
	for _, r := range rules {
		c := counts[r.ID]
		out = append(out, api.RuleStats{Rule: r, Packets: c.Packets, Bytes: c.Bytes, Missing: d.missingPorts(r)})
	}
	return out
}

// missingPorts lists the ports r names that are not attached.
func (d *Daemon) missingPorts(r api.Rule) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var miss []string
	for _, n := range []string{r.Port, r.SrcPort, r.DstPort, r.MirrorTo} {
		if n == "" || n == "gateway" || slices.Contains(miss, n) {
			continue
		}
		if _, ok := d.ports[n]; !ok {
			miss = append(miss, n)
		}
	}
	return miss
}

// Pipeline describes the switch's pipeline with its counters.
func (d *Daemon) Pipeline() api.Pipeline {
	p := api.Pipeline{Mode: string(d.mode()), Isolate: d.cfg.Isolate}
	for _, s := range d.sw.Pipeline() {
		p.Stages = append(p.Stages, api.Stage{Name: s.Name, Doc: s.Doc, Hits: s.Hits, Drops: s.Drops})
	}
	return p
}
