package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// cmdDemo runs tapswitch end to end on network namespaces it creates, and
// removes everything it made, also when it fails or is interrupted. Its
// traffic goes only to addresses inside those namespaces.
func cmdDemo(args []string, stdout io.Writer) error {
	fs := newFlags("demo")
	containers := fs.Int("containers", 3, "how many namespaces to attach as containers (2 to 9)")
	if err := parseNone(fs, args); err != nil {
		return err
	}
	if *containers < 2 || *containers > 9 {
		return usagef("--containers %d: must be between 2 and 9", *containers)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces and TAP devices and needs root: run `sudo make demo`")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the demo needs %s: run `sudo make deps` first", tool)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d := &demo{out: stdout, ctx: ctx, prefix: fmt.Sprintf("tsdemo%d", os.Getpid())}
	defer d.cleanup()
	return d.run(*containers)
}

type demo struct {
	out    io.Writer
	ctx    context.Context
	prefix string
	dir    string
	daemon *exec.Cmd
	exited chan error
	client *api.Client
	ns     []string // namespaces created, to delete
	// upstream is the demo's own DNS resolver (demo_dns.go).
	upstream *dns.Server
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.out, format+"\n", a...) }

func (d *demo) run(n int) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "tapswitch-demo-"); err != nil {
		return err
	}
	sock := filepath.Join(d.dir, "tapswitch.sock")
	// The outside world: a "lan" namespace, on the other end of the
	// switch's routed TAP uplink.
	lan := d.prefix + "lan"
	if err := netnsutil.Add(lan); err != nil {
		return err
	}
	d.ns = append(d.ns, lan)
	d.say("$ ip netns add %s", lan)
	uplinkSpec := "tap,netns=" + netnsutil.Path(lan) + ",ifname=ts0,ip=" + demoUplinkIP + "/24,gw=" + demoLanIP
	upstream, err := d.startUpstream()
	if err != nil {
		return err
	}
	if err := d.startDaemon(sock, "--uplink", uplinkSpec, "--dns-upstream", upstream); err != nil {
		return err
	}
	d.say("$ ip -n %s addr add %s/24 dev ts0", lan, demoLanIP)
	if out, err := exec.Command("ip", "-n", lan, "addr", "add", demoLanIP+"/24", "dev", "ts0").CombinedOutput(); err != nil {
		return fmt.Errorf("ip addr add in %s: %v: %s", lan, err, strings.TrimSpace(string(out)))
	}
	info, err := d.client.Info(d.ctx)
	if err != nil {
		return err
	}
	d.say("== tapswitch %s running (pid %d): subnet %s, gateway %s (%s)", info.Version, info.PID, info.Subnet, info.Gateway, info.GatewayMAC)
	d.say("   uplink %s", info.Uplink)

	var ports []api.Port
	d.say("\n== attaching %d network namespaces as containers", n)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("c%d", i)
		ns := d.prefix + name
		if err := netnsutil.Add(ns); err != nil {
			return err
		}
		d.ns = append(d.ns, ns)
		d.say("$ ip netns add %s", ns)
		req := api.AttachRequest{Netns: netnsutil.Path(ns), Name: name}
		if i == 1 {
			req.Publish = []string{"8080:80"}
			d.say("$ tapswitch attach --netns %s --name %s -p 8080:80", netnsutil.Path(ns), name)
		} else {
			d.say("$ tapswitch attach --netns %s --name %s", netnsutil.Path(ns), name)
		}
		p, err := d.client.Attach(d.ctx, req)
		if err != nil {
			return err
		}
		d.say("  attached %s: %s, mac %s, ip %s", p.Name, p.IfName, p.MAC, p.IP)
		ports = append(ports, p)
	}

	d.say("\n== ping every pair and the gateway (ping -c 3)")
	for _, from := range ports {
		targets := []string{info.Gateway}
		names := []string{"gateway"}
		for _, to := range ports {
			if to.Name != from.Name {
				targets = append(targets, addrOf(to.IP))
				names = append(names, to.Name)
			}
		}
		for i, ip := range targets {
			line, err := d.ping(d.prefix+from.Name, ip)
			if err != nil {
				return fmt.Errorf("%s -> %s (%s): %w", from.Name, names[i], ip, err)
			}
			d.say("  %-3s -> %-8s %-12s %s", from.Name, names[i], ip, line)
		}
	}

	server, client := ports[0], ports[1]
	if err := d.dnsDemo(client, server); err != nil {
		return err
	}
	d.say("\n== HTTP: a server in %s on port 80, fetched from %s", server.Name, client.Name)
	url := "http://" + addrOf(server.IP) + "/"
	body, err := d.http(d.prefix+server.Name, d.prefix+client.Name, server, url)
	if err != nil {
		return err
	}
	d.say("  GET %s from %s: %s", url, client.Name, body)

	d.say("\n== NAT: %s's port 80 published as %s:8080, fetched from the lan namespace", server.Name, demoUplinkIP)
	url = "http://" + demoUplinkIP + ":8080/"
	d.say("  (what `ip netns exec %s curl %s` does)", lan, url)
	body, err = d.http(d.prefix+server.Name, lan, server, url)
	if err != nil {
		return err
	}
	d.say("  GET %s from lan: %s", url, body)
	d.say("$ ip netns exec %s ping -c 3 %s   # out through the uplink, masqueraded", d.prefix+client.Name, demoLanIP)
	line, err := d.ping(d.prefix+client.Name, demoLanIP)
	if err != nil {
		return fmt.Errorf("%s -> lan (%s): %w", client.Name, demoLanIP, err)
	}
	d.say("  %s -> lan %s: %s", client.Name, demoLanIP, strings.Replace(line, " replies", " echo replies", 1))
	d.say("\n$ tapswitch conntrack")
	flows, err := d.client.Conntrack(d.ctx)
	if err != nil {
		return err
	}
	printConntrack(d.out, flows)

	d.say("\n$ tapswitch ports")
	all, err := d.client.Ports(d.ctx)
	if err != nil {
		return err
	}
	printPorts(d.out, all)
	d.say("\n$ tapswitch fdb")
	entries, err := d.client.FDB(d.ctx)
	if err != nil {
		return err
	}
	printFDB(d.out, entries)

	last := ports[len(ports)-1].Name
	d.say("\n$ tapswitch detach %s", last)
	if err := d.client.Detach(d.ctx, last); err != nil {
		return err
	}
	out, _ := exec.Command("ip", "-n", d.prefix+last, "-br", "link").CombinedOutput()
	d.say("  links left in %s: %s", d.prefix+last, strings.Join(strings.Fields(string(out)), " "))
	if err := d.captureDemo(ports[0], ports[1]); err != nil {
		return err
	}
	d.say("\n== demo passed; removing the daemon and the namespaces")
	return nil
}

// The addresses of the demo's uplink link: the lan namespace and the
// switch.
const (
	demoLanIP    = "198.51.100.1"
	demoUplinkIP = "198.51.100.2"
)

// startDaemon starts `tapswitch run` on sock with extra arguments and waits
// until it answers.
func (d *demo) startDaemon(sock string, extra ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "daemon.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	d.say("$ tapswitch run --control %s %s &", sock, strings.Join(extra, " "))
	d.daemon = exec.Command(self, append([]string{"run", "--control", sock}, extra...)...)
	d.daemon.Stdout, d.daemon.Stderr = logf, logf
	// Its own process group: a Ctrl-C reaches the demo, which stops the
	// daemon itself, in order.
	d.daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.daemon.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.daemon.Wait() }()
	d.client = api.NewClient(sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(d.ctx, time.Second)
		_, err := d.client.Info(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			return fmt.Errorf("daemon exited (%v): %s", werr, d.daemonLog())
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not answer within 10s: %w", err)
		}
	}
}

func (d *demo) daemonLog() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "daemon.log"))
	return strings.TrimSpace(string(b))
}

var pingRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received.*\n.*= [\d.]+/([\d.]+)/`)

// ping runs ping in the namespace and returns a one-line summary.
func (d *demo) ping(ns, ip string) (string, error) {
	ctx, cancel := context.WithTimeout(d.ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", ip).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ping: %v: %s", err, strings.TrimSpace(string(out)))
	}
	m := pingRE.FindStringSubmatch(string(out))
	if m == nil {
		return strings.TrimSpace(string(out)), nil
	}
	return fmt.Sprintf("%s/%s replies, rtt avg %s ms", m[2], m[1], m[3]), nil
}

// http serves one page from a listener opened inside serverNS and fetches
// url with a connection dialed from inside clientNS.
func (d *demo) http(serverNS, clientNS string, server api.Port, url string) (string, error) {
	var ln net.Listener
	err := netnsutil.Do(netnsutil.Path(serverNS), func() (err error) {
		ln, err = net.Listen("tcp4", ":80")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("listen in %s: %w", serverNS, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s; you are %s\n", server.Name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netnsutil.Do(netnsutil.Path(clientNS), func() error {
			var dl net.Dialer
			c, err = dl.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch from %s: %w", clientNS, err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	return resp.Status + ": " + strings.TrimSpace(line), nil
}

// cleanup stops the daemon (which removes its TAPs) and deletes the
// namespaces and files the demo made.
func (d *demo) cleanup() {
	if d.daemon != nil && d.daemon.Process != nil {
		d.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				fmt.Fprintf(d.out, "daemon exited with %v: %s\n", err, d.daemonLog())
			}
		case <-time.After(10 * time.Second):
			d.daemon.Process.Kill()
			<-d.exited
			fmt.Fprintln(d.out, "daemon did not stop within 10s after SIGTERM; killed")
		}
	}
	if d.upstream != nil {
		d.upstream.Shutdown()
	}
	for _, ns := range d.ns {
		if err := netnsutil.Del(ns); err != nil {
			fmt.Fprintln(d.out, err)
		}
		os.RemoveAll(filepath.Join("/etc/netns", ns)) // the daemon removes what it wrote; in case it could not
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// addrOf strips the prefix length from "10.90.0.2/16".
func addrOf(cidr string) string {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		return p.Addr().String()
	}
	return cidr
}
