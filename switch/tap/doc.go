// Package tap implements the TAP ports of tapswitch's datapath: it opens a
// Linux TAP device with a virtio_net_hdr in front of every frame
// (IFF_VNET_HDR) and creates it inside a container's network namespace,
// configured the way Docker configures a container's eth0 (MAC address, MTU,
// IPv4 address, link up, default route via the gateway).
//
// The TAP is always opened in the caller's own network namespace and then
// moved into the container's namespace, never opened inside it: the socket
// behind a /dev/net/tun file holds a reference to the namespace it was opened
// in (tun_chr_open -> sk_alloc), so a TAP opened inside the container's
// namespace would keep that namespace alive after `ip netns del` or after the
// container's last process exits. Opened in the host namespace and moved, the
// TAP is deleted by the kernel together with the container's namespace, and
// Device.Read then fails, which is how the switch notices that the container
// is gone.
//
// Without CAP_NET_ADMIN in both namespaces there is no moving: a helper
// process that entered the container's user and network namespaces calls
// Create for its own namespace and passes the descriptor (Device.File) to
// the switch, which adopts it with FromFD (package internal/nshelper). Such
// a TAP does keep its namespace alive, and its Read does not fail when the
// container's last process exits; the caller must watch the container
// another way.
//
// A Device implements vswitch.Port. Only Linux is supported.
package tap
