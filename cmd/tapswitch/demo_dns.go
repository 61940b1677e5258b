package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"

	"github.com/tapswitch/tapswitch/api"
)

// The demo's own upstream resolver, on this namespace's loopback: the
// daemon forwards to it (--dns-upstream), never to the machine's resolvers.
const (
	demoForwardName = "www.example.test"
	demoForwardIP   = "198.51.100.80"
)

// startUpstream serves demoForwardName on a UDP port of 127.0.0.1 and
// returns its address; cleanup stops it.
func (d *demo) startUpstream() (string, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo dns upstream: %w", err)
	}
	d.upstream = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; strings.EqualFold(q.Name, demoForwardName+".") && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.ParseIP(demoForwardIP)}}
		} else if len(r.Question) == 1 && !strings.EqualFold(q.Name, demoForwardName+".") {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go d.upstream.ActivateAndServe()
	return pc.LocalAddr().String(), nil
}

// dnsDemo resolves a container's name, its address and a forwarded name
// from another container, through the resolv.conf attach wrote.
func (d *demo) dnsDemo(from, to api.Port) error {
	ns := d.prefix + from.Name
	d.say("\n== DNS on the gateway: attach wrote /etc/netns/%s/resolv.conf", ns)
	conf, err := os.ReadFile(filepath.Join("/etc/netns", ns, "resolv.conf"))
	if err != nil {
		return fmt.Errorf("resolv.conf of %s: %w", ns, err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(conf)), "\n") {
		d.say("  %s", l)
	}
	for _, c := range []struct{ args, want string }{
		{"hosts " + to.Name, addrOf(to.IP)},
		{"hosts " + addrOf(to.IP), to.Name + ".tapswitch"},
		{"hosts " + demoForwardName, demoForwardIP},
	} {
		d.say("$ ip netns exec %s getent %s", ns, c.args)
		out, err := exec.CommandContext(d.ctx, "ip", append([]string{"netns", "exec", ns, "getent"}, strings.Fields(c.args)...)...).CombinedOutput()
		line := strings.Join(strings.Fields(string(out)), " ")
		if err != nil || !strings.Contains(line, c.want) {
			return fmt.Errorf("getent %s in %s: %q (%v), want %s", c.args, ns, line, err, c.want)
		}
		d.say("  %s", line)
	}
	d.say("  (%s came from the demo's own upstream resolver on 127.0.0.1, through the gateway)", demoForwardName)
	return nil
}
