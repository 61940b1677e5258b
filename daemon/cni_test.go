package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

// TestAttachOwner checks the CNI fields of an attach request: a container
// ID must follow the CNI spec's rule, a network needs a container ID, and
// a container may have one port per interface.
func TestAttachOwner(t *testing.T) {
	d := newTestDaemon(t, Config{})
	d.mu.Lock()
	d.ports["web1"] = &attachment{name: "web1", ifname: "eth0", netns: "/run/netns/a", ip: netip.MustParseAddr("10.90.0.2"),
		owner: owner{containerID: "c0ffee", network: "tsnet"}}
	d.mu.Unlock()
	tests := []struct {
		name string
		req  api.AttachRequest
		kind error
		want string
	}{
		{"container id with a slash", api.AttachRequest{Netns: "/x", ContainerID: "a/b"}, ErrInvalid, `container id "a/b"`},
		{"container id starting with a dot", api.AttachRequest{Netns: "/x", ContainerID: ".a"}, ErrInvalid, "container id"},
		{"container id too long", api.AttachRequest{Netns: "/x", ContainerID: strings.Repeat("a", 1025)}, ErrInvalid, "container id"},
		{"network without container", api.AttachRequest{Netns: "/x", Network: "tsnet"}, ErrInvalid, "without a container id"},
		// A namespace that exists: the path is checked before anything else.
		{"same container and interface", api.AttachRequest{Netns: "/proc/self/ns/net", Name: "web2", ContainerID: "c0ffee", Network: "tsnet"}, ErrConflict,
			"container c0ffee already has interface eth0 attached as port web1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Attach(tt.req)
			if !errors.Is(err, tt.kind) || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Attach = %v, want %v saying %q", err, tt.kind, tt.want)
			}
		})
	}
	// Another interface of the same container gets as far as the
	// namespace, which does not exist.
	_, err := d.Attach(api.AttachRequest{Netns: "/nonexistent/ns", Name: "web1b", IfName: "eth1", ContainerID: "c0ffee"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Attach of eth1 = %v, want ErrNotFound for the namespace", err)
	}
	// Listings carry the fields.
	p, err := d.Port("web1")
	if err != nil {
		t.Fatal(err)
	}
	if p.ContainerID != "c0ffee" || p.Network != "tsnet" {
		t.Errorf("port web1 = container %q network %q, want c0ffee tsnet", p.ContainerID, p.Network)
	}
}
