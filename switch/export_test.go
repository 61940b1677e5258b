package vswitch

import "github.com/tapswitch/tapswitch/wire"

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
	ProtoTCP  = wire.ProtoTCP
	ProtoUDP  = wire.ProtoUDP
	EtherIPv4 = wire.EtherTypeIPv4
	EtherARP  = wire.EtherTypeARP
	EtherVLAN = wire.EtherTypeVLAN
	EtherQinQ = wire.EtherTypeQinQ
)

// MkTag returns a VLAN tag for EthFrame.
func MkTag(tpid, vid uint16) Tag { return tag{tpid, vid} }
