package uplink

import (
	"context"
	"errors"
	"net"
)

// ErrNoLocalPath is returned (wrapped, with the reason) by a LocalDialer
// that will not open a connection inside the container for this client:
// the uplink then carries it as it carries any other.
var ErrNoLocalPath = errors.New("no direct path into the container")

// LocalDialer opens a TCP connection to the target of the published TCP
// host port hostPort (the container's address and port: its IPv6 address
// when v6 is set, for a client of ::1, its IPv4 address otherwise) from
// inside the network namespace of the container that owns it, as one of
// its own processes would: the connection is the container's loopback
// traffic, it never crosses the switch. The connection returned lives in
// that namespace; the caller owns it. ctx bounds the connect. It must be
// safe for concurrent use.
type LocalDialer func(ctx context.Context, hostPort uint16, v6 bool) (*net.TCPConn, error)

// LocalSplicer is the optional interface of a Publisher that can join a
// TCP connection accepted from the host's own loopback to a connection
// opened inside the container (LocalDialer) and move the bytes between the
// two host sockets with splice(2), as pasta does for such clients: no
// packets, no TCP stack of the switch's, no NAT in between. Clients of
// 127.0.0.0/8 and of ::1 alike. The container sees the connection come
// from its own address (it cannot be shown a loopback source anyway).
// Clients on other addresses keep their address and the ordinary path.
type LocalSplicer interface {
	// SetLocalDialer sets the dialer; nil turns the splice off. It may
	// be called at any time; connections accepted before keep their
	// path.
	SetLocalDialer(d LocalDialer)
}
