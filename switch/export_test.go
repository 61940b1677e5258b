package vswitch

// Test helpers shared with package vswitch_test.

// Tag is a VLAN tag for EthFrame.
type Tag = tag

var (
	EthFrame = ethFrame
	IPv4     = ipv4
	L4       = l4
	ARP      = arp
	TCP4     = tcp4
)

// Protocol numbers and EtherTypes for the external tests.
const (
	ProtoTCP  = protoTCP
	ProtoUDP  = protoUDP
	EtherIPv4 = etherIPv4
	EtherARP  = etherARP
	EtherVLAN = etherVLAN
	EtherQinQ = etherQinQ
)

// MkTag returns a VLAN tag for EthFrame.
func MkTag(tpid, vid uint16) Tag { return tag{tpid, vid} }
