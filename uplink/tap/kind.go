package tap

import (
	"fmt"

	"github.com/tapswitch/tapswitch/capture"
	"github.com/tapswitch/tapswitch/uplink"
)

// Name is the kind's name in `--uplink tap,...`.
const Name = "tap"

func init() {
	uplink.Register(uplink.Kind{
		Name:  Name,
		Usage: "tap,netns=PATH,ip=ADDR/LEN[,gw=ADDR][,ip6=ADDR6/LEN][,gw6=ADDR6][,ifname=" + DefaultIfName + "][,mac=MAC][,mtu=N]",
		Parse: parse,
	})
}

var (
	_ uplink.Spec        = (*Config)(nil)
	_ uplink.Privileged  = (*Config)(nil)
	_ uplink.Uplink      = (*TAP)(nil)
	_ uplink.GSOSender   = (*TAP)(nil)
	_ uplink.GSOReceiver = (*TAP)(nil)
	_ uplink.NAT66       = (*TAP)(nil)
)

// Kind implements uplink.Spec.
func (c *Config) Kind() string { return Name }

// Privileged implements uplink.Privileged: the TAP is created in the
// switch's namespace and moved into Netns.
func (c *Config) Privileged() string {
	return "it creates a TAP and moves it into another namespace"
}

// Open implements uplink.Spec: it validates a copy of c, refuses a link
// that overlaps the containers' subnet, and opens the TAP (Open).
func (c *Config) Open(env uplink.Env) (uplink.Uplink, error) {
	cfg := *c
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Addr.Masked().Overlaps(env.Subnet) {
		return nil, fmt.Errorf("%w: uplink %s overlaps the containers' subnet %s", ErrInvalidSpec, cfg.Addr, env.Subnet)
	}
	if cfg.Addr6.IsValid() && env.Subnet6.IsValid() && cfg.Addr6.Masked().Overlaps(env.Subnet6) {
		return nil, fmt.Errorf("%w: uplink ip6=%s overlaps the containers' IPv6 subnet %s", ErrInvalidSpec, cfg.Addr6, env.Subnet6)
	}
	u, err := openFor(cfg, env) // persist.go
	if err != nil {
		return nil, err
	}
	return u, nil
}

// CapturePoint implements uplink.Uplink: it is &u.Capture.
func (u *TAP) CapturePoint() *capture.Point { return &u.Capture }

// String implements uplink.Uplink: the uplink's Config in the syntax of
// ParseSpec.
func (u *TAP) String() string { return u.cfg.String() }
