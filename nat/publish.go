package nat

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Publish is a published port range: packets from outside to the external
// address and a host port in [HostPort, HostPortEnd] go to Target at
// TargetPort + (port - HostPort), with the client's address kept.
type Publish struct {
	Proto Proto // TCP or UDP
	// HostIP is Docker's HOSTIP: zero for every address of both
	// families, 0.0.0.0 for every IPv4 one, :: for every IPv6 one, or one
	// address. NAT takes zero, 0.0.0.0 or Config.External; the others
	// are for an uplink that listens on the host (uplink.Publisher).
	HostIP      netip.Addr
	HostPort    uint16     // first host port
	HostPortEnd uint16     // last host port; equal to HostPort for one port
	Target      netip.Addr // the container's (IPv4) address
	// Target6 is the container's IPv6 address, if it has one: an
	// uplink.Publisher delivers what its IPv6 listeners accept there
	// (else to Target, as Docker's proxy does). NAT does not use it.
	Target6    netip.Addr
	TargetPort uint16 // first port of the target range, which has the host range's length
	Owner      string // the container's port name, for listings; not interpreted
}

// ParsePublish parses Docker's -p syntax,
// [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp], into a Publish
// without Target and Owner. The protocol defaults to TCP; the two ranges
// must have the same length. HOSTIP is an IPv4 address or an IPv6 one, in
// brackets ([::1]:8080:80) or, as Docker also takes it, bare
// (2001:db8::5:8080:80); 0.0.0.0 and :: are every address of their
// family, and no HOSTIP every address of both. IPv4-mapped IPv6 addresses
// and zones are refused. Errors wrap ErrBadPublish and say what is wrong.
func ParsePublish(spec string) (Publish, error) {
	bad := func(format string, args ...any) (Publish, error) {
		return Publish{}, fmt.Errorf("%w %q: %s", ErrBadPublish, spec, fmt.Sprintf(format, args...))
	}
	p := Publish{Proto: TCP}
	rest := spec
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch strings.ToLower(rest[i+1:]) {
		case "tcp":
		case "udp":
			p.Proto = UDP
		default:
			return bad("protocol %q is not tcp or udp", rest[i+1:])
		}
		rest = rest[:i]
	}
	host, bracketed := "", false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("host address: %q has no closing bracket", rest)
		}
		if !strings.HasPrefix(rest[end+1:], ":") {
			return bad("host address %q must be followed by :HOSTPORT:CONTAINERPORT", rest[:end+1])
		}
		host, rest, bracketed = rest[1:end], rest[end+2:], true
	}
	parts := strings.Split(rest, ":")
	switch n := len(parts); {
	case n == 1:
		return bad("a host port is required (HOSTPORT:CONTAINERPORT)")
	case bracketed && n != 2:
		return bad("too many colons after the host address")
	case n == 3:
		host, parts = parts[0], parts[1:]
	case n > 3:
		// A bare IPv6 address: the last two fields are the ports.
		host, parts = strings.Join(parts[:n-2], ":"), parts[n-2:]
	}
	if host != "" || bracketed {
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil:
			return bad("host address %q is not an IPv4 or IPv6 address", host)
		case ip.Zone() != "":
			return bad("host address %s: zones are not supported", ip)
		case ip.Is4In6():
			return bad("host address %s is IPv4-mapped: write %s", ip, ip.Unmap())
		case bracketed && ip.Is4():
			return bad("host address %s is IPv4: write it without brackets", ip)
		}
		p.HostIP = ip
	}
	if parts[0] == "" {
		return bad("a host port is required (HOSTPORT:CONTAINERPORT)")
	}
	hs, he, err := parsePortRange(parts[0])
	if err != nil {
		return bad("host port: %v", err)
	}
	cs, ce, err := parsePortRange(parts[1])
	if err != nil {
		return bad("container port: %v", err)
	}
	if he-hs != ce-cs {
		return bad("host range %d-%d and container range %d-%d differ in length", hs, he, cs, ce)
	}
	p.HostPort, p.HostPortEnd, p.TargetPort = hs, he, cs
	return p, nil
}

func parsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %d-%d ends before it starts", lo, hi)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// String returns p in Docker's -p syntax, with the protocol always written
// (e.g. "8080:80/tcp", "127.0.0.1:9000-9009:9000-9009/udp").
func (p Publish) String() string {
	var b strings.Builder
	if p.HostIP.Is6() {
		b.WriteByte('[')
		b.WriteString(p.HostIP.String())
		b.WriteString("]:")
	} else if p.HostIP.IsValid() {
		b.WriteString(p.HostIP.String())
		b.WriteByte(':')
	}
	b.WriteString(strconv.Itoa(int(p.HostPort)))
	if p.HostPortEnd > p.HostPort {
		b.WriteByte('-')
		b.WriteString(strconv.Itoa(int(p.HostPortEnd)))
	}
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(int(p.TargetPort)))
	if p.HostPortEnd > p.HostPort {
		b.WriteByte('-')
		b.WriteString(strconv.Itoa(int(p.TargetPort) + int(p.HostPortEnd-p.HostPort)))
	}
	b.WriteByte('/')
	b.WriteString(p.Proto.String())
	return b.String()
}

// contains reports whether p covers the host port.
func (p *Publish) contains(port uint16) bool { return port >= p.HostPort && port <= p.HostPortEnd }

// validatePublish checks p against the table's config and normalizes its target.
func (t *Table) validatePublish(p *Publish) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrBadPublish, p, fmt.Sprintf(format, args...))
	}
	if p.Proto != TCP && p.Proto != UDP {
		return bad("protocol must be tcp or udp")
	}
	if p.HostPort == 0 || p.HostPortEnd < p.HostPort {
		return bad("bad host port range %d-%d", p.HostPort, p.HostPortEnd)
	}
	if p.TargetPort == 0 || int(p.TargetPort)+int(p.HostPortEnd-p.HostPort) > 65535 {
		return bad("bad target port %d", p.TargetPort)
	}
	if h := p.HostIP; h.IsValid() && h != netip.IPv4Unspecified() && h.Unmap() != netip.AddrFrom4(t.ext) {
		return bad("host address %s is not the uplink address %s", p.HostIP, netip.AddrFrom4(t.ext))
	}
	tg := p.Target.Unmap()
	if !tg.Is4() || !t.cfg.Internal.Contains(tg) {
		return bad("target %s is not an address of the containers' subnet %s", p.Target, t.cfg.Internal)
	}
	p.Target = tg
	return nil
}

// AddPublish publishes p. It fails (wrapping ErrBadPublish) when p is not
// valid for the table, with ErrPublishOverlap when a host port of p is
// already published for the same protocol, and with ErrPortInUse when a live
// mapping uses one of its host ports. Connections already tracked are not
// affected.
func (t *Table) AddPublish(p Publish) error {
	if err := t.validatePublish(&p); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.pubs {
		q := &t.pubs[i]
		if q.Proto == p.Proto && q.HostPort <= p.HostPortEnd && p.HostPort <= q.HostPortEnd {
			return fmt.Errorf("%w: %s overlaps %s (%s)", ErrPublishOverlap, p, q, q.Owner)
		}
	}
	for port := int(p.HostPort); port <= int(p.HostPortEnd); port++ {
		if m := t.ports[portKey{p.Proto, uint16(port)}]; m != nil {
			return fmt.Errorf("%w: %d/%s is mapped to %s", ErrPortInUse, port, p.Proto, m.internal)
		}
	}
	pubs := slices.Clone(t.pubs)
	pubs = append(pubs, p)
	slices.SortFunc(pubs, func(a, b Publish) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.HostPort) - int(b.HostPort)
	})
	t.pubs = pubs
	return nil
}

// RemovePublish removes the publish of proto that contains hostPort and
// returns it, or fails with ErrNoPublish. Tracked connections to it live on
// until they expire; new ones are not accepted.
func (t *Table) RemovePublish(proto Proto, hostPort uint16) (Publish, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.pubs {
		if t.pubs[i].Proto == proto && t.pubs[i].contains(hostPort) {
			p := t.pubs[i]
			t.pubs = slices.Delete(slices.Clone(t.pubs), i, i+1)
			return p, nil
		}
	}
	return Publish{}, fmt.Errorf("%w: %d/%s", ErrNoPublish, hostPort, proto)
}

// RemovePublishesTo removes every publish whose target is the address (when
// its container is detached) and returns them.
func (t *Table) RemovePublishesTo(target netip.Addr) []Publish {
	target = target.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	var removed, kept []Publish
	for _, p := range t.pubs {
		if p.Target == target {
			removed = append(removed, p)
		} else {
			kept = append(kept, p)
		}
	}
	if removed != nil {
		t.pubs = kept
	}
	return removed
}

// Publishes returns a copy of the publishes, sorted by protocol and host
// port.
func (t *Table) Publishes() []Publish {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.pubs)
}

// publishForLocked returns the publish of proto containing port, or nil. t.mu must
// be held (either side).
func (t *Table) publishForLocked(proto Proto, port uint16) *Publish {
	for i := range t.pubs {
		if t.pubs[i].Proto == proto && t.pubs[i].contains(port) {
			return &t.pubs[i]
		}
	}
	return nil
}
