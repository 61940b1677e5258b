package tap

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"

	tapdev "github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
)

// OpenPersistent is Open for a daemon with --live-restore: the TAP is
// persistent (tapdev.Device.SetPersist), so that it outlives the daemon with
// what others configured on its namespace side, and one a previous daemon
// left (the same name, a tun/tap link with the MAC this function gives it)
// is adopted instead of created. The namespace side's MAC is derived from
// cfg.MAC (its second bit from the right of the last byte flipped) rather
// than random, so that the next daemon knows it. SetPersist(false) before
// Close removes the TAP with the uplink.
func OpenPersistent(cfg Config) (*TAP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	devMAC := PersistentMAC(cfg)
	dev, err := tapdev.AdoptOffloads(cfg.Netns, cfg.IfName, devMAC, offloadsFor(&cfg))
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		dev, err = tapdev.Create(tapdev.Config{Netns: cfg.Netns, Name: cfg.IfName, MAC: devMAC, MTU: cfg.MTU, Offloads: offloadsFor(&cfg)})
		if err == nil {
			if err = dev.SetPersist(true); err != nil {
				dev.Close()
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	return newTAP(cfg, dev, nil), nil
}

// PersistentMAC is the MAC OpenPersistent gives the namespace side of the
// TAP of cfg (validated): what identifies it for the next daemon.
func PersistentMAC(cfg Config) net.HardwareAddr {
	mac := slices.Clone(cfg.MAC)
	mac[5] ^= 2
	return mac
}

// SetPersist sets or clears the persist flag of the uplink's TAP (see
// OpenPersistent).
func (u *TAP) SetPersist(on bool) error {
	if p, ok := u.dev.(interface{ SetPersist(bool) error }); ok {
		return p.SetPersist(on)
	}
	return nil
}

// openFor opens the TAP of cfg as env asks: persistent with env.Persist;
// otherwise, a persistent TAP a live-restore daemon left under the same
// name (recognised by PersistentMAC) is removed first, and env.Log says so.
func openFor(cfg Config, env uplink.Env) (*TAP, error) {
	if env.Persist {
		return OpenPersistent(cfg)
	}
	u, err := Open(cfg)
	if errors.Is(err, tapdev.ErrLinkExists) && tapdev.Remove(cfg.Netns, cfg.IfName, PersistentMAC(cfg)) == nil {
		if env.Log != nil {
			env.Log.Info("removed the uplink TAP a live-restore daemon left (this one runs without --live-restore)", "netns", cfg.Netns, "ifname", cfg.IfName)
		}
		u, err = Open(cfg)
	}
	return u, err
}
