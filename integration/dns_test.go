package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// The embedded DNS server's tests: names in real namespaces with dig and
// getent, and forwarding to an upstream the test runs itself in the far
// namespace of startHost (never the machine's own resolvers).

// dnsNS is newNS for a container that attach gives a resolv.conf: the
// test removes /etc/netns/NAME too, should the daemon not have.
func dnsNS(t *testing.T) string {
	t.Helper()
	ns := newNS(t)
	t.Cleanup(func() { os.RemoveAll(filepath.Join("/etc/netns", ns)) })
	return ns
}

// dig runs dig in ns against the gateway and returns its output; args
// come after the fixed options (one try, 5 s).
func dig(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return digAt(t, ns, gatewayIP, args...)
}

// digAt is dig against server.
func digAt(t *testing.T, ns, server string, args ...string) string {
	t.Helper()
	line := append([]string{"netns", "exec", ns, "dig", "@" + server, "+tries=1", "+time=5"}, args...)
	out, _ := exec.Command("ip", line...).CombinedOutput()
	return string(out)
}

// digShort is dig +short, trimmed.
func digShort(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(dig(t, ns, append([]string{"+short"}, args...)...))
}

// status returns the rcode dig printed ("NOERROR", "NXDOMAIN", ...), or
// "" when no answer came.
func status(out string) string {
	_, rest, ok := strings.Cut(out, "status: ")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(strings.Fields(rest)[0], ",")
}

// upstream is a DNS server the test runs in a namespace of its own.
type upstream struct {
	udp, tcp *dns.Server
	queries  atomic.Int64
}

// The upstream's zone.
const (
	exampleIP  = "198.51.100.7" // example.test and cached.test, TTL exampleTTL
	exampleTTL = 5
	bigTXTs    = 12 // big.test: TXT records of 60 bytes, about 900 bytes in all
)

// startUpstream serves the upstream's zone on addr:53, UDP and TCP, from
// sockets opened in ns; the test's cleanup stops it.
func startUpstream(t *testing.T, ns, addr string) *upstream {
	t.Helper()
	u := &upstream{}
	var pc net.PacketConn
	var ln net.Listener
	err := netnsutil.Do(netnsutil.Path(ns), func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr+":53")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(u.serve)
	u.udp = &dns.Server{PacketConn: pc, Handler: h}
	u.tcp = &dns.Server{Listener: ln, Handler: h}
	go u.udp.ActivateAndServe()
	go u.tcp.ActivateAndServe()
	t.Cleanup(u.stop)
	return u
}

func (u *upstream) stop() {
	u.udp.Shutdown()
	u.tcp.Shutdown()
}

func (u *upstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	u.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.test.", Mbox: "h.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 30}
	switch strings.ToLower(q.Name) {
	case "example.test.", "cached.test.":
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: exampleTTL},
				A: net.ParseIP(exampleIP)})
		} else {
			m.Ns = append(m.Ns, soa)
		}
	case "big.test.":
		for i := range bigTXTs {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
				Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 57))}})
		}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// TestDNSNames resolves ports' names, aliases and addresses from another
// container, and sees them go with detach and with the namespace.
func TestDNSNames(t *testing.T) {
	requireRoot(t, "dig", "getent")
	d, _, far := startHost(t, false, "--dns-upstream", farIP, "--host-loopback")
	startUpstream(t, far, farIP)
	webNS, cliNS, tmpNS := dnsNS(t), dnsNS(t), dnsNS(t)
	web := d.attach(t, webNS, "web", "--alias", "www", "--alias", "Www-Two")
	d.attach(t, cliNS, "cli")

	conf, err := os.ReadFile(filepath.Join("/etc/netns", cliNS, "resolv.conf"))
	if err != nil || !strings.Contains(string(conf), "nameserver "+gatewayIP+"\n") || !strings.Contains(string(conf), "search tapswitch\n") {
		t.Fatalf("resolv.conf of %s: %q, %v; want the gateway and the search domain", cliNS, conf, err)
	}
	// Through glibc, the search domain and the resolv.conf attach wrote.
	if out := nsRun(t, cliNS, "getent", "hosts", "web"); !strings.HasPrefix(out, ip(web)+" ") || !strings.Contains(out, "web.tapswitch") {
		t.Errorf("getent hosts web: %q, want %s web.tapswitch", out, ip(web))
	}
	for _, tc := range []struct{ name, want string }{
		{"web.tapswitch", ip(web)},
		{"WWW.tapswitch", ip(web)},
		{"www-two.tapswitch", ip(web)},
		{"web", ip(web)},
		{"gateway.tapswitch", gatewayIP},
		{"host.containers.internal", gatewayIP},
		{"host.tapswitch.internal", gatewayIP},
	} {
		if got := digShort(t, cliNS, tc.name); got != tc.want {
			t.Errorf("dig %s: %q, want %s", tc.name, got, tc.want)
		}
	}
	if got := digShort(t, cliNS, "-x", ip(web)); got != "web.tapswitch." {
		t.Errorf("dig -x %s: %q, want web.tapswitch.", ip(web), got)
	}
	if got := digShort(t, cliNS, "+tcp", "www.tapswitch"); got != ip(web) {
		t.Errorf("dig +tcp www.tapswitch: %q, want %s", got, ip(web))
	}
	for _, tc := range []struct{ args, want string }{
		{"nope.tapswitch", "NXDOMAIN"},
		{"-x 10.90.9.9", "NXDOMAIN"},
		{"web.tapswitch AAAA", "NOERROR"}, // no IPv6 yet: NODATA
	} {
		out := dig(t, cliNS, strings.Fields(tc.args)...)
		if got := status(out); got != tc.want || strings.Contains(out, "ANSWER SECTION") {
			t.Errorf("dig %s: status %q, want %s without answers\n%s", tc.args, got, tc.want, out)
		}
	}

	// Aliases changed through the API.
	if out, errOut, code := d.cli(t, "alias", "web", "api"); code != 0 {
		t.Fatalf("alias web api: exit %d: %s%s", code, out, errOut)
	}
	if got := digShort(t, cliNS, "api.tapswitch"); got != ip(web) {
		t.Errorf("after alias: dig api.tapswitch: %q, want %s", got, ip(web))
	}
	if got := status(dig(t, cliNS, "www.tapswitch")); got != "NXDOMAIN" {
		t.Errorf("after alias: dig www.tapswitch: %q, want NXDOMAIN", got)
	}

	// Detach: the name and the resolv.conf go at once.
	if _, errOut, code := d.cli(t, "detach", "web"); code != 0 {
		t.Fatalf("detach web: %s", errOut)
	}
	if got := status(dig(t, cliNS, "web.tapswitch")); got != "NXDOMAIN" {
		t.Errorf("after detach: dig web.tapswitch: %q, want NXDOMAIN", got)
	}
	if _, err := os.Stat(filepath.Join("/etc/netns", webNS, "resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf of %s after detach: %v, want it removed", webNS, err)
	}

	// The namespace dies: the port goes when its TAP does, and its name.
	tmp := d.attach(t, tmpNS, "tmp")
	if got := digShort(t, cliNS, "tmp.tapswitch"); got != ip(tmp) {
		t.Fatalf("dig tmp.tapswitch: %q, want %s", got, ip(tmp))
	}
	if err := netnsutil.Del(tmpNS); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "tmp's name gone with its namespace", func() bool {
		return status(dig(t, cliNS, "tmp.tapswitch")) == "NXDOMAIN"
	})

	// --pid and --no-resolv-conf: nothing written, the nameserver told.
	noNS := dnsNS(t)
	out, errOut, code := d.cli(t, "attach", "--netns", netnsutil.Path(noNS), "--no-resolv-conf")
	if code != 0 {
		t.Fatalf("attach --no-resolv-conf: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join("/etc/netns", noNS)); !os.IsNotExist(err) {
		t.Errorf("attach --no-resolv-conf wrote /etc/netns/%s (%v)\n%s", noNS, err, out)
	}
	if want := "dns: nameserver " + gatewayIP + ", search tapswitch"; !strings.Contains(out, want) {
		t.Errorf("attach --no-resolv-conf: %q, want it to say %q", out, want)
	}
	st := d.stats(t)
	if st.DNS == nil || st.DNS.Local == 0 || st.DNS.Results["NXDOMAIN"] == 0 || st.DNS.Queries["PTR"] == 0 {
		t.Errorf("stats: dns %+v, want local answers, NXDOMAINs and PTR queries counted", st.DNS)
	}
}

// TestDNSForward forwards to the test's upstream: cached for the TTL,
// served from the cache while the upstream is down, SERVFAIL after; a
// large answer over TCP; negative answers cached (RFC 2308).
func TestDNSForward(t *testing.T) {
	requireRoot(t, "dig")
	d, _, far := startHost(t, false, "--dns-upstream", farIP+":53")
	up := startUpstream(t, far, farIP)
	cliNS := dnsNS(t)
	d.attach(t, cliNS, "cli")

	if got := digShort(t, cliNS, "example.test"); got != exampleIP {
		t.Fatalf("dig example.test: %q, want %s", got, exampleIP)
	}
	asked := up.queries.Load()
	if got := digShort(t, cliNS, "EXAMPLE.test"); got != exampleIP {
		t.Errorf("dig EXAMPLE.test again: %q, want %s", got, exampleIP)
	}
	if n := up.queries.Load(); n != asked {
		t.Errorf("upstream asked %d times after a cached name, want %d", n, asked)
	}

	// NXDOMAIN with an SOA: cached for min(SOA TTL, minimum) = 30 s.
	if got := status(dig(t, cliNS, "nothing.test")); got != "NXDOMAIN" {
		t.Errorf("dig nothing.test: %q, want NXDOMAIN", got)
	}
	asked = up.queries.Load()
	if got := status(dig(t, cliNS, "nothing.test")); got != "NXDOMAIN" {
		t.Errorf("dig nothing.test again: %q, want NXDOMAIN", got)
	}
	if n := up.queries.Load(); n != asked {
		t.Errorf("upstream asked for a negatively cached name: %d queries, want %d", n, asked)
	}

	// A large answer: the upstream truncates it over UDP, the server asks
	// again over TCP; dig without EDNS gets TC and comes back over TCP.
	out := dig(t, cliNS, "+noedns", "big.test", "TXT")
	if got := strings.Count(out, "\tTXT\t"); got != bigTXTs || status(out) != "NOERROR" {
		t.Errorf("dig +noedns big.test TXT: %d TXT records, status %q; want %d, NOERROR\n%s", got, status(out), bigTXTs, out)
	}
	if !strings.Contains(out, "Truncated, retrying in TCP mode") {
		t.Errorf("dig +noedns big.test: no truncated UDP answer first\n%s", out)
	}
	// EDNS0 passed on: with a large buffer the answer fits in UDP.
	out = dig(t, cliNS, "+bufsize=1232", "+ignore", "big.test", "TXT")
	if got := strings.Count(out, "\tTXT\t"); got != bigTXTs || strings.Contains(out, " tc") {
		t.Errorf("dig +bufsize=1232 big.test TXT: %d records, want %d untruncated\n%s", got, bigTXTs, out)
	}

	// Upstream stopped: the cached answer until its TTL runs out, then
	// SERVFAIL, never a hang. (The TTL leaves seconds for the two digs
	// between the fill and the stop on a loaded machine.)
	if got := digShort(t, cliNS, "cached.test"); got != exampleIP {
		t.Fatalf("dig cached.test: %q, want %s", got, exampleIP)
	}
	filled := time.Now() // the server cached it before it answered
	up.stop()
	if got := digShort(t, cliNS, "cached.test"); got != exampleIP {
		t.Errorf("dig cached.test, upstream stopped, within the TTL: %q, want %s from the cache", got, exampleIP)
	}
	time.Sleep(time.Until(filled.Add(exampleTTL*time.Second + 100*time.Millisecond)))
	if got := status(dig(t, cliNS, "cached.test")); got != "SERVFAIL" {
		t.Errorf("dig cached.test after its TTL, upstream stopped: %q, want SERVFAIL", got)
	}
	st := d.stats(t).DNS
	if st == nil || st.CacheHits < 3 || st.TCPRetries == 0 || st.UpstreamErrors == 0 || st.Results["SERVFAIL"] == 0 {
		t.Errorf("stats: dns %+v; want cache hits, a TCP retry, upstream errors and a SERVFAIL counted", st)
	}

	// The uplink side gets no answer: nothing listens on the host's
	// addresses, and the gateway's address is not reachable from there.
	for _, target := range []string{hostVethIP, gatewayIP} {
		out, err := exec.Command("ip", "netns", "exec", far, "dig", "@"+target, "+tries=1", "+time=1", "example.test").CombinedOutput()
		if err == nil || status(string(out)) != "" {
			t.Errorf("dig @%s from the uplink side: %v, want no answer\n%s", target, err, out)
		}
	}
}

// TestDNSScope: a container sees the names of its VLAN only (a trunk those
// of its VLANs), and with --icc=false only its own.
func TestDNSScope(t *testing.T) {
	requireRoot(t, "dig")
	// An upstream on loopback where nothing listens: nothing here is
	// forwarded, and nothing may leave.
	d := startDaemon(t, "--dns-upstream", "127.0.0.1:9", "--metrics", "127.0.0.1:0")
	aNS, bNS, cNS, trNS := dnsNS(t), dnsNS(t), dnsNS(t), dnsNS(t)
	d.attach(t, aNS, "a")
	b := d.attach(t, bNS, "b")
	c := d.attach(t, cNS, "c", "--vlan", "20")
	d.attach(t, trNS, "tr", "--trunk", "20")
	if got := digShort(t, aNS, "b.tapswitch"); got != ip(b) {
		t.Errorf("a: dig b.tapswitch: %q, want %s", got, ip(b))
	}
	if got := status(dig(t, aNS, "c.tapswitch")); got != "NXDOMAIN" {
		t.Errorf("a (VLAN 1): dig c.tapswitch (VLAN 20): %q, want NXDOMAIN", got)
	}
	if got := status(dig(t, aNS, "-x", ip(c))); got != "NXDOMAIN" {
		t.Errorf("a (VLAN 1): dig -x %s (VLAN 20): %q, want NXDOMAIN", ip(c), got)
	}
	if got := digShort(t, trNS, "c.tapswitch"); got != ip(c) {
		t.Errorf("tr (trunk 20): dig c.tapswitch: %q, want %s", got, ip(c))
	}

	// The counters, in /metrics.
	mf := scrapeMetrics(t, metricsURL(t, d))
	counter := func(name, label, value string) float64 {
		for _, m := range mf[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	if a, nx, local := counter("tapswitch_dns_queries_total", "type", "A"), counter("tapswitch_dns_responses_total", "rcode", "NXDOMAIN"),
		mf["tapswitch_dns_local_answers_total"].GetMetric(); a < 3 || nx < 2 || len(local) != 1 || local[0].GetCounter().GetValue() < 4 {
		t.Errorf("/metrics: A queries %v, NXDOMAIN %v, local answers %v; want at least 3, 2, 4 (the digs above)", a, nx, local)
	}
	if h := mf["tapswitch_dns_upstream_latency_seconds"]; h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("/metrics: no upstream latency histogram: %v", h)
	}

	iso := startDaemon(t, "--icc=false", "--dns-upstream", "127.0.0.1:9", "--subnet", "10.91.0.0/16")
	xNS, yNS := dnsNS(t), dnsNS(t)
	x := iso.attach(t, xNS, "x")
	iso.attach(t, yNS, "y")
	if got := strings.TrimSpace(digAt(t, xNS, "10.91.0.1", "+short", "x.tapswitch")); got != ip(x) {
		t.Errorf("--icc=false: x: dig x.tapswitch (itself): %q, want %s", got, ip(x))
	}
	if out := digAt(t, xNS, "10.91.0.1", "y.tapswitch"); status(out) != "NXDOMAIN" {
		t.Errorf("--icc=false: x: dig y.tapswitch: %q, want NXDOMAIN\n%s", status(out), out)
	}
}
