// Package uplink defines the contract every uplink of tapswitch implements,
// and the registry of uplink kinds.
//
// An uplink is the switch's way out of the containers' subnet: the gateway
// routes a container's datagram, NAT translates it, and the uplink carries
// it to the outside world (Sender); what comes back is handed to the
// gateway (Uplink.Start). Each kind lives in its own package and registers
// itself once, from an init function, under the name that starts its
// `tapswitch run --uplink KIND[,KEY=VALUE...]` spec:
//
//   - uplink/host ("host"): host sockets, TCP terminated by gVisor's
//     netstack; unprivileged, the default;
//   - uplink/tap ("tap"): a routed TAP in another namespace, where the
//     switch is a host with its own MAC and address.
//
// A kind parses its own options (internal/options) into a Spec, which opens
// the Uplink. What only some kinds can do is an optional interface, checked
// once when the uplink is opened, the way vswitch.Offloader is:
// Publisher (published ports as host listeners), GSOSender and GSOReceiver
// (TCP super-segments whole), Loopbacker (the host's loopback behind the
// gateway's address), LocalSplicer (published ports reached from the
// host's loopback spliced into the container's namespace), Privileged (a
// spec that needs root).
//
// The daemon imports the kinds it knows for their registration and uses
// nothing else of them but this contract.
package uplink
