package dns

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Host is one attached container as the server names it. The caller owns
// Host values; SetHosts copies what it keeps.
type Host struct {
	// Name is the port's name, a DNS label (Docker's container name rule
	// is stricter).
	Name string
	// Aliases are further names of the port (attach --alias).
	Aliases []string
	// IPv4 is the port's address.
	IPv4 netip.Addr
	// IPv6 is the port's IPv6 address; zero until the switch has IPv6,
	// and then AAAA queries are answered from it.
	IPv6 netip.Addr
	// VLANs are the VLANs the port is on: its access VLAN, or its trunk's
	// native and tagged VLANs. Two ports see each other's names when
	// they share one.
	VLANs []uint16
}

// Names of the host's loopback, as podman (host.containers.internal) and
// Docker Desktop (host.docker.internal) call it; the first is tapswitch's.
var hostLoopbackNames = []string{"host.tapswitch.internal.", "host.containers.internal."}

// zone is an immutable snapshot of the local names, swapped whole by
// SetHosts.
type zone struct {
	domain  string // lower-case FQDN, e.g. "tapswitch."
	hosts   []Host
	names   map[string][]int // lower-case label -> indexes into hosts
	byIP    map[netip.Addr]int
	gateway netip.Addr
	subnet  netip.Prefix
	// gateway6 and subnet6 are Config's Addr6 and Subnet6, zero
	// without IPv6.
	gateway6 netip.Addr
	subnet6  netip.Prefix
	soa      *dns.SOA
	hostLo   bool
	isolate  bool
	gen      uint64 // numbers the zones of a server (packed.go)
}

// newZone builds the snapshot of hosts. Names are compared without case
// (RFC 4343).
func newZone(c *Config, hosts []Host, gen uint64) *zone {
	z := &zone{
		gen:      gen,
		domain:   c.Domain,
		names:    make(map[string][]int, 2*len(hosts)),
		byIP:     make(map[netip.Addr]int, len(hosts)),
		gateway:  c.Addr,
		subnet:   c.Subnet,
		gateway6: c.Addr6,
		subnet6:  c.Subnet6,
		hostLo:   c.HostLoopback,
		isolate:  c.Isolate,
	}
	z.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 0},
		Ns:      "gateway." + z.domain,
		Mbox:    "hostmaster." + z.domain,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: 0, // negative answers are not cached: names come and go
	}
	for _, h := range hosts {
		h.Aliases = slices.Clone(h.Aliases)
		h.VLANs = slices.Clone(h.VLANs)
		i := len(z.hosts)
		z.hosts = append(z.hosts, h)
		for _, n := range append([]string{h.Name}, h.Aliases...) {
			n = strings.ToLower(n)
			if !slices.Contains(z.names[n], i) {
				z.names[n] = append(z.names[n], i)
			}
		}
		if h.IPv4.IsValid() {
			z.byIP[h.IPv4] = i
		}
		if h.IPv6.IsValid() {
			z.byIP[h.IPv6] = i
		}
	}
	return z
}

// apexSOA returns a copy of the zone's SOA record named name, which is the
// domain in the client's spelling when it asked for the apex (as every
// other local answer is named as asked) and the domain otherwise.
func (z *zone) apexSOA(name string) *dns.SOA {
	soa := *z.soa
	if strings.EqualFold(name, z.domain) {
		soa.Hdr.Name = name
	}
	return &soa
}

// visible reports whether the client at index c (-1: not a port) may see
// the host at index t.
func (z *zone) visible(c, t int) bool {
	if c < 0 {
		return false
	}
	if c == t {
		return true
	}
	if z.isolate {
		return false
	}
	for _, v := range z.hosts[c].VLANs {
		if slices.Contains(z.hosts[t].VLANs, v) {
			return true
		}
	}
	return false
}

// client returns the index of the host at addr, or -1.
func (z *zone) client(addr netip.Addr) int {
	if i, ok := z.byIP[addr.Unmap()]; ok {
		return i
	}
	return -1
}

// localAnswer answers q for the client at index c if q is a local name. It
// returns ok false for names to forward. qname is q.Name in lower case.
func (z *zone) localAnswer(q dns.Question, qname string, c int) (rrs []dns.RR, rcode int, ok bool) {
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return nil, 0, false
	}
	if z.hostLo && slices.Contains(hostLoopbackNames, qname) {
		return z.addrAnswer(q, []netip.Addr{z.gateway}), dns.RcodeSuccess, true
	}
	if strings.HasSuffix(qname, ".in-addr.arpa.") || strings.HasSuffix(qname, ".ip6.arpa.") {
		return z.ptr(q, qname, c)
	}
	var label string
	switch {
	case qname == z.domain:
		if q.Qtype == dns.TypeSOA {
			return []dns.RR{z.apexSOA(q.Name)}, dns.RcodeSuccess, true
		}
		return nil, dns.RcodeSuccess, true
	case strings.HasSuffix(qname, "."+z.domain):
		label = strings.TrimSuffix(qname, "."+z.domain)
	case strings.Count(qname, ".") == 1:
		// A bare name: answered when it is a port's, forwarded
		// otherwise (single-label names upstream are rare but legal).
		label = strings.TrimSuffix(qname, ".")
		if _, ok := z.names[label]; !ok && label != "gateway" {
			return nil, 0, false
		}
	default:
		return nil, 0, false
	}
	if label == "gateway" {
		return z.addrAnswer(q, []netip.Addr{z.gateway, z.gateway6}), dns.RcodeSuccess, true
	}
	var addrs []netip.Addr
	found := false
	for _, i := range z.names[label] {
		if !z.visible(c, i) {
			continue
		}
		found = true
		h := z.hosts[i]
		for _, a := range []netip.Addr{h.IPv4, h.IPv6} {
			if a.IsValid() {
				addrs = append(addrs, a)
			}
		}
	}
	if !found {
		return nil, dns.RcodeNameError, true
	}
	return z.addrAnswer(q, addrs), dns.RcodeSuccess, true
}

// addrAnswer returns the A and AAAA records of addrs that q asks for, named
// as q names them (the client's case kept). None is NODATA.
func (z *zone) addrAnswer(q dns.Question, addrs []netip.Addr) []dns.RR {
	var rrs []dns.RR
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeA
			rrs = append(rrs, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeAAAA
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return rrs
}

// ptr answers a reverse query: local when the address is in the subnet,
// forwarded otherwise.
func (z *zone) ptr(q dns.Question, qname string, c int) ([]dns.RR, int, bool) {
	a, ok := reverseAddr(qname)
	if !ok || !z.subnet.Contains(a) && !z.subnet6.Contains(a) {
		return nil, 0, false
	}
	var target string
	if a == z.gateway || a == z.gateway6 {
		target = "gateway." + z.domain
	} else if i, ok := z.byIP[a]; ok && z.visible(c, i) {
		target = z.hosts[i].Name + "." + z.domain
	} else {
		return nil, dns.RcodeNameError, true
	}
	if q.Qtype != dns.TypePTR && q.Qtype != dns.TypeANY {
		return nil, dns.RcodeSuccess, true
	}
	return []dns.RR{&dns.PTR{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 0},
		Ptr: target,
	}}, dns.RcodeSuccess, true
}

// reverseAddr parses a full reverse name: IPv4 in-addr.arpa (RFC 1035
// 3.5), or IPv6 ip6.arpa, 32 nibbles lowest first (RFC 3596 2.5). qname is
// in lower case.
func reverseAddr(qname string) (netip.Addr, bool) {
	if s, ok := strings.CutSuffix(qname, ".ip6.arpa."); ok {
		return reverseAddr6(s)
	}
	s, ok := strings.CutSuffix(qname, ".in-addr.arpa.")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	slices.Reverse(parts)
	a, err := netip.ParseAddr(strings.Join(parts, "."))
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// reverseAddr6 parses the 32 nibbles of an ip6.arpa name ("b.a.9.8. ...
// .0.d.f", the lowest first) without the suffix.
func reverseAddr6(s string) (netip.Addr, bool) {
	if len(s) != 2*32-1 {
		return netip.Addr{}, false
	}
	var a [16]byte
	for i := range 32 {
		c := s[2*i]
		if i < 31 && s[2*i+1] != '.' {
			return netip.Addr{}, false
		}
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return netip.Addr{}, false
		}
		// Nibble i counts from the lowest of the address.
		b := 15 - i/2
		if i%2 == 0 {
			a[b] |= v
		} else {
			a[b] |= v << 4
		}
	}
	return netip.AddrFrom16(a), true
}
