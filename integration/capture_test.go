package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tapswitch/tapswitch/api"
)

// capturing is a `tapswitch capture` process started by a test.
type capturing struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// startCapture runs `tapswitch capture ARGS` with stdout to out, and waits
// until the daemon lists one more running capture. The test's cleanup kills
// it if it is still running.
func (d *daemon) startCapture(t *testing.T, out io.Writer, args ...string) *capturing {
	t.Helper()
	before := len(d.captures(t))
	c := &capturing{stderr: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(bin, append([]string{"capture", "--control", d.sock}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = out, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-c.done:
			c.done <- err
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	eventually(t, 10*time.Second, "capture running", func() bool {
		select {
		case err := <-c.done:
			t.Fatalf("capture exited (%v): %s", err, c.stderr.String())
		default:
		}
		return len(d.captures(t)) > before
	})
	return c
}

// stop sends SIGINT (Ctrl-C), waits for the capture to exit and returns its
// stderr; the exit status must be 0.
func (c *capturing) stop(t *testing.T) string {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	return c.wait(t)
}

func (c *capturing) wait(t *testing.T) string {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("capture: %v\n%s", err, c.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("capture did not end within 15s:\n%s", c.stderr.String())
	}
	return c.stderr.String()
}

func (d *daemon) captures(t *testing.T) []api.CaptureInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := d.client.Captures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// packet is a captured packet, decoded.
type packet struct {
	iface string
	dir   pcapgo.NgEpbFlag
	data  []byte
}

// icmpEcho describes an ICMP echo request or reply: "10.90.0.2 > 10.90.0.3
// request", or "" for anything else.
func (p packet) icmpEcho() string {
	pk := gopacket.NewPacket(p.data, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil {
		return ""
	}
	switch icmp.TypeCode.Type() {
	case layers.ICMPv4TypeEchoRequest:
		return fmt.Sprintf("%s > %s request", ip.SrcIP, ip.DstIP)
	case layers.ICMPv4TypeEchoReply:
		return fmt.Sprintf("%s > %s reply", ip.SrcIP, ip.DstIP)
	}
	return ""
}

// readPCAPNGFile reads every packet of the pcapng file, and checks that it
// has the one interface iface.
func readPCAPNGFile(t *testing.T, file, iface string) []packet {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkts, names := readPCAPNG(t, f)
	if len(names) != 1 || names[0] != iface {
		t.Errorf("interfaces: %v, want [%s]", names, iface)
	}
	return pkts
}

// readPCAPNG reads every packet of a pcapng stream, and the names of its
// interfaces.
func readPCAPNG(t *testing.T, r io.Reader) ([]packet, []string) {
	t.Helper()
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("not a pcapng file: %v", err)
	}
	var pkts []packet
	for {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("pcapng after %d packets: %v", len(pkts), err)
		}
		intf, _ := ng.Interface(ci.InterfaceIndex)
		p := packet{iface: intf.Name, data: data}
		if opts.Flags != nil {
			p.dir = opts.Flags.Direction
		}
		pkts = append(pkts, p)
	}
	var names []string
	for i := range ng.NInterfaces() {
		intf, _ := ng.Interface(i)
		if intf.LinkType != layers.LinkTypeEthernet {
			t.Errorf("interface %s: link type %v, want Ethernet", intf.Name, intf.LinkType)
		}
		names = append(names, intf.Name)
	}
	return pkts, names
}

// tcpdumpRead lists a capture file with tcpdump -r, if tcpdump is installed
// (make deps installs it; in CI it must be there).
func tcpdumpRead(t *testing.T, file string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: tcpdump is not installed (make deps installs it)")
		}
		t.Log("tcpdump not installed: the file is only checked with pcapgo")
		return "", false
	}
	out, err := exec.Command("tcpdump", "-nn", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, out)
	}
	return string(out), true
}

func twoContainers(t *testing.T, args ...string) (*daemon, []string, []api.Port) {
	t.Helper()
	d := startDaemon(t, args...)
	ns := []string{newNS(t), newNS(t)}
	ports := []api.Port{d.attach(t, ns[0], "c1"), d.attach(t, ns[1], "c2")}
	return d, ns, ports
}

var summaryRE = regexp.MustCompile(`(\d+) packets captured\n(\d+) packets received by filter\n(\d+) packets dropped`)

// TestCapturePing captures c1 to a file while c1 pings c2, stops with
// Ctrl-C, and finds the echo requests and replies in the file, with the
// right addresses and directions.
func TestCapturePing(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t)
	file := filepath.Join(t.TempDir(), "c1.pcapng")
	c := d.startCapture(t, nil, "c1", "-w", file)
	ping(t, ns[0], ip(ports[1]))
	stderr := c.stop(t)
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil || m[1] == "0" || m[3] != "0" {
		t.Errorf("capture summary: %q, want packets captured and none dropped", stderr)
	}
	pkts := readPCAPNGFile(t, file, "c1")
	req := fmt.Sprintf("%s > %s request", ip(ports[0]), ip(ports[1]))
	rep := fmt.Sprintf("%s > %s reply", ip(ports[1]), ip(ports[0]))
	var reqs, reps int
	for _, p := range pkts {
		switch p.icmpEcho() {
		case req:
			reqs++
			if p.dir != pcapgo.NgEpbFlagDirectionInbound {
				t.Errorf("echo request from c1: direction %v, want inbound (the switch received it)", p.dir)
			}
		case rep:
			reps++
			if p.dir != pcapgo.NgEpbFlagDirectionOutbound {
				t.Errorf("echo reply to c1: direction %v, want outbound", p.dir)
			}
		}
	}
	if reqs != 2 || reps != 2 {
		t.Errorf("echo requests %d, replies %d in the capture; want 2 and 2", reqs, reps)
	}
	if m != nil && m[1] != fmt.Sprint(len(pkts)) {
		t.Errorf("summary says %s packets captured, the file has %d", m[1], len(pkts))
	}
	if out, ok := tcpdumpRead(t, file); ok {
		for _, want := range []string{
			fmt.Sprintf("IP %s > %s: ICMP echo request", ip(ports[0]), ip(ports[1])),
			fmt.Sprintf("IP %s > %s: ICMP echo reply", ip(ports[1]), ip(ports[0])),
		} {
			if strings.Count(out, want) != 2 {
				t.Errorf("tcpdump -r lists %q %d times, want 2:\n%s", want, strings.Count(out, want), out)
			}
		}
	}
}

// TestCaptureLivePipe reads `tapswitch capture -w -` while it runs, as
// `| tshark -r -` would: the packets arrive before the capture ends.
func TestCaptureLivePipe(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	c := d.startCapture(t, pw, "gateway", "-w", "-", "icmp")
	pw.Close()
	type result struct {
		echo string
		err  error
	}
	got := make(chan result, 8)
	go func() {
		ng, err := pcapgo.NewNgReader(pr, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			got <- result{err: err}
			return
		}
		for {
			data, _, err := ng.ReadPacketData()
			if err != nil {
				got <- result{err: err}
				return
			}
			got <- result{echo: packet{data: data}.icmpEcho()}
		}
	}()
	ping(t, ns[0], "10.90.0.1")
	want := map[string]bool{
		fmt.Sprintf("%s > 10.90.0.1 request", ip(ports[0])): false,
		fmt.Sprintf("10.90.0.1 > %s reply", ip(ports[0])):   false,
	}
	deadline := time.After(10 * time.Second)
	for seen := 0; seen < 4; seen++ {
		select {
		case r := <-got:
			if r.err != nil {
				t.Fatalf("reading the live stream: %v", r.err)
			}
			if _, ok := want[r.echo]; !ok {
				t.Errorf("unexpected packet through the icmp filter: %q", r.echo)
			}
			want[r.echo] = true
		case <-deadline:
			t.Fatalf("the live stream delivered %d of 4 packets while the capture ran", seen)
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("live stream lacks %s", k)
		}
	}
	c.stop(t)
	if r := <-got; r.err != io.EOF {
		t.Errorf("end of the live stream: %v, want EOF", r.err)
	}
}

// TestCaptureAll checks that --all gives one interface per port, and that a
// frame forwarded between containers shows up at both ports.
func TestCaptureAll(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t)
	var out bytes.Buffer
	c := d.startCapture(t, &out, "--all", "-w", "-")
	ping(t, ns[0], ip(ports[1]))
	c.stop(t)
	pkts, names := readPCAPNG(t, &out)
	if strings.Join(names, ",") != "gateway,c1,c2" {
		t.Errorf("interfaces: %v, want [gateway c1 c2]", names)
	}
	req := fmt.Sprintf("%s > %s request", ip(ports[0]), ip(ports[1]))
	at := map[string]int{}
	for _, p := range pkts {
		if p.icmpEcho() == req {
			at[p.iface]++
		}
	}
	if at["c1"] != 2 || at["c2"] != 2 || at["gateway"] != 0 {
		t.Errorf("echo requests c1 -> c2 seen at %v; want 2 at c1 (in) and 2 at c2 (out)", at)
	}
}

// TestCaptureFilter checks that a filter keeps only matching frames, here
// in the pcap format and with -c.
func TestCaptureFilter(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t)
	file := filepath.Join(t.TempDir(), "c1.pcap")
	c := d.startCapture(t, nil, "c1", "-w", file, "--format", "pcap", "-c", "4", "icmp and host", ip(ports[1]))
	ping(t, ns[0], "10.90.0.1") // not kept: the gateway is not c2
	ping(t, ns[0], ip(ports[1]))
	stderr := c.wait(t) // -c 4 ends it
	if m := summaryRE.FindStringSubmatch(stderr); m == nil || m[1] != "4" {
		t.Errorf("summary %q, want 4 packets captured", stderr)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("not a pcap file: %v", err)
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		e := packet{data: data}.icmpEcho()
		if !strings.Contains(e, ip(ports[1])) {
			t.Errorf("packet %d is not an echo with c2: %q", n, e)
		}
	}
	if n != 4 {
		t.Errorf("packets in the file: %d, want 4", n)
	}
	if out, ok := tcpdumpRead(t, file); ok {
		if strings.Contains(out, "10.90.0.1") || strings.Contains(out, "ARP") || strings.Count(out, "ICMP echo") != 4 {
			t.Errorf("tcpdump -r: want 4 ICMP echoes with c2 only:\n%s", out)
		}
	}
	if _, errOut, code := d.cli(t, "capture", "c1", "-w", "-", "icmp", "and", "port"); code != 2 || !strings.Contains(errOut, "bad filter") {
		t.Errorf("bad filter: exit %d, %q; want 2 and the reason", code, errOut)
	}
}

// TestCaptureSlowReader opens a capture and never reads it: forwarding goes
// on at full speed, and the frames the capture has no room for are counted
// as dropped from it.
func TestCaptureSlowReader(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t)
	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/capture?port=c1 HTTP/1.1\r\nHost: tapswitch\r\n\r\n")
	eventually(t, 10*time.Second, "capture running", func() bool { return len(d.captures(t)) == 1 })

	sent, got := transfer(t, ns[0], ns[1], ip(ports[1]), 32<<20, nil)
	if sent != got {
		t.Fatal("the transfer was corrupted")
	}
	ping(t, ns[0], ip(ports[1]))
	cs := d.captures(t)
	if len(cs) != 1 || len(cs[0].Interfaces) != 1 {
		t.Fatalf("captures: %+v", cs)
	}
	if i := cs[0].Interfaces[0]; i.Dropped == 0 || i.Received <= i.Dropped {
		t.Errorf("capture of c1: received %d, dropped %d; want drops counted", i.Received, i.Dropped)
	}
	out, _, code := d.cli(t, "stats")
	if code != 0 || !strings.Contains(out, "CAPTURE-DROPPED") {
		t.Errorf("stats: exit %d\n%s", code, out)
	}
	conn.Close()
	eventually(t, 10*time.Second, "capture ended after its client left", func() bool { return len(d.captures(t)) == 0 })
}

// metricsURL waits for the daemon d to log where it serves /metrics, and
// returns that URL.
func metricsURL(t *testing.T, d *daemon) string {
	t.Helper()
	var url string
	re := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/metrics)`)
	eventually(t, 5*time.Second, "metrics address in the daemon's log", func() bool {
		m := re.FindStringSubmatch(d.log.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

// scrapeMetrics gets url and parses it with the Prometheus text parser.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mf
}

// TestMetrics scrapes /metrics, parses it with the Prometheus text parser,
// and checks that counters move with traffic.
func TestMetrics(t *testing.T) {
	requireRoot(t, "ping")
	d, ns, ports := twoContainers(t, "--metrics", "127.0.0.1:0")
	url := metricsURL(t, d)
	scrape := func() map[string]*dto.MetricFamily { return scrapeMetrics(t, url) }
	val := func(mf map[string]*dto.MetricFamily, name, label, value string) float64 {
		for _, m := range mf[name].GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no metric %s{%s=%q}", name, label, value)
		return 0
	}
	before := scrape()
	ping(t, ns[0], ip(ports[1]))
	ping(t, ns[0], "10.90.0.1")
	// A write's counters are updated when it returns, which can be after
	// ping has its reply: allow them a moment.
	var after map[string]*dto.MetricFamily
	var stale []string
	eventually(t, 5*time.Second, "counters moving with two pings", func() bool {
		after, stale = scrape(), nil
		for _, m := range [][3]string{
			{"tapswitch_port_rx_packets_total", "port", "c1"},
			{"tapswitch_port_rx_bytes_total", "port", "c1"},
			{"tapswitch_port_tx_packets_total", "port", "c2"},
			{"tapswitch_port_tx_packets_total", "port", "gateway"},
			{"tapswitch_gateway_icmp_echo_replies_total", "", ""},
		} {
			if b, a := val(before, m[0], m[1], m[2]), val(after, m[0], m[1], m[2]); a < b+2 {
				stale = append(stale, fmt.Sprintf("%s{%s=%q}: %v before, %v after", m[0], m[1], m[2], b, a))
			}
		}
		if len(stale) > 0 {
			t.Log(stale)
		}
		return len(stale) == 0
	})
	if v := val(after, "tapswitch_fdb_entries", "", ""); v != 3 {
		t.Errorf("tapswitch_fdb_entries %v, want 3 (gateway, c1, c2)", v)
	}
	if v := val(after, "tapswitch_ports", "", ""); v != 3 {
		t.Errorf("tapswitch_ports %v, want 3", v)
	}
}

// TestCaptureUplink captures at the uplink while a container pings the lan:
// the file holds the packets after NAT, from the uplink's address, as
// tcpdump behind MASQUERADE would show them.
func TestCaptureUplink(t *testing.T) {
	requireRoot(t, "ping")
	d, _ := startNAT(t)
	c1 := newNS(t)
	p1 := d.attach(t, c1, "c1")
	ping(t, c1, lanIP) // resolve the next hop first: the capture holds the echoes alone
	file := filepath.Join(t.TempDir(), "uplink.pcapng")
	c := d.startCapture(t, nil, "uplink", "-w", file, "icmp")
	ping(t, c1, lanIP)
	c.stop(t)
	pkts := readPCAPNGFile(t, file, "uplink")
	want := map[string]int{
		fmt.Sprintf("%s > %s request", upIP, lanIP): 2,
		fmt.Sprintf("%s > %s reply", lanIP, upIP):   2,
	}
	got := map[string]int{}
	for _, p := range pkts {
		got[p.icmpEcho()]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%q: %d in the capture, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if got[fmt.Sprintf("%s > %s request", ip(p1), lanIP)] != 0 {
		t.Errorf("the container's own address leaked to the uplink: %v", got)
	}
}
