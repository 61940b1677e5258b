// Package vxlan implements a VXLAN tunnel (RFC 7348) as a port of the
// switch: frames the switch writes to it are encapsulated in UDP and sent to
// the remote VTEP (VXLAN tunnel end point) that its own MAC table names, or
// to every configured remote (head-end replication) for broadcast, multicast
// and unknown unicast; datagrams it receives are checked, decapsulated and
// handed to the switch as frames from the port, so they go through the same
// pipeline (VLAN, ACL, learning, capture) as frames from any other port.
//
// The package is made of a pure part (the header, the MAC → VTEP table,
// tested and fuzzed alone) and the Linux socket part (tunnel_linux.go):
// ordinary UDP sockets, so it works unprivileged. TCP super-frames are
// segmented once and sent with one sendmsg using UDP GSO (UDP_SEGMENT), and
// datagrams are received coalesced with UDP_GRO.
//
// With Config.Suppress, the tunnel is a vswitch.NeighSuppressor: it keeps
// the addresses learned from the ARP and ND messages that come out of it
// (NeighTable, aged and bounded as the MAC table), and the switch answers
// the requests of local containers for those addresses, and for its own
// ports', instead of replicating them to every remote.
package vxlan
