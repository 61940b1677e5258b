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

	// mu guards rules and next, and orders writes of the state file.
	mu    sync.Mutex
	rules []api.Rule
	next  int // the ID the next rule gets
}

// ruleRoutes adds the rule and pipeline endpoints (api/rules.go) to mux.
func (d *Daemon) ruleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Rules())
	})
	mux.HandleFunc("POST /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		var req api.Rule
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		rs, err := d.AddRule(req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, rs)
	})
	mux.HandleFunc("DELETE /v1/rules/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 1 {
			writeError(w, invalid("rule ID %q: a positive number expected", r.PathValue("id")))
			return
		}
		if err := d.DeleteRule(id); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/pipeline", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Pipeline())
	})
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
	d.rules.rules, d.rules.next = st.Rules, st.NextRuleID
	if len(st.Rules) > 0 {
		d.log.Info("rules loaded", "state", path, "rules", len(st.Rules))
	}
	return nil
}

// canonRule checks r and writes its fields the one way the daemon lists
// them (lower-case MACs, prefixes as netip prints them).
func canonRule(r api.Rule) (api.Rule, error) {
	if err := r.Validate(); err != nil {
		return r, invalid("%v", err)
	}
	for _, n := range []struct{ what, name string }{
		{"--port", r.Port}, {"--src-port", r.SrcPort}, {"--dst-port", r.DstPort}, {"mirror", r.MirrorTo},
	} {
		if n.name != "" && n.name != "gateway" && !nameRE.MatchString(n.name) {
			return r, invalid("%s %q: not a port name", n.what, n.name)
		}
	}
	for _, m := range []*string{&r.SrcMAC, &r.DstMAC} {
		if *m != "" {
			mac, err := fdb.ParseMAC(*m)
			if err != nil {
				return r, invalid("mac %q: %v", *m, err)
			}
			*m = mac.String()
		}
	}
	for _, p := range []*string{&r.Src, &r.Dst} {
		if *p != "" {
			pfx, _ := api.ParsePrefix(*p) // checked by Validate
			*p = pfx.String()
		}
	}
	return r, nil
}

// switchRule is r for the switch. r has been through canonRule.
func switchRule(r api.Rule) (vswitch.Rule, error) {
	act, err := vswitch.ParseAction(r.Action)
	if err != nil {
		return vswitch.Rule{}, invalid("rule %d: %v", r.ID, err)
	}
	sr := vswitch.Rule{
		ID: r.ID, Port: r.Port, SrcPort: r.SrcPort, DstPort: r.DstPort, VLAN: r.VLAN,
		EtherType: r.EtherType, Proto: r.Proto,
		SPortLo: r.SPortLo, SPortHi: r.SPortHi, DPortLo: r.DPortLo, DPortHi: r.DPortHi,
		Action: act, MirrorTo: r.MirrorTo,
	}
	if r.SrcMAC != "" {
		if sr.SrcMAC, err = fdb.ParseMAC(r.SrcMAC); err != nil {
			return sr, invalid("rule %d: src mac %q: %v", r.ID, r.SrcMAC, err)
		}
	}
	if r.DstMAC != "" {
		if sr.DstMAC, err = fdb.ParseMAC(r.DstMAC); err != nil {
			return sr, invalid("rule %d: dst mac %q: %v", r.ID, r.DstMAC, err)
		}
	}
	if r.Src != "" {
		if sr.Src, err = api.ParsePrefix(r.Src); err != nil {
			return sr, invalid("rule %d: src %v", r.ID, err)
		}
	}
	if r.Dst != "" {
		if sr.Dst, err = api.ParsePrefix(r.Dst); err != nil {
			return sr, invalid("rule %d: dst %v", r.ID, err)
		}
	}
	return sr, nil
}

func switchRules(rules []api.Rule) ([]vswitch.Rule, error) {
	out := make([]vswitch.Rule, 0, len(rules))
	for _, r := range rules {
		cr, err := canonRule(r)
		if err != nil {
			return nil, err
		}
		sr, err := switchRule(cr)
		if err != nil {
			return nil, err
		}
		out = append(out, sr)
	}
	return out, nil
}

// setRulesLocked gives the switch rules, then writes them to the state file
// with next; if the file cannot be written the switch gets the old rules
// back, so that what runs is always what a restart would load.
// d.rules.mu is held.
func (d *Daemon) setRulesLocked(rules []api.Rule, next int) error {
	srs, err := switchRules(rules)
	if err != nil {
		return err
	}
	if err := d.sw.SetRules(srs); err != nil {
		return invalid("%v", err)
	}
	if d.rules.path != "" {
		if err := d.writeStateLocked(rules, next); err != nil {
			if old, err2 := switchRules(d.rules.rules); err2 == nil {
				d.sw.SetRules(old)
			}
			return err
		}
	}
	d.rules.rules, d.rules.next = rules, next
	return nil
}

// AddRule adds r with the next ID (r.ID must be 0), applies it at once and
// keeps it in the state file. It returns the rule as stored.
func (d *Daemon) AddRule(r api.Rule) (api.RuleStats, error) {
	if r.ID != 0 {
		return api.RuleStats{}, invalid("a new rule gets its ID from the daemon: leave id out")
	}
	r, err := canonRule(r)
	if err != nil {
		return api.RuleStats{}, err
	}
	d.rules.mu.Lock()
	defer d.rules.mu.Unlock()
	r.ID = d.rules.next
	if err := d.setRulesLocked(append(slices.Clip(d.rules.rules), r), r.ID+1); err != nil {
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
	if err := d.setRulesLocked(slices.Delete(slices.Clone(d.rules.rules), i, i+1), d.rules.next); err != nil {
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
