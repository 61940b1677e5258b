package host

import (
	"fmt"
	"net/netip"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/uplink"
)

// Name is the kind's name in `--uplink host,...`.
const Name = "host"

func init() {
	uplink.Register(uplink.Kind{
		Name:  Name,
		Usage: "host[,addr=ADDR][,loopback=ADDR][,loopback6=ADDR6][,mtu=N][,splice=off] (host sockets)",
		Parse: parse,
	})
}

var (
	_ uplink.Spec        = (*Config)(nil)
	_ uplink.Uplink      = (*Uplink)(nil)
	_ uplink.Publisher   = (*Uplink)(nil)
	_ uplink.GSOSender   = (*Uplink)(nil)
	_ uplink.GSOReceiver = (*Uplink)(nil)
	_ uplink.Loopbacker  = (*Uplink)(nil)
	_ uplink.Sender6     = (*Uplink)(nil)
)

// Kind implements uplink.Spec.
func (c *Config) Kind() string { return Name }

// Open implements uplink.Spec. What c leaves zero comes from env (MTU,
// UDPTimeout, ICMPTimeout, Logger), then from the defaults; the uplink's
// MTU must not exceed the gateway's (what comes back from the host is
// handed to the gateway), and its addresses must be outside the
// containers' subnet.
func (c *Config) Open(env uplink.Env) (uplink.Uplink, error) {
	hc := *c
	if hc.MTU == 0 {
		hc.MTU = env.MTU
	}
	if hc.UDPTimeout == 0 {
		hc.UDPTimeout = env.UDPTimeout
	}
	if hc.ICMPTimeout == 0 {
		hc.ICMPTimeout = env.ICMPTimeout
	}
	if hc.Logger == nil {
		hc.Logger = env.Log
	}
	if err := hc.Validate(); err != nil {
		return nil, err
	}
	if env.MTU > 0 && hc.MTU > env.MTU {
		return nil, fmt.Errorf("%w: host uplink mtu=%d: larger than the gateway's mtu %d", ErrInvalidSpec, hc.MTU, env.MTU)
	}
	for _, a := range []netip.Addr{hc.Addr, hc.Loopback} {
		if env.Subnet.Contains(a) {
			return nil, fmt.Errorf("%w: host uplink address %s is inside the containers' subnet %s", ErrInvalidSpec, a, env.Subnet)
		}
	}
	u, err := New(hc)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// CapturePoint implements uplink.Uplink: it is &u.Capture.
func (u *Uplink) CapturePoint() *capture.Point { return &u.Capture }

// String implements uplink.Uplink: the uplink's Config in the syntax of
// ParseSpec.
func (u *Uplink) String() string { return u.cfg.String() }

// Loopback6 implements uplink.Sender6: Config.Loopback6.
func (u *Uplink) Loopback6() netip.Addr { return u.cfg.Loopback6 }

// HostLoopback implements uplink.Loopbacker: Config.Loopback when
// Config.HostLoopback is set.
func (u *Uplink) HostLoopback() netip.Addr {
	if u.cfg.HostLoopback {
		return u.cfg.Loopback
	}
	return netip.Addr{}
}
