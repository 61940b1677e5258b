package daemon

import (
	"regexp"

	"github.com/tapswitch/tapswitch/api"
)

// owner is who attached a port through the CNI plugin: the runtime's
// container ID and the CNI network's name (zero for a port attached by
// hand). The plugin finds a port again by (containerID, ifname), as the
// CNI spec identifies an attachment.
type owner struct {
	containerID string
	network     string
}

// containerIDRE is the CNI spec's rule for a container ID.
var containerIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// parseOwner checks the CNI fields of req.
func parseOwner(req api.AttachRequest) (owner, error) {
	o := owner{containerID: req.ContainerID, network: req.Network}
	if o.containerID != "" && (len(o.containerID) > 1024 || !containerIDRE.MatchString(o.containerID)) {
		return owner{}, invalid("container id %q: must be letters, digits, '_', '.' or '-', starting with a letter or digit", o.containerID)
	}
	if o.network != "" && o.containerID == "" {
		return owner{}, invalid("network %q given without a container id", o.network)
	}
	return o, nil
}

// ownerConflictLocked refuses a second port for the same container and
// interface: a runtime that repeats an ADD must get the first port back
// (the plugin looks it up first), never a second one. d.mu is held.
func (d *Daemon) ownerConflictLocked(a *attachment) error {
	if a.owner.containerID == "" {
		return nil
	}
	for _, p := range d.ports {
		if p.owner.containerID == a.owner.containerID && p.ifname == a.ifname {
			return conflict("container %s already has interface %s attached as port %s", a.owner.containerID, a.ifname, p.name)
		}
	}
	return nil
}

// describe fills in the CNI fields of p.
func (o owner) describe(p *api.Port) {
	p.ContainerID, p.Network = o.containerID, o.network
}
