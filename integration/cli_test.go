package integration

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

// TestControlBeforeSubcommand: --control before the subcommand reaches the
// daemon as it does after it (tapswitch --control PATH ports, as docker -H),
// for a subcommand with subcommands of its own too.
func TestControlBeforeSubcommand(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	ns := newNS(t)
	d.attach(t, ns, "c1")
	for _, args := range [][]string{
		{"--control", d.sock, "ports", "--json"},
		{"--control=" + d.sock, "ports", "--json"},
		{"--control", "/nonexistent/tapswitch.sock", "ports", "--json", "--control", d.sock},
	} {
		out, errOut, code := run(t, args...)
		var ports []api.Port
		if code != 0 || json.Unmarshal([]byte(out), &ports) != nil || !slices.ContainsFunc(ports, func(p api.Port) bool { return p.Name == "c1" }) {
			t.Errorf("tapswitch %q: exit %d, stdout %q, stderr %q; want the ports with c1", args, code, out, errOut)
		}
	}
	if out, errOut, code := run(t, "--control", d.sock, "rule", "list", "--json"); code != 0 || out != "[]\n" {
		t.Errorf("tapswitch --control SOCK rule list: exit %d, stdout %q, stderr %q; want []", code, out, errOut)
	}
}
