package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadFilter is returned (wrapped, with the reason) when a filter
// expression cannot be parsed.
var ErrBadFilter = errors.New("bad filter")

// Filter is a parsed capture filter: a subset of tcpdump's expression
// language (pcap-filter(7)). A Filter is immutable and safe for concurrent
// use.
//
// Primitives:
//
//	ip ip6 arp rarp tcp udp sctp icmp icmp6
//	[ip|ip6|arp|rarp] [src|dst|src or dst|src and dst] host ADDR
//	[ip|ip6|arp|rarp] [src|dst|...] net CIDR    (or: net ADDR mask MASK, net ADDR)
//	[tcp|udp|sctp] [src|dst|...] port N
//	[tcp|udp|sctp] [src|dst|...] portrange N-M
//	ether [src|dst|...] host MAC, ether broadcast, ether multicast, ether proto N
//	broadcast, multicast                         (Ethernet ones)
//	ip proto N, ip6 proto N, proto N
//	vlan [ID]                                    (802.1Q or 802.1ad tag; see below)
//	greater N, less N                            (frame length)
//
// combined with not (!), and (&&), or (||) and parentheses. As in tcpdump,
// and and or have the same precedence and group from the left, so
// "a or b and c" is "(a or b) and c"; a bare value repeats the previous
// primitive's keywords ("port 80 or 443"), a bare address is a host and a
// bare CIDR a net. Numbers are decimal or 0x hex.
//
// Differences from tcpdump: host names and service names are not resolved;
// vlan tests the tag but, unlike tcpdump, does not move the offsets of the
// primitives that follow it; "port" on IPv6 and "tcp"/"udp" only look at the
// fixed header's next header (no extension headers).
type Filter struct {
	expr string
	root node // nil: every frame
}

// ParseFilter parses expr. An empty (or all-space) expression matches every
// frame. Errors wrap ErrBadFilter and say which word is wrong.
func ParseFilter(expr string) (*Filter, error) {
	f := &Filter{expr: strings.Join(strings.Fields(expr), " ")}
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return f, nil
	}
	p := &parser{toks: toks}
	root, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, p.errorf("unexpected %q", p.toks[p.i])
	}
	f.root = root
	return f, nil
}

// String returns the expression, with its spaces normalised.
func (f *Filter) String() string { return f.expr }

// Empty reports whether the filter matches every frame.
func (f *Filter) Empty() bool { return f.root == nil }

// node is a node of a parsed expression: *andNode, *orNode, *notNode or
// *prim.
type node interface{}

type andNode struct{ a, b node }
type orNode struct{ a, b node }
type notNode struct{ a node }

type primKind uint8

const (
	pProto      primKind = iota // ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6
	pHost                       // host or net: addr is a prefix
	pPort                       // port or portrange: lo..hi
	pEtherHost                  // ether host
	pEtherBcast                 // ether broadcast
	pEtherMcast                 // ether multicast
	pEtherProto                 // ether proto N
	pIPProto                    // [ip|ip6] proto N
	pVlan                       // vlan [N]
	pGreater                    // greater N
	pLess                       // less N
)

type dirKind uint8

const (
	dirEither dirKind = iota // src or dst (the default)
	dirSrc
	dirDst
	dirBoth // src and dst
)

// prim is a primitive.
type prim struct {
	kind   primKind
	qual   string // protocol qualifier: "", ether, ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6
	dir    dirKind
	addr   netip.Prefix // pHost
	mac    [6]byte      // pEtherHost
	lo, hi uint16       // pPort
	num    uint32       // pEtherProto, pIPProto, pVlan, pGreater, pLess
	hasNum bool         // pVlan: an ID was given
	// word is the keyword that introduced the value (host, net, port,
	// portrange), for abbreviations.
	word string
}

// tokenize splits expr into words, parentheses and the operators ! && ||.
func tokenize(expr string) ([]string, error) {
	var toks []string
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, string(c))
			i++
		case c == '!':
			toks = append(toks, "!")
			i++
		case strings.HasPrefix(expr[i:], "&&") || strings.HasPrefix(expr[i:], "||"):
			toks = append(toks, expr[i:i+2])
			i += 2
		case c == '&' || c == '|':
			return nil, fmt.Errorf("%w: %q: use && or ||", ErrBadFilter, string(c))
		default:
			j := i
			for j < len(expr) && !strings.ContainsRune(" \t\n\r()!&|", rune(expr[j])) {
				j++
			}
			toks = append(toks, strings.ToLower(expr[i:j]))
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks []string
	i    int
	last *prim // the previous qualified primitive, for abbreviations
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadFilter, fmt.Sprintf(format, a...))
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	if p.i < len(p.toks) {
		p.i++
	}
	return t
}

func isAnd(t string) bool { return t == "and" || t == "&&" }
func isOr(t string) bool  { return t == "or" || t == "||" }

// endOfPrim reports whether t ends a primitive.
func endOfPrim(t string) bool { return t == "" || t == ")" || isAnd(t) || isOr(t) }

// parseExpr parses unary { (and|or) unary }, left to right with equal
// precedence, as libpcap's grammar does.
func (p *parser) parseExpr() (node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !isAnd(t) && !isOr(t) {
			return left, nil
		}
		p.next()
		if p.peek() == "" {
			return nil, p.errorf("expression ends after %q", t)
		}
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		if isAnd(t) {
			left = &andNode{left, right}
		} else {
			left = &orNode{left, right}
		}
	}
}

func (p *parser) parseUnary() (node, error) {
	switch t := p.peek(); t {
	case "":
		return nil, p.errorf("expression expected")
	case "not", "!":
		p.next()
		a, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &notNode{a}, nil
	case "(":
		p.next()
		a, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, p.errorf("missing )")
		}
		return a, nil
	case ")":
		return nil, p.errorf("unexpected )")
	}
	return p.parsePrim()
}

var protoQuals = map[string]bool{"ether": true, "ip": true, "ip6": true, "arp": true, "rarp": true, "tcp": true, "udp": true, "sctp": true}

func (p *parser) parsePrim() (node, error) {
	t := p.next()
	switch t {
	case "icmp", "icmp6":
		return &prim{kind: pProto, qual: t}, nil
	case "broadcast":
		return &prim{kind: pEtherBcast}, nil
	case "multicast":
		return &prim{kind: pEtherMcast}, nil
	case "greater", "less":
		n, err := p.number(t, 0xffffffff)
		if err != nil {
			return nil, err
		}
		k := pGreater
		if t == "less" {
			k = pLess
		}
		return &prim{kind: k, num: n}, nil
	case "vlan":
		pr := &prim{kind: pVlan}
		if !endOfPrim(p.peek()) {
			n, err := p.number("vlan", 4095)
			if err != nil {
				return nil, err
			}
			pr.num, pr.hasNum = n, true
		}
		return pr, nil
	case "proto":
		n, err := p.number("proto", 255)
		if err != nil {
			return nil, err
		}
		return &prim{kind: pIPProto, num: n}, nil
	}
	pr := &prim{}
	qualified := false
	if protoQuals[t] {
		pr.qual = t
		qualified = true
		nt := p.peek()
		if endOfPrim(nt) {
			if t == "ether" {
				return nil, p.errorf("ether: host, src, dst, proto, broadcast or multicast expected")
			}
			return &prim{kind: pProto, qual: t}, nil
		}
		switch {
		case t == "ether" && (nt == "broadcast" || nt == "multicast"):
			p.next()
			if nt == "broadcast" {
				return &prim{kind: pEtherBcast}, nil
			}
			return &prim{kind: pEtherMcast}, nil
		case nt == "proto" && (t == "ether" || t == "ip" || t == "ip6"):
			p.next()
			max := uint32(255)
			if t == "ether" {
				max = 0xffff
			}
			n, err := p.number(t+" proto", max)
			if err != nil {
				return nil, err
			}
			if t == "ether" {
				return &prim{kind: pEtherProto, num: n}, nil
			}
			return &prim{kind: pIPProto, qual: t, num: n}, nil
		}
		t = p.next()
	}
	if t == "src" || t == "dst" {
		qualified = true
		pr.dir = dirSrc
		if t == "dst" {
			pr.dir = dirDst
		}
		// "src or dst" and "src and dst" are one qualifier.
		if op := p.peek(); (isOr(op) || isAnd(op)) && p.i+1 < len(p.toks) {
			other := p.toks[p.i+1]
			if (t == "src" && other == "dst") || (t == "dst" && other == "src") {
				p.i += 2
				pr.dir = dirEither
				if isAnd(op) {
					pr.dir = dirBoth
				}
			}
		}
		t = p.next()
	}
	switch t {
	case "host", "net", "port", "portrange":
		pr.word = t
		t = p.next()
	default:
		if !qualified {
			// A bare value: repeat the previous primitive's keywords,
			// or take an address as a host and a CIDR as a net.
			if p.last != nil {
				q := *p.last
				q.addr, q.mac, q.lo, q.hi = netip.Prefix{}, [6]byte{}, 0, 0
				return p.value(&q, t)
			}
			if strings.Contains(t, "/") {
				pr.word = "net"
			} else if _, err := netip.ParseAddr(t); err == nil {
				pr.word = "host"
			} else if t == "" {
				return nil, p.errorf("expression expected")
			} else {
				return nil, p.errorf("unknown word %q", t)
			}
		} else {
			// "src 10.0.0.1", "ether src 02:..": a host.
			pr.word = "host"
		}
	}
	return p.value(pr, t)
}

// value parses the value v of a primitive whose keywords are in pr.
func (p *parser) value(pr *prim, v string) (node, error) {
	if endOfPrim(v) {
		return nil, p.errorf("%s: a value is expected", pr.word)
	}
	switch pr.word {
	case "host", "net":
		if pr.qual == "ether" {
			if pr.word == "net" {
				return nil, p.errorf("ether net is not supported")
			}
			hw, err := net.ParseMAC(v)
			if err != nil || len(hw) != 6 {
				return nil, p.errorf("ether host %q: not a MAC address", v)
			}
			pr.kind = pEtherHost
			copy(pr.mac[:], hw)
			break
		}
		switch pr.qual {
		case "", "ip", "ip6", "arp", "rarp":
		default:
			return nil, p.errorf("%s %s is not valid", pr.qual, pr.word)
		}
		pfx, err := p.prefix(pr.word, v)
		if err != nil {
			return nil, err
		}
		if pfx.Addr().Is6() && (pr.qual == "ip" || pr.qual == "arp" || pr.qual == "rarp") {
			return nil, p.errorf("%s %s %s: an IPv4 address is expected", pr.qual, pr.word, v)
		}
		if pfx.Addr().Is4() && pr.qual == "ip6" {
			return nil, p.errorf("ip6 %s %s: an IPv6 address is expected", pr.word, v)
		}
		pr.kind, pr.addr = pHost, pfx
	case "port", "portrange":
		switch pr.qual {
		case "", "tcp", "udp", "sctp":
		default:
			return nil, p.errorf("%s %s is not valid", pr.qual, pr.word)
		}
		lo, hi, err := portRange(pr.word, v)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		pr.kind, pr.lo, pr.hi = pPort, lo, hi
	default:
		return nil, p.errorf("unknown word %q", v)
	}
	p.last = pr
	return pr, nil
}

// prefix parses the value of host or net (with "mask M" after it for net).
func (p *parser) prefix(word, v string) (netip.Prefix, error) {
	if word == "host" {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, p.errorf("host %q: not an IP address (host names are not resolved)", v)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	var pfx netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(v); err != nil {
			return netip.Prefix{}, p.errorf("net %q: not a CIDR prefix", v)
		}
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, p.errorf("net %q: not an address or CIDR prefix", v)
		}
		a = a.Unmap()
		pfx = netip.PrefixFrom(a, a.BitLen())
		if p.peek() == "mask" {
			p.next()
			m, err := netip.ParseAddr(p.next())
			if err != nil || !m.Is4() || !a.Is4() {
				return netip.Prefix{}, p.errorf("net %s mask: an IPv4 mask is expected", v)
			}
			mb := m.As4()
			bits, size := net.IPMask(mb[:]).Size()
			if size == 0 {
				return netip.Prefix{}, p.errorf("net %s mask %s: not a contiguous mask", v, m)
			}
			pfx = netip.PrefixFrom(a, bits)
		}
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, p.errorf("net %s: non-network bits set (did you mean %s?)", pfx, pfx.Masked())
	}
	return pfx, nil
}

func portRange(word, v string) (uint16, uint16, error) {
	if word == "port" {
		n, err := parseNum(v, 0xffff)
		if err != nil {
			return 0, 0, fmt.Errorf("port %q: not a port number (service names are not resolved)", v)
		}
		return uint16(n), uint16(n), nil
	}
	a, b, ok := strings.Cut(v, "-")
	lo, err1 := parseNum(a, 0xffff)
	hi, err2 := parseNum(b, 0xffff)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("portrange %q: N-M expected", v)
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return uint16(lo), uint16(hi), nil
}

func (p *parser) number(what string, max uint32) (uint32, error) {
	v := p.next()
	n, err := parseNum(v, max)
	if err != nil {
		return 0, p.errorf("%s: a number up to %d is expected, not %q", what, max, v)
	}
	return n, nil
}

func parseNum(v string, max uint32) (uint32, error) {
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil || n > uint64(max) {
		return 0, strconv.ErrRange
	}
	return uint32(n), nil
}
