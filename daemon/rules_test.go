package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
)

func TestStatePath(t *testing.T) {
	for in, want := range map[string]string{
		"/run/tapswitch/tapswitch.sock": "/run/tapswitch/tapswitch.state.json",
		"/tmp/x/ctl":                    "/tmp/x/ctl.state.json",
	} {
		if got := StatePath(in); got != want {
			t.Errorf("StatePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRulesPersist adds and deletes rules, checks the state file after each
// change, and starts a second daemon on the same file: it has the same
// rules, and the next ID is not one used before.
func TestRulesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ts.state.json")
	d := newTestDaemon(t, Config{StatePath: path})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file written before any change: %v", err)
	}
	r1, err := d.AddRule(api.Rule{Port: "a", Proto: api.ProtoTCP, DPortLo: 22, DPortHi: 22, Action: "drop"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := d.AddRule(api.Rule{SrcPort: "a", DstPort: "b", Src: "10.90.0.2", SrcMAC: "02:42:0A:5A:00:02", Action: "allow"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID != 1 || r2.ID != 2 {
		t.Fatalf("IDs: got %d, %d, want 1, 2", r1.ID, r2.ID)
	}
	if r2.Src != "10.90.0.2/32" || r2.SrcMAC != "02:42:0a:5a:00:02" {
		t.Errorf("rule 2 not in canonical form: src %q, src mac %q", r2.Src, r2.SrcMAC)
	}
	if strings.Join(r1.Missing, ",") != "a" || strings.Join(r2.Missing, ",") != "a,b" {
		t.Errorf("missing ports: got %v and %v, want [a] and [a b]", r1.Missing, r2.Missing)
	}
	if err := d.DeleteRule(2); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteRule(2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete of rule 2: got %v, want ErrNotFound", err)
	}
	testutil.WantMode(t, "state file", path, 0o600)
	b, _ := os.ReadFile(path)
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	if st.Version != 1 || st.NextRuleID != 3 || len(st.Rules) != 1 || st.Rules[0].ID != 1 {
		t.Errorf("state file: got %+v, want version 1, next_rule_id 3, rule 1 only", st)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left beside the state file: %v", entries)
	}
	d.Close()

	d2 := newTestDaemon(t, Config{StatePath: path})
	rules := d2.Rules()
	if len(rules) != 1 || rules[0].Rule != r1.Rule {
		t.Fatalf("after restart: got %+v, want rule 1 %+v", rules, r1.Rule)
	}
	if len(d2.sw.Rules()) != 1 {
		t.Errorf("after restart the switch has %d rules, want 1", len(d2.sw.Rules()))
	}
	r3, err := d2.AddRule(api.Rule{Action: "count"})
	if err != nil {
		t.Fatal(err)
	}
	if r3.ID != 3 {
		t.Errorf("first ID after restart: got %d, want 3 (2 was used before)", r3.ID)
	}
}

// TestStateFileRefused starts the daemon on state files it must not run
// with: each is an error naming the file.
func TestStateFileRefused(t *testing.T) {
	for name, content := range map[string]string{
		"not json":       `{"version":1,"next_rule_id":`,
		"trailing data":  `{"version":1,"next_rule_id":1,"rules":[]} {}`,
		"other version":  `{"version":2,"next_rule_id":1,"rules":[]}`,
		"unknown field":  `{"version":1,"next_rule_id":1,"rules":[],"extra":1}`,
		"bad rule":       `{"version":1,"next_rule_id":2,"rules":[{"id":1,"action":"reject"}]}`,
		"id reused":      `{"version":1,"next_rule_id":2,"rules":[{"id":1,"action":"drop"},{"id":1,"action":"drop"}]}`,
		"next id behind": `{"version":1,"next_rule_id":1,"rules":[{"id":1,"action":"drop"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ts.state.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(Config{StatePath: path})
			if err == nil || !strings.Contains(err.Error(), "state file "+path) {
				t.Fatalf("New: got %v, want an error naming the state file", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line", err)
			}
		})
	}
}

// TestRulesAPI goes through the HTTP handlers: add, list, bad input, delete,
// pipeline.
func TestRulesAPI(t *testing.T) {
	d := newTestDaemon(t, Config{StatePath: filepath.Join(t.TempDir(), "s.json"), Isolate: true})
	h := d.Handler()
	call := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := call("POST", "/v1/rules", `{"port":"gateway","proto":6,"dport_lo":22,"dport_hi":22,"action":"drop"}`); w.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s", w.Code, w.Body)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"action":"drop","id":5}`, "leave id out"},
		{`{"action":"drop","proto":1,"dport_lo":22,"dport_hi":22}`, "not icmp"},
		{`{"action":"mirror"}`, "mirror PORT"},
		{`{"action":"drop","port":"a b"}`, "not a port name"},
		{`{"action":"drop","bogus":1}`, "unknown field"},
	} {
		w := call("POST", "/v1/rules", bad.body)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), bad.want) {
			t.Errorf("POST %s: got %d %s, want 400 with %q", bad.body, w.Code, w.Body, bad.want)
		}
	}
	w := call("GET", "/v1/rules", "")
	var rules []api.RuleStats
	if err := json.Unmarshal(w.Body.Bytes(), &rules); err != nil || len(rules) != 1 || rules[0].ID != 1 || rules[0].Missing != nil {
		t.Fatalf("GET /v1/rules: %v %s", err, w.Body)
	}
	if w := call("DELETE", "/v1/rules/9", ""); w.Code != http.StatusNotFound {
		t.Errorf("DELETE unknown rule: got %d, want 404", w.Code)
	}
	if w := call("DELETE", "/v1/rules/x", ""); w.Code != http.StatusBadRequest {
		t.Errorf("DELETE bad ID: got %d, want 400", w.Code)
	}
	if w := call("DELETE", "/v1/rules/1", ""); w.Code != http.StatusNoContent {
		t.Errorf("DELETE rule 1: got %d %s", w.Code, w.Body)
	}
	w = call("GET", "/v1/pipeline", "")
	var p api.Pipeline
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Mode != "learning" || !p.Isolate {
		t.Errorf("pipeline: mode %q isolate %v, want learning and true", p.Mode, p.Isolate)
	}
}

// TestRuleMetrics checks that rule and pipeline counters reach /metrics:
// a count rule for the test port matches its ARP request to the gateway.
func TestRuleMetrics(t *testing.T) {
	d := newTestDaemon(t, Config{})
	mp := testPort(t, d)
	if _, err := d.AddRule(api.Rule{SrcPort: "m1", EtherType: api.EtherTypeARP, Action: "count"}); err != nil {
		t.Fatal(err)
	}
	mp.Inject(arpWhoHas())
	if _, ok := mp.Recv(5 * time.Second); !ok {
		t.Fatal("no ARP reply")
	}
	h := d.MetricsHandler()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mf := scrape(t, h)
		rule := value(mf, "tapswitch_rule_packets_total", "id", "1", "action", "count")
		parse := value(mf, "tapswitch_pipeline_stage_frames_total", "stage", d.sw.Pipeline()[0].Name)
		spoofed := value(mf, "tapswitch_port_rx_dropped_total", "port", "gateway", "reason", "spoofed")
		if rule >= 1 && parse >= 1 && spoofed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule 1 packets %v, first stage's frames %v, gateway's spoofed drops %v; want >= 1, >= 1, 0", rule, parse, spoofed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRuleNotSaved makes the state file unwritable: the rule is refused and
// the switch keeps the rules it had, so what runs is what a restart loads.
func TestRuleNotSaved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	d := newTestDaemon(t, Config{StatePath: filepath.Join(dir, "ts.state.json")})
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // the directory is now a regular file
		t.Fatal(err)
	}
	if _, err := d.AddRule(api.Rule{Action: "drop"}); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Fatalf("AddRule: got %v, want a state file error", err)
	}
	if n, m := len(d.Rules()), len(d.sw.Rules()); n != 0 || m != 0 {
		t.Errorf("after a failed save: daemon has %d rules, switch %d; want 0 and 0", n, m)
	}
}

func TestParseAttachVLAN(t *testing.T) {
	d := newTestDaemon(t, Config{})
	for _, tt := range []struct {
		name  string
		req   api.AttachRequest
		want  string // in the error; "" for valid
		vlan  uint16
		trunk string
	}{
		{"default", api.AttachRequest{Netns: "/x"}, "", 1, "[]"},
		{"access", api.AttachRequest{Netns: "/x", VLAN: 10}, "", 10, "[]"},
		{"trunk", api.AttachRequest{Netns: "/x", Trunk: []uint16{10, 20}}, "", 1, "[10 20]"},
		{"trunk with native", api.AttachRequest{Netns: "/x", VLAN: 5, Trunk: []uint16{20}}, "", 5, "[20]"},
		{"vlan 4095", api.AttachRequest{Netns: "/x", VLAN: 4095}, "VLAN 4095", 0, ""},
		{"trunk 0", api.AttachRequest{Netns: "/x", Trunk: []uint16{0}}, "trunk VLAN 0", 0, ""},
		{"trunk has native", api.AttachRequest{Netns: "/x", Trunk: []uint16{1, 10}}, "trunk VLAN 1 is the port's native", 0, ""},
		{"trunk twice", api.AttachRequest{Netns: "/x", Trunk: []uint16{10, 10}}, "trunk VLAN 10 given twice", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := d.parseAttach(tt.req)
			if testutil.WantErr(t, err, ErrInvalid, tt.want) {
				return
			}
			if a.vlan != tt.vlan || fmt.Sprint(a.trunk) != tt.trunk {
				t.Errorf("vlan %d trunk %v, want %d %s", a.vlan, a.trunk, tt.vlan, tt.trunk)
			}
		})
	}
}
