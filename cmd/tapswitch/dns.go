package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/daemon"
	"github.com/tapswitch/tapswitch/dns"
)

// dnsFlags are run's flags for the embedded DNS server.
type dnsFlags struct {
	on        *bool
	domain    *string
	rate      *int
	upstreams stringList
}

func (f *dnsFlags) add(fs *flag.FlagSet) {
	f.on = fs.Bool("dns", true, "serve DNS on the gateway's address (UDP and TCP port 53) to the containers: their names, and the rest forwarded")
	f.domain = fs.String("dns-domain", dns.DefaultDomain, "the containers' DNS domain")
	f.rate = fs.Int("dns-rate", dns.DefaultRate, "DNS queries per second each container may send (a burst of as many); more are dropped")
	fs.Var(&f.upstreams, "dns-upstream", "forward to the resolver at `ADDR[:PORT]` (repeatable; default: those of /etc/resolv.conf)")
}

// apply sets cfg.DNS from the flags.
func (f *dnsFlags) apply(cfg *daemon.Config) error {
	if !*f.on {
		if len(f.upstreams) > 0 || *f.domain != dns.DefaultDomain {
			return usagef("--dns-upstream and --dns-domain need --dns")
		}
		return nil
	}
	if _, err := dns.CheckDomain(*f.domain); err != nil {
		return usagef("--dns-domain: %v", err)
	}
	if *f.rate < 1 {
		return usagef("--dns-rate %d: must be positive", *f.rate)
	}
	c := &daemon.DNSConfig{Domain: *f.domain, Rate: *f.rate}
	for _, s := range f.upstreams {
		ap, err := dns.ParseUpstream(s)
		if err != nil {
			return usagef("--dns-upstream: %v", err)
		}
		c.Upstreams = append(c.Upstreams, ap)
	}
	cfg.DNS = c
	return nil
}

// printDNS tells how the container of p finds the DNS server: the
// resolv.conf attach wrote, or, for --pid and other namespaces, what to
// put in one.
func printDNS(stdout io.Writer, c *api.Client, p api.Port) {
	if p.ResolvConf != "" {
		fmt.Fprintf(stdout, "dns: wrote %s\n", p.ResolvConf)
		return
	}
	ctx, cancel := timeout()
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil || info.DNS == nil {
		return
	}
	ns := info.DNS.Nameserver
	if info.DNS.Nameserver6 != "" {
		ns += " and " + info.DNS.Nameserver6
	}
	fmt.Fprintf(stdout, "dns: nameserver %s, search %s (put them in the container's resolv.conf)\n",
		ns, strings.Join(info.DNS.Search, " "))
}

// cmdAlias sets the DNS aliases of a port.
func cmdAlias(args []string, stdout io.Writer) error {
	control, pos, err := controlArgs("alias", args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return usagef("give a port name, then its aliases (none removes them)")
	}
	ctx, cancel := timeout()
	defer cancel()
	p, err := client(control).SetAliases(ctx, pos[0], pos[1:])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: aliases %s\n", p.Name, strings.Join(p.Aliases, " "))
	return nil
}

// printDNSStats prints the DNS server's counters on a few lines.
func printDNSStats(w io.Writer, d api.DNSStats) {
	kv := func(m map[string]uint64, order []string) string {
		var parts []string
		for _, k := range order {
			if m[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
			}
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "dns: queries %s; answers %s\n", kv(d.Queries, dns.QueryTypes), kv(d.Results, dns.Results))
	avg := 0.0
	var n uint64
	for _, v := range d.UpstreamLatency {
		n += v
	}
	if n > 0 {
		avg = d.UpstreamLatencySum / float64(n) * 1000
	}
	fmt.Fprintf(w, "dns: local %d; cache hits %d, misses %d, entries %d; upstream %d (avg %.2f ms), errors %d, tcp retries %d; malformed %d, rate limited %d, truncated %d\n",
		d.Local, d.CacheHits, d.CacheMisses, d.CacheEntries, d.Upstream, avg, d.UpstreamErrors, d.TCPRetries, d.Malformed, d.RateLimited, d.Truncated)
}
