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
// TargetPort + (port - HostPort), with the client's address kept; with
// Target6 and NAT66, packets to the external IPv6 address go to Target6 the
// same way (Docker publishes a port on both families).
type Publish struct {
	Proto       Proto      // TCP or UDP
	HostIP      netip.Addr // zero: any; else it must equal Config.External (Docker's HOSTIP)
	HostPort    uint16     // first host port
	HostPortEnd uint16     // last host port; equal to HostPort for one port
	Target      netip.Addr // the container's address
	Target6     netip.Addr // the container's IPv6 address, for IPv6 clients (Config.External6 set); zero: IPv4 only
	TargetPort  uint16     // first port of the target range, which has the host range's length
	Owner       string     // the container's port name, for listings; not interpreted
}

// ParsePublish parses Docker's -p syntax,
// [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp], into a Publish
// without Target and Owner. The protocol defaults to TCP; the two ranges
// must have the same length; HOSTIP must be IPv4 (0.0.0.0 means any). Errors
// wrap ErrBadPublish and say what is wrong.
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
	if strings.HasPrefix(rest, "[") {
		return bad("only IPv4 host addresses are supported")
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		if parts[0] != "" {
			ip, err := netip.ParseAddr(parts[0])
			if err != nil || !ip.Is4() {
				return bad("host address %q is not an IPv4 address", parts[0])
			}
			if !ip.IsUnspecified() {
				p.HostIP = ip
			}
		}
		parts = parts[1:]
	case 1:
		return bad("a host port is required (HOSTPORT:CONTAINERPORT)")
	default:
		return bad("too many colons")
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
	if p.HostIP.IsValid() {
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
	if p.HostIP.IsValid() && p.HostIP.Unmap() != t.ext {
		return bad("host address %s is not the uplink address %s", p.HostIP, t.ext)
	}
	tg := p.Target.Unmap()
	if !tg.Is4() || !t.cfg.Internal.Contains(tg) {
		return bad("target %s is not an address of the containers' subnet %s", p.Target, t.cfg.Internal)
	}
	p.Target = tg
	if p.Target6.IsValid() && (!p.Target6.Is6() || p.Target6.Is4In6() || !t.cfg.Internal6.Contains(p.Target6)) {
		return bad("target6 %s is not an address of the containers' IPv6 subnet %s", p.Target6, t.cfg.Internal6)
	}
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
		m := t.ports[portKey{p.Proto, false, uint16(port)}]
		if m == nil && p.Target6.IsValid() {
			m = t.ports[portKey{p.Proto, true, uint16(port)}]
		}
		if m != nil {
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

// RemovePublishesTo removes every publish whose target (or IPv6 target) is
// the address (when its container is detached) and returns them.
func (t *Table) RemovePublishesTo(target netip.Addr) []Publish {
	target = target.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	var removed, kept []Publish
	for _, p := range t.pubs {
		if p.Target == target || p.Target6.IsValid() && p.Target6 == target {
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

// publishForLocked returns the publish of proto containing port with a
// target of the family v6 says (Target6 for IPv6), or nil. t.mu must be held
// (either side).
func (t *Table) publishForLocked(proto Proto, v6 bool, port uint16) *Publish {
	for i := range t.pubs {
		if t.pubs[i].Proto == proto && t.pubs[i].contains(port) && (!v6 || t.pubs[i].Target6.IsValid()) {
			return &t.pubs[i]
		}
	}
	return nil
}
