package integration

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
)

// TestICCOff runs with --icc=false: two containers reach the gateway but
// not each other, until a pair of allow rules lets them.
func TestICCOff(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t, "--icc=false")
	ping(t, ns[0], "10.90.0.1")
	ping(t, ns[1], "10.90.0.1")
	// Isolation keeps c1's ARP broadcasts from c2; with c2's MAC written
	// in c1's neighbour table, c1's pings go out as unicast frames to c2,
	// which the switch denies and counts.
	nsRun(t, ns[0], "ip", "neigh", "replace", ip(ports[1]), "lladdr", ports[1].MAC, "dev", "eth0", "nud", "permanent")
	before := d.portStats(t, "c1").RxDenied
	noPing(t, ns[0], ip(ports[1]))
	if after := d.portStats(t, "c1").RxDenied; after <= before {
		t.Errorf("c1 rx_denied: %d before, %d after pinging c2; want it to grow", before, after)
	}
	d.addRule(t, "--src-port", "c1", "--dst-port", "c2", "allow")
	d.addRule(t, "--src-port", "c2", "--dst-port", "c1", "allow")
	ping(t, ns[0], ip(ports[1]))
	ping(t, ns[1], ip(ports[0]))
	for _, r := range d.rules(t) {
		if r.Packets == 0 {
			t.Errorf("allow rule %d (%s) matched no packet", r.ID, r.Match())
		}
	}
	out, _, code := d.cli(t, "pipeline")
	if code != 0 || !strings.Contains(out, "inter-container communication: off") {
		t.Errorf("pipeline: exit %d:\n%s\nwant isolation reported", code, out)
	}
}

// TestPortSecurity has container c forge frames: a gratuitous ARP claiming
// a's address, one claiming the gateway's, an IPv4 packet from a's address,
// and then traffic after changing its own MAC. Every one is dropped and
// counted, and b's neighbour entries for a and the gateway stay as they
// were. A container attached with --allow-spoof sending the same
// gratuitous ARP does change b's entry: the check above can see a poisoning.
func TestPortSecurity(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t)
	a, b, c, s := newNS(t), newNS(t), newNS(t), newNS(t)
	pa := d.attach(t, a, "a")
	pb := d.attach(t, b, "b")
	pc := d.attach(t, c, "c")
	ping(t, b, ip(pa))
	ping(t, b, "10.90.0.1")
	info, err := d.client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := neighMAC(t, b, "eth0", ip(pa)); got != pa.MAC {
		t.Fatalf("b's neighbour entry for a: %q, want %s", got, pa.MAC)
	}
	cMAC, bMAC := mustMAC(t, pc.MAC), mustMAC(t, pb.MAC)
	send := rawSender(t, c)
	gwBefore := d.gatewayStats(t).ARPConflicts
	before := d.portStats(t, "c").RxSpoofed
	send(arpFrame(cMAC, cMAC, ip(pa), ip(pa)))           // "a's address is at c's MAC"
	send(arpFrame(cMAC, cMAC, "10.90.0.1", "10.90.0.1")) // "the gateway is at c's MAC"
	send(echoFrame(cMAC, bMAC, ip(pa), ip(pb)))          // from a's address
	eventually(t, 5*time.Second, "c's rx_spoofed to count the 3 forged frames", func() bool {
		return d.portStats(t, "c").RxSpoofed == before+3
	})
	if got := neighMAC(t, b, "eth0", ip(pa)); got != pa.MAC {
		t.Errorf("b's neighbour entry for a after c's gratuitous ARP: %q, want %s", got, pa.MAC)
	}
	if got := neighMAC(t, b, "eth0", "10.90.0.1"); got != info.GatewayMAC {
		t.Errorf("b's neighbour entry for the gateway after c's gratuitous ARP: %q, want %s", got, info.GatewayMAC)
	}
	if got := d.gatewayStats(t).ARPConflicts; got != gwBefore {
		t.Errorf("the gateway saw %d ARP conflicts for its address, want none to reach it", got-gwBefore)
	}
	ping(t, a, "10.90.0.1") // the gateway still answers a, at a's MAC

	// A forged source MAC.
	before = d.portStats(t, "c").RxSpoofed
	nsRun(t, c, "ip", "link", "set", "eth0", "address", "02:00:00:00:0c:99")
	noPing(t, c, ip(pb))
	if after := d.portStats(t, "c").RxSpoofed; after <= before {
		t.Errorf("c's rx_spoofed: %d before and %d after sending from a forged MAC; want it to grow", before, after)
	}

	// The same gratuitous ARP from a port without port security gets
	// through: b's entry for a changes.
	ps := d.attach(t, s, "s", "--allow-spoof")
	sMAC := mustMAC(t, ps.MAC)
	rawSender(t, s)(arpFrame(sMAC, sMAC, ip(pa), ip(pa)))
	eventually(t, 5*time.Second, "b's entry for a to follow the unchecked gratuitous ARP", func() bool {
		return neighMAC(t, b, "eth0", ip(pa)) == ps.MAC
	})
}

// TestACLDropSSH drops TCP to port 22 of b while port 8080 keeps working,
// then deletes the rule.
func TestACLDropSSH(t *testing.T) {
	requireRoot(t)
	d, ns, ports := twoContainers(t)
	tcpServer(t, ns[1], ":22")
	tcpServer(t, ns[1], ":8080")
	id := d.addRule(t, "--port", "c2", "--proto", "tcp", "--dport", "22", "drop")
	if id != "1" {
		t.Errorf("first rule's ID: %q, want 1", id)
	}
	if _, err := dialTCP(t, ns[0], net.JoinHostPort(ip(ports[1]), "22"), 2*time.Second); err == nil {
		t.Errorf("connected to c2:22 through a drop rule")
	}
	echo(t, ns[0], net.JoinHostPort(ip(ports[1]), "8080"))
	rs := d.rules(t)
	if len(rs) != 1 || rs[0].Packets == 0 {
		t.Fatalf("rules: %+v, want rule 1 with packets counted", rs)
	}
	out, _, _ := d.cli(t, "rule", "list")
	if !strings.Contains(out, "port=c2 proto=tcp dport=22") || !strings.Contains(out, "drop") {
		t.Errorf("rule list:\n%s\nwant the rule's match and action", out)
	}
	if _, errOut, code := d.cli(t, "rule", "del", id); code != 0 {
		t.Fatalf("rule del: exit %d: %s", code, errOut)
	}
	echo(t, ns[0], net.JoinHostPort(ip(ports[1]), "22"))
	if len(d.rules(t)) != 0 {
		t.Errorf("rules left after rule del")
	}
}

// echo connects from ns to a tcpServer at addr and checks that it echoes.
func echo(t *testing.T, ns, addr string) {
	t.Helper()
	c, err := dialTCP(t, ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", ns, addr, err)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	c.Write([]byte("ping\n"))
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo from %s: %q, %v", addr, line, err)
	}
}

// TestRulesUnderTraffic changes the rule set again and again while 128 MiB
// go from a to b over TCP: the transfer arrives whole.
func TestRulesUnderTraffic(t *testing.T) {
	requireRoot(t)
	d, ns, ports := twoContainers(t)
	var progress atomic.Int64
	done := make(chan struct{})
	type result struct {
		rounds int
		err    error
	}
	changed := make(chan result, 1)
	go func() {
		var res result
		defer func() { changed <- res }()
		for progress.Load() == 0 {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
		ctx := context.Background()
		for {
			select {
			case <-done:
				return
			default:
			}
			// Rules that match the stream (count) and ones that do not
			// (drops of other traffic), added and deleted.
			for _, r := range []api.Rule{
				{SrcPort: "c1", Proto: api.ProtoTCP, DPortLo: 5201, DPortHi: 5201, Action: "count"},
				{Port: "c2", Proto: api.ProtoTCP, DPortLo: 22, DPortHi: 22, Action: "drop"},
				{Proto: api.ProtoUDP, Action: "drop"},
			} {
				rs, err := d.client.AddRule(ctx, r)
				if err == nil {
					err = d.client.DeleteRule(ctx, rs.ID)
				}
				if err != nil {
					res.err = err
					return
				}
			}
			res.rounds++
		}
	}()
	const size = 128 << 20
	sent, got := transfer(t, ns[0], ns[1], ip(ports[1]), size, &progress)
	close(done)
	res := <-changed
	if res.err != nil {
		t.Errorf("changing rules: %v", res.err)
	}
	if sent != got {
		t.Errorf("sha256: sent %x, received %x", sent, got)
	}
	if progress.Load() != size {
		t.Errorf("received %d bytes, want %d", progress.Load(), size)
	}
	if res.rounds == 0 {
		t.Errorf("the rule set did not change during the transfer")
	}
	t.Logf("%d rounds of 6 rule set changes during the transfer", res.rounds)
}

// TestRulesSurviveRestart adds a rule, restarts the daemon on the same state
// file, and finds the rule there and enforced; a corrupt state file stops
// the daemon from starting, with the file named.
func TestRulesSurviveRestart(t *testing.T) {
	requireRoot(t, "ping")
	state := filepath.Join(t.TempDir(), "ts.state.json")
	d := startDaemon(t, "--state", state)
	d.addRule(t, "--src-port", "a", "--proto", "icmp", "drop")
	id2 := d.addRule(t, "--port", "b", "count")
	if _, errOut, code := d.cli(t, "rule", "del", id2); code != 0 {
		t.Fatalf("rule del: exit %d: %s", code, errOut)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon(t, "--state", state)
	rs := d2.rules(t)
	if len(rs) != 1 || rs[0].ID != 1 || rs[0].Match() != "src-port=a proto=icmp" || rs[0].Action != "drop" {
		t.Fatalf("rules after restart: %+v, want rule 1 src-port=a proto=icmp drop", rs)
	}
	if strings.Join(rs[0].Missing, ",") != "a" {
		t.Errorf("rule 1 names a port not attached yet: missing %v, want [a]", rs[0].Missing)
	}
	a, b, pb := d2.attachAB(t)
	noPing(t, a, ip(pb))
	if s := d2.portStats(t, "a"); s.RxDenied == 0 {
		t.Errorf("a's rx_denied is 0 after pings a rule drops")
	}
	ping(t, b, "10.90.0.1")
	if id := d2.addRule(t, "count"); id != "3" {
		t.Errorf("next rule ID after restart: %s, want 3 (2 was used)", id)
	}
	if err := d2.stop(t); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(state, []byte(`{"version":1,"rules":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, "run", "--control", filepath.Join(t.TempDir(), "c.sock"), "--state", state)
	if code != 1 || !strings.Contains(errOut, "state file "+state+" is corrupt") {
		t.Errorf("run on a corrupt state file: exit %d, stderr %q; want 1 and the file named", code, errOut)
	}
}

// TestDefaultStateFile checks where the state file goes by default: beside
// the control socket.
func TestDefaultStateFile(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	info, err := d.client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(d.sock, ".sock") + ".state.json"
	if info.StateFile != want {
		t.Fatalf("state file: %q, want %q", info.StateFile, want)
	}
	d.addRule(t, "--proto", "tcp", "--dport", "23", "drop")
	testutil.WantMode(t, "state file", want, 0o600)
	b, _ := os.ReadFile(want)
	if !strings.Contains(string(b), `"next_rule_id": `+strconv.Itoa(2)) {
		t.Errorf("state file:\n%s\nwant next_rule_id 2", b)
	}
}
