package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestArgumentErrors checks that command-line mistakes exit 2 with one line
// naming the mistake, before anything talks to a daemon.
func TestArgumentErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"attach without namespace", []string{"attach"}, 2, "give exactly one of --netns PATH and --pid PID"},
		{"attach with both", []string{"attach", "--netns", "/run/netns/x", "--pid", "1"}, 2, "give exactly one of"},
		{"attach negative pid", []string{"attach", "--pid", "-3"}, 2, "--pid -3: must be positive"},
		{"attach bad pid", []string{"attach", "--pid", "abc"}, 2, `invalid value "abc" for flag -pid`},
		{"attach negative mtu", []string{"attach", "--netns", "/x", "--mtu", "-1"}, 2, "--mtu -1"},
		{"attach unknown flag", []string{"attach", "--vlna", "3"}, 2, "flag provided but not defined: -vlna"},
		{"attach bad vlan", []string{"attach", "--netns", "/x", "--vlan", "4095"}, 2, "--vlan: VLAN 4095: must be from 1 to 4094"},
		{"attach bad trunk", []string{"attach", "--netns", "/x", "--trunk", "10,x"}, 2, `--trunk: "10,x": a comma-separated list`},
		{"attach trunk twice", []string{"attach", "--netns", "/x", "--trunk", "10,10"}, 2, "--trunk: VLAN 10 given twice"},
		{"run bad mode", []string{"run", "--mode", "router"}, 2, `--mode "router": learning or hub`},
		{"run bad icc", []string{"run", "--icc=maybe"}, 2, "invalid boolean value"},
		{"run bad gateway vlan", []string{"run", "--gateway-vlan", "0"}, 2, "--gateway-vlan: VLAN 0"},
		{"rule without subcommand", []string{"rule"}, 2, "give a subcommand: add, list or del"},
		{"rule unknown subcommand", []string{"rule", "flush"}, 2, `unknown subcommand "flush"`},
		{"rule add without action", []string{"rule", "add", "--port", "a"}, 2, "give an action"},
		{"rule add bad action", []string{"rule", "add", "reject"}, 2, `action "reject"`},
		{"rule add mirror without port", []string{"rule", "add", "--port", "a", "mirror"}, 2, "mirror needs exactly one port"},
		{"rule add extra", []string{"rule", "add", "drop", "x"}, 2, `unexpected argument "x" after the action drop`},
		{"rule add dport with icmp", []string{"rule", "add", "--proto", "icmp", "--dport", "22", "drop"}, 2, "--dport needs --proto tcp or udp, not icmp"},
		{"rule add dport without proto", []string{"rule", "add", "--dport", "22", "drop"}, 2, "--dport needs --proto tcp or --proto udp"},
		{"rule add bad dport", []string{"rule", "add", "--proto", "tcp", "--dport", "22-x", "drop"}, 2, "--dport: port \"22-x\""},
		{"rule add bad proto", []string{"rule", "add", "--proto", "sctp", "drop"}, 2, `--proto: protocol "sctp"`},
		{"rule add bad src", []string{"rule", "add", "--src", "10.0.0.1/8", "drop"}, 2, "--src \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)"},
		{"rule add bad ethertype", []string{"rule", "add", "--ethertype", "ip7", "drop"}, 2, `--ethertype: ethertype "ip7"`},
		{"rule add proto with arp", []string{"rule", "add", "--ethertype", "arp", "--proto", "tcp", "drop"}, 2, "IPv4 packets only"},
		{"rule add bad mac", []string{"rule", "add", "--src-mac", "zz", "drop"}, 2, "--src-mac \"zz\""},
		{"rule add bad vlan", []string{"rule", "add", "--vlan", "5000", "drop"}, 2, "--vlan: VLAN 5000"},
		{"rule del without id", []string{"rule", "del"}, 2, "give exactly one rule ID"},
		{"rule del bad id", []string{"rule", "del", "x"}, 2, `rule ID "x": a positive number expected`},
		{"rule list extra", []string{"rule", "list", "x"}, 2, `unexpected argument "x"`},
		{"pipeline extra", []string{"pipeline", "x"}, 2, `unexpected argument "x"`},
		{"attach extra argument", []string{"attach", "--netns", "/x", "extra"}, 2, `unexpected argument "extra"`},
		{"detach without name", []string{"detach"}, 2, "give exactly one port name"},
		{"detach two names", []string{"detach", "a", "b"}, 2, "give exactly one port name"},
		{"ports extra argument", []string{"ports", "x"}, 2, `unexpected argument "x"`},
		{"fdb extra argument", []string{"fdb", "x"}, 2, `unexpected argument "x"`},
		{"run bad subnet", []string{"run", "--subnet", "10.90.0.0"}, 2, `--subnet "10.90.0.0": not a CIDR prefix`},
		{"run bad gateway", []string{"run", "--gateway", "ten"}, 2, `--gateway "ten": not an IP address`},
		{"run bad ageing", []string{"run", "--fdb-ageing", "-1s"}, 2, "--fdb-ageing -1s: must be positive"},
		{"run bad ageing syntax", []string{"run", "--fdb-ageing", "5"}, 2, "invalid value"},
		{"demo too many", []string{"demo", "--containers", "12"}, 2, "--containers 12"},
		{"capture without -w", []string{"capture", "c1"}, 2, "give -w FILE"},
		{"capture without port", []string{"capture", "-w", "x"}, 2, "give a port name"},
		{"capture bad filter", []string{"capture", "c1", "-w", "-", "tcp", "port"}, 2, "bad filter: port: a value is expected"},
		{"capture bad format", []string{"capture", "c1", "-w", "-", "--format", "erf"}, 2, "format"},
		{"stats extra argument", []string{"stats", "x"}, 2, `unexpected argument "x"`},
		{"run bad metrics", []string{"run", "--metrics", "nine"}, 2, "--metrics"},
		{"run bad dns upstream", []string{"run", "--dns-upstream", "dns.example"}, 2, `--dns-upstream: dns upstream "dns.example": not ADDR or ADDR:PORT`},
		{"run dns upstream without dns", []string{"run", "--dns=false", "--dns-upstream", "192.0.2.1"}, 2, "--dns-upstream and --dns-domain need --dns"},
		{"run bad dns domain", []string{"run", "--dns-domain", "a..b"}, 2, `--dns-domain: dns domain "a..b" is not a domain name`},
		{"run bad dns rate", []string{"run", "--dns-rate", "0"}, 2, "--dns-rate 0: must be positive"},
		{"alias without port", []string{"alias"}, 2, "give a port name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantExit(t, tt.args, tt.code, tt.want) })
	}
}

// wantExit runs the command line args and checks its exit status and that
// its standard error contains want.
func wantExit(t *testing.T, args []string, code int, want string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if got := runMain(args, &stdout, &stderr); got != code {
		t.Errorf("exit status: got %d, want %d (stderr %q)", got, code, stderr.String())
	}
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), want)
	}
}

// TestNoDaemon checks that a client with nobody on its socket says so in one
// line and exits 1.
func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{
		{"ports"}, {"fdb", "--json"}, {"detach", "c1"}, {"attach", "--netns", "/run/netns/x"}, {"version"},
		{"rule", "add", "--port", "a", "--proto", "tcp", "--dport", "22", "drop"}, {"rule", "list"}, {"rule", "del", "1"}, {"pipeline"},
	} {
		var stdout, stderr bytes.Buffer
		code := runMain(append(args, "--control", sock), &stdout, &stderr)
		if code != 1 {
			t.Errorf("%v: exit status: got %d, want 1", args, code)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "cannot reach the tapswitch daemon at "+sock) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: stderr: got %q, want one line saying the daemon cannot be reached", args, msg)
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "tapswitch attach") {
		t.Errorf("help: exit %d, stdout %q", code, stdout.String())
	}
}

// TestGlobalFlags: --control may come before the subcommand, as docker -H
// and ip -n take theirs, as well as after it; after it wins.
func TestGlobalFlags(t *testing.T) {
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before.sock"), filepath.Join(dir, "after.sock")
	for _, tt := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"--control", before, "ports"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control=" + before, "fdb", "--json"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"-control", before, "detach", "c1"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control", before, "rule", "list"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control", before, "rule", "del", "1"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control", before, "ports", "--control", after}, 1, "cannot reach the tapswitch daemon at " + after},
		{[]string{"--control", before, "rule", "list", "--control", after}, 1, "cannot reach the tapswitch daemon at " + after},
		{[]string{"--control", before, "rule"}, 2, "give a subcommand: add, list or del"},
		{[]string{"--control", before, "vxlan", "list"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control", before, "vxlan", "fdb", "del", "42", "02:00:00:00:00:01"}, 1, "cannot reach the tapswitch daemon at " + before},
		{[]string{"--control", before, "vxlan"}, 2, "give a subcommand: add, list, del, fdb or neigh"},
		{[]string{"--control", before, "ports", "x"}, 2, `unexpected argument "x"`},
		{[]string{"--control", before, "demo"}, 2, "demo runs a daemon of its own"},
		{[]string{"--control", before}, 2, "Usage:"},
		{[]string{"--control"}, 2, "flag needs an argument: -control"},
		{[]string{"--json", "ports"}, 2, "flag provided but not defined: -json"},
		{[]string{"--control", before, "frobnicate"}, 2, `unknown command "frobnicate"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) { wantExit(t, tt.args, tt.code, tt.want) })
	}
	for _, h := range []string{"-h", "--help", "help"} {
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{h}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("%s: exit %d, stdout %q", h, code, stdout.String())
		}
	}
	// run serves the socket it is given before the subcommand too.
	got, err := globalFlags([]string{"--control", before, "run", "--mtu", "9000"})
	if want := []string{"run", "--control=" + before, "--mtu", "9000"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("globalFlags: got %q, %v; want %q", got, err, want)
	}
}
