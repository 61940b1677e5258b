package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Proto is an IP protocol number (IANA).
type Proto uint8

// The protocols the table translates.
const (
	ICMP   Proto = 1
	TCP    Proto = 6
	UDP    Proto = 17
	ICMPv6 Proto = 58
)

// String returns "icmp", "icmpv6", "tcp", "udp" or the number.
func (p Proto) String() string {
	switch p {
	case ICMP:
		return "icmp"
	case ICMPv6:
		return "icmpv6"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// Endpoint is an IPv4 or IPv6 address and a port. For ICMP echo, Port is
// the identifier (see [Tuple]). An IPv4 address is never IPv4-mapped, and
// no address has a zone: EndpointFrom makes sure of both.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
}

// EndpointFrom returns the Endpoint of an IPv4 address (IPv4-mapped IPv6
// ones are unmapped) or an IPv6 address without a zone, and a port; ok is
// false for any other address.
func EndpointFrom(ap netip.AddrPort) (e Endpoint, ok bool) {
	a := ap.Addr().Unmap()
	if !a.IsValid() || a.Zone() != "" {
		return Endpoint{}, false
	}
	return Endpoint{Addr: a, Port: ap.Port()}, true
}

// AddrPort returns e as a netip.AddrPort.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// String returns "a.b.c.d:port" or "[v6]:port".
func (e Endpoint) String() string { return e.AddrPort().String() }

// Tuple identifies the packets of one direction of a connection: protocol,
// source and destination, both of one family. It is comparable; the
// conntrack key is packed from it (keys.go).
//
// For ICMP echo, the identifier is the source port of an echo request and the
// destination port of an echo reply; the other port is zero. So a reply's
// tuple is the reverse of its request's.
type Tuple struct {
	Proto    Proto
	Src, Dst Endpoint
}

// Is6 reports whether t is a tuple of IPv6 packets.
func (t Tuple) Is6() bool { return t.Src.Addr.Is6() }

// Reverse returns the tuple of a packet going the other way.
func (t Tuple) Reverse() Tuple { return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src} }

// String returns "proto src -> dst".
func (t Tuple) String() string {
	return t.Proto.String() + " " + t.Src.String() + " -> " + t.Dst.String()
}

// Timeouts are the idle timeouts of connections. A zero field takes its
// default, which is the RFC floor; smaller values are allowed (for tests and
// small tables) but break the RFC requirement named.
type Timeouts struct {
	TCPEstablished time.Duration // default 2 h 4 min (RFC 5382 REQ-5)
	TCPTransitory  time.Duration // default 4 min (RFC 5382 REQ-5): SYN sent, FIN or RST seen
	UDP            time.Duration // default 120 s, after traffic both ways (RFC 4787 REQ-5)
	UDPUnreplied   time.Duration // default 30 s
	ICMP           time.Duration // default 60 s (RFC 5508 REQ-1)
	// TCPPressure replaces TCPTransitory for TCP connections not yet
	// established (SYN seen, handshake not completed) while the table is
	// under pressure (from more than half full until less than an eighth
	// full): default 10 s. A SYN
	// flood fills the table with such entries; nf_conntrack drops them
	// early (early_drop) for the same reason. RFC 5382 REQ-5 lets a NAT
	// abandon connections under resource pressure.
	TCPPressure time.Duration
}

// The default timeouts.
const (
	DefaultTCPEstablished = 2*time.Hour + 4*time.Minute
	DefaultTCPTransitory  = 4 * time.Minute
	DefaultUDP            = 120 * time.Second
	DefaultUDPUnreplied   = 30 * time.Second
	DefaultICMP           = 60 * time.Second
	DefaultTCPPressure    = 10 * time.Second
	DefaultMaxEntries     = 65536
	DefaultPortMin        = 1024
	DefaultPortMax        = 65535
)

// Config configures a Table.
type Config struct {
	// External is the uplink address: the source of masqueraded packets and
	// the destination of published ports. Required, IPv4.
	External netip.Addr
	// Internal is the containers' subnet. Required, IPv4. Packets from
	// inside must come from it; a destination inside it is not translated.
	Internal netip.Prefix
	// External6 and Internal6 are the same for IPv6 (NAT66 masquerade,
	// RFC 6296 section 1 calls it NAPT66): both set, or both zero for a
	// table that translates IPv4 only and drops IPv6 (DropNotInternal,
	// DropNotExternal). External6 must be a global or unique local
	// unicast address outside Internal6.
	External6 netip.Addr
	Internal6 netip.Prefix
	// PortMin and PortMax bound the external ports (and ICMP identifiers)
	// given to mappings whose internal port cannot be kept. Zero: 1024 and
	// 65535.
	PortMin, PortMax uint16
	// MaxEntries bounds the number of connections. Zero: 65536. When full,
	// closing and then unreplied entries are evicted (oldest first), else
	// the new connection is refused; both are counted in Stats.
	MaxEntries int
	// Timeouts are the idle timeouts; zero fields take the defaults.
	Timeouts Timeouts
	// EndpointIndependentFiltering lets any outside address and port reach
	// a live mapping (RFC 4787 REQ-8). Default false: address and port
	// dependent filtering.
	EndpointIndependentFiltering bool
}

// Errors of New and the publish methods.
var (
	// ErrConfig is returned by New for an invalid Config.
	ErrConfig = errors.New("invalid nat config")
	// ErrPublishOverlap is returned by AddPublish when a host port of the
	// new publish is already published for the same protocol.
	ErrPublishOverlap = errors.New("host port already published")
	// ErrPortInUse is returned by AddPublish when a host port is used by a
	// live mapping of an outbound connection.
	ErrPortInUse = errors.New("host port in use by a mapping")
	// ErrNoPublish is returned by RemovePublish when no publish contains the
	// port.
	ErrNoPublish = errors.New("no such published port")
	// ErrBadPublish is returned by ParsePublish and AddPublish for a spec
	// that is not valid; the message says why.
	ErrBadPublish = errors.New("invalid published port")
)

// Action says what to do with a packet after translation.
type Action uint8

// The actions.
const (
	Drop       Action = iota // not translated: Result.Reason says why (counted in Stats)
	ToExternal               // send out through the uplink (it was rewritten in place)
	ToInternal               // deliver to a container (rewritten in place; the destination is a container's address)
)

// String returns "drop", "to-external" or "to-internal".
func (a Action) String() string {
	switch a {
	case Drop:
		return "drop"
	case ToExternal:
		return "to-external"
	case ToInternal:
		return "to-internal"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// DropReason says why a packet was dropped.
type DropReason uint8

// The reasons. Each is counted in Stats.Drops.
const (
	DropNone            DropReason = iota // not dropped
	DropMalformed                         // not a well-formed IPv4 or IPv6 packet, an L4 header too short, or UDP over IPv6 without a checksum
	DropFragment                          // a later fragment whose first fragment was not translated, or an IPv6 fragment (see the package doc)
	DropProto                             // a protocol other than TCP, UDP and ICMP (ICMPv6 over IPv6)
	DropICMPType                          // an ICMP type that is neither echo nor a translated error (e.g. an echo request from outside)
	DropNotInternal                       // FromInternal: source outside Config.Internal, or destination inside it or not unicast
	DropNotExternal                       // FromExternal: destination is not Config.External, or the source is inside Config.Internal, not unicast, or External
	DropNoFlow                            // no connection, no publish, no mapping matches (from outside), or a hairpin to nothing
	DropFiltered                          // from outside to a live mapping, refused by address and port dependent filtering
	DropTCPNoSyn                          // a TCP packet of no connection that is not a SYN
	DropTableFull                         // a new connection refused: the table is full and nothing could be evicted
	DropNoPort                            // a new connection refused: no free external port in the range
	DropBadChecksum                       // an ICMP error whose ICMP checksum is wrong (RFC 5508 REQ-3)
	DropICMPErrorNoFlow                   // an ICMP error quoting no tracked connection (RFC 5508 REQ-4)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:            "none",
	DropMalformed:       "malformed",
	DropFragment:        "fragment",
	DropProto:           "protocol",
	DropICMPType:        "icmp-type",
	DropNotInternal:     "not-internal",
	DropNotExternal:     "not-external",
	DropNoFlow:          "no-flow",
	DropFiltered:        "filtered",
	DropTCPNoSyn:        "tcp-no-syn",
	DropTableFull:       "table-full",
	DropNoPort:          "no-port",
	DropBadChecksum:     "bad-checksum",
	DropICMPErrorNoFlow: "icmp-error-no-flow",
}

// NumDropReasons is the number of DropReason values (the length of
// Stats.Drops).
const NumDropReasons = int(numDropReasons)

// String returns a short name such as "no-flow".
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Result is what FromInternal and FromExternal did with a packet.
type Result struct {
	Action Action
	Reason DropReason // when Action is Drop
	// New is true when the packet created a connection.
	New bool
}

// Stats are the table's counters, read atomically (each field on its own).
type Stats struct {
	Entries                            [3]uint64              // live connections by protocol: [0] TCP, [1] UDP, [2] ICMP and ICMPv6
	Entries6                           [3]uint64              // of those, IPv6 ones
	Mappings                           uint64                 // live mappings (all protocols)
	Created, Expired, Evicted, Refused uint64                 // connections created, removed by Expire, evicted when full, refused when full
	Flushed                            uint64                 // connections removed by Flush and FlushAddr
	TranslatedOut, TranslatedIn        uint64                 // packets translated: ToExternal, ToInternal
	ICMPErrors                         uint64                 // ICMP errors translated (included in the two above)
	Fragments                          uint64                 // later fragments (offset > 0) translated (included in the two above)
	Drops                              [NumDropReasons]uint64 // packets dropped, by reason
}

// EntriesTotal returns the number of live connections.
func (s Stats) EntriesTotal() uint64 { return s.Entries[0] + s.Entries[1] + s.Entries[2] }

// Entry is a connection as listed by Table.Entries, like a line of
// `conntrack -L`.
type Entry struct {
	Proto Proto
	// State is the TCP state ("SYN_SENT", "SYN_RECV", "ESTABLISHED",
	// "FIN_WAIT", "CLOSE_WAIT", "TIME_WAIT", "CLOSE"), or for UDP and ICMP
	// "UNREPLIED" or "REPLIED".
	State       string
	Orig, Reply Tuple         // the original tuple and the reply tuple (see the package doc)
	Timeout     time.Duration // left before the entry expires (<= 0: expired, not yet collected)
	Age         time.Duration // since the connection was created
	// Packets and bytes (IP total length) in the original and reply
	// direction.
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	Replied                                          bool // a packet was seen in the reply direction
}

// String formats e like a line of `conntrack -L`.
func (e Entry) String() string {
	return fmt.Sprintf("%s %s %s src=%s dst=%s sport=%d dport=%d packets=%d bytes=%d src=%s dst=%s sport=%d dport=%d packets=%d bytes=%d",
		e.Proto, e.Timeout.Round(time.Second), e.State,
		e.Orig.Src.Addr, e.Orig.Dst.Addr, e.Orig.Src.Port, e.Orig.Dst.Port, e.OrigPackets, e.OrigBytes,
		e.Reply.Src.Addr, e.Reply.Dst.Addr, e.Reply.Src.Port, e.Reply.Dst.Port, e.ReplyPackets, e.ReplyBytes)
}
