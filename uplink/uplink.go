package uplink

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/nat"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/wire"
)

// Headroom is the room Sender.Send may use in front of a datagram: a
// virtio_net_hdr and an Ethernet header.
const Headroom = vswitch.VnetHdrLen + wire.EthernetLen

// ErrInvalidSpec is returned (wrapped, with the reason) by Parse, by the
// kinds' parsers and validators, and by Spec.Open for a spec that does
// not fit the switch (Env).
var ErrInvalidSpec = errors.New("invalid uplink")

// ErrHostPortInUse is returned (wrapped) by Publisher.Publish when the host
// refuses a published port's listener: another program holds the port.
var ErrHostPortInUse = errors.New("host port already in use")

// Sender is the part of an uplink the gateway routes through.
type Sender interface {
	// Send sends the IPv4 datagram buf[off:]; it may overwrite the
	// Headroom bytes before off and must not keep buf. It is safe for
	// concurrent use.
	Send(buf []byte, off int) error
	// Addr is the uplink's own address (nat.Config.External).
	Addr() netip.Addr
	// MTU is the largest datagram Send takes.
	MTU() int
}

// Uplink is an opened uplink of any kind. Its methods other than Start and
// Close are safe for concurrent use.
type Uplink interface {
	Sender
	// Start starts the uplink. handle is called with each IPv4 datagram
	// received for Addr (and, from a Sender6, each IPv6 packet for a
	// container), possibly from several goroutines at once; it may
	// modify the datagram but must not keep it. gone is called once if
	// the uplink stops working on its own (its device or namespace was
	// deleted). Start is called once.
	Start(handle func(pkt []byte), gone func(error))
	// Close stops the uplink and releases what it holds; when it returns,
	// none of the uplink's goroutines runs and handle is not called any
	// more. It is safe to call more than once.
	Close() error
	// CapturePoint is the uplink's capture point (`tapswitch capture
	// uplink`); it lives as long as the uplink.
	CapturePoint() *capture.Point
	// String describes the uplink in the syntax of its spec, defaults
	// filled in.
	String() string
}

// Publisher is the optional interface of an Uplink that carries published
// ports itself, as listeners on the host (the host uplink). An Uplink that
// is not one receives published ports as datagrams to Addr, which NAT
// translates.
type Publisher interface {
	// Publish opens the host listeners of p (p.HostIP, or every address
	// when it is zero). Errors wrap ErrHostPortInUse when the host
	// refuses the port.
	Publish(p nat.Publish) error
	// Unpublish closes the listeners Publish opened for p.
	Unpublish(p nat.Publish)
	// HostIP returns the host address the published range of proto
	// containing port listens on, and whether it is published.
	HostIP(proto nat.Proto, port uint16) (netip.Addr, bool)
}

// Sender6 is the optional interface of a Sender that carries IPv6 too:
// the gateway routes what containers send outside their /64 to Send6
// untranslated (the host uplink, whose host sockets are the translation:
// there is no NAT66 in front of it), and the uplink hands what comes back
// to Start's handle, addressed to the containers, with the IPv6 version in
// its first byte.
type Sender6 interface {
	// Send6 sends the IPv6 packet buf[off:], as a container sent it (its
	// hop limit decremented); it may overwrite the Headroom bytes before
	// off and must not keep buf. It is safe for concurrent use.
	Send6(buf []byte, off int) error
	// Loopback6 is the IPv6 address that stands for the host's loopback
	// (::1), as Loopbacker's address does for 127.0.0.1: clients of
	// published ports on ::1 appear with it, and, when HostLoopback is
	// set, the gateway rewrites its own IPv6 address to it.
	Loopback6() netip.Addr
}

// GSOSender is the optional interface of a Sender that takes TCP
// super-segments whole, so that the gateway accepts TSO frames from the
// switch instead of segmenting them.
type GSOSender interface {
	Sender
	// SendGSO sends the IPv4 TCP datagram buf[off:] as Send does, but it
	// may be larger than MTU (a TSO super-segment, up to 64 KiB, standing
	// for segments of mss bytes of TCP payload; mss 0 for a datagram not
	// to be cut) and its TCP checksum is partial (the pseudo-header sum
	// only, VIRTIO_NET_HDR_F_NEEDS_CSUM): the uplink completes it or
	// hands it on as such, and must not verify it.
	SendGSO(buf []byte, off, mss int) error
}

// GSOReceiver is the optional interface of an Uplink that can hand TCP
// super-segments to the gateway whole.
type GSOReceiver interface {
	// SetGSOHandler makes the uplink hand TCP super-segments (up to 64
	// KiB, with a partial checksum) to h instead of MTU-sized segments
	// to Start's handle; mss is the payload size of the segments they
	// stand for. A super-segment comes in parts to gather, in order; h
	// must not modify nor keep them. It is called before Start, if at all.
	SetGSOHandler(h func(parts [][]byte, mss int))
}

// Loopbacker is the optional interface of an Uplink that lets containers
// reach the host's loopback through the gateway's address.
type Loopbacker interface {
	// HostLoopback is the address that stands for the host's loopback
	// (gateway.Config.HostLoopback); the zero Addr when containers may
	// not reach it.
	HostLoopback() netip.Addr
}

// Env is what the switch tells a Spec when it opens its uplink.
type Env struct {
	// Subnet is the containers' subnet, which the uplink's addresses
	// must stay out of.
	Subnet netip.Prefix
	// MTU is the gateway's MTU: the largest datagram the uplink may hand
	// back.
	MTU int
	// UDPTimeout and ICMPTimeout are NAT's idle timeouts, for an uplink
	// that holds state per flow.
	UDPTimeout, ICMPTimeout time.Duration
	// Log logs the uplink's rare events.
	Log *slog.Logger
	// Persist asks an uplink with devices of its own to keep them across
	// a restart of the daemon (--live-restore), adopting those a previous
	// daemon left, and to clear that with SetPersist(false) (Persister)
	// before a Close that must remove them. Uplinks without devices ignore
	// it.
	Persist bool
}

// Persister is implemented by an uplink whose devices may outlive the
// daemon (Env.Persist).
type Persister interface {
	SetPersist(on bool) error
}

// Spec is the parsed and validated configuration of one uplink of one kind
// (what Parse returns for `--uplink KIND,...`).
type Spec interface {
	// Kind is the name the kind is registered under.
	Kind() string
	// Open checks the spec against env (errors wrap ErrInvalidSpec) and
	// opens the uplink, not yet started. It does not modify the spec.
	Open(env Env) (Uplink, error)
	// String describes the spec in the syntax Parse reads.
	String() string
}

// Privileged is the optional interface of a Spec whose uplink needs root
// (CAP_NET_ADMIN and CAP_SYS_ADMIN).
type Privileged interface {
	// Privileged says why the uplink needs root, e.g. "it creates a TAP
	// and moves it into another namespace".
	Privileged() string
}
