package wire

import "encoding/binary"

// Ethernet II (IEEE 802.3 clause 3.2.6) and IEEE 802.1Q.
const (
	// MaxVLANTags is how many tags EtherType walks past (QinQ: two).
	MaxVLANTags = 2

	// EtherTypeIPv4 is IPv4's EtherType (RFC 894).
	EtherTypeIPv4 = 0x0800
	// EtherTypeARP is ARP's EtherType (RFC 826).
	EtherTypeARP = 0x0806
	// EtherTypeIPv6 is IPv6's EtherType (RFC 2464).
	EtherTypeIPv6 = 0x86dd
	// EtherTypeVLAN is the TPID of an 802.1Q tag.
	EtherTypeVLAN = 0x8100
	// EtherTypeQinQ is the TPID of an 802.1ad service tag.
	EtherTypeQinQ = 0x88a8

	// VIDMask selects the VLAN ID in a tag's TCI.
	VIDMask = 0x0fff
)

// BroadcastMAC is the Ethernet broadcast address.
var BroadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Ethernet is a view of an Ethernet II frame. Its accessors read the first
// EthernetLen bytes: the caller checks len(e) >= EthernetLen first.
type Ethernet []byte

// Dst returns the destination MAC.
func (e Ethernet) Dst() [6]byte { return [6]byte(e[0:6]) }

// Src returns the source MAC.
func (e Ethernet) Src() [6]byte { return [6]byte(e[6:12]) }

// Type returns the EtherType field (a TPID when the frame is tagged).
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// EtherType returns the EtherType after at most MaxVLANTags 802.1Q/802.1ad
// tags and the offset in e of the header that follows it. A frame with
// more tags, or a tag cut short, returns the TPID it stopped at (see
// IsVLAN). ok is false when e is shorter than an Ethernet header.
func (e Ethernet) EtherType() (typ uint16, l3 int, ok bool) {
	if len(e) < EthernetLen {
		return 0, 0, false
	}
	o := 12
	typ = binary.BigEndian.Uint16(e[o:])
	for tags := 0; IsVLAN(typ) && tags < MaxVLANTags && len(e) >= o+VLANTagLen+2; tags++ {
		o += VLANTagLen
		typ = binary.BigEndian.Uint16(e[o:])
	}
	return typ, o + 2, true
}

// IsVLAN reports whether typ is the TPID of an 802.1Q or 802.1ad tag.
func IsVLAN(typ uint16) bool { return typ == EtherTypeVLAN || typ == EtherTypeQinQ }

// PutEthernet writes an Ethernet II header into b[:EthernetLen].
func PutEthernet(b []byte, dst, src [6]byte, typ uint16) {
	_ = b[EthernetLen-1]
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], typ)
}

// ARP over Ethernet for IPv4 (RFC 826).
const (
	ARPRequest uint16 = 1 // the request operation
	ARPReply   uint16 = 2 // the reply operation
)

// ARP is a view of an ARP packet for IPv4 over Ethernet (hardware type 1,
// protocol type 0x0800, lengths 6 and 4), as returned by ParseARP.
type ARP []byte

// ParseARP returns the ARP packet at the start of b. It returns ErrTooShort
// if b is shorter than ARPLen and ErrBadHeader if it is not for IPv4 over
// Ethernet.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < ARPLen {
		return nil, ErrTooShort
	}
	if binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return nil, ErrBadHeader
	}
	return ARP(b[:ARPLen]), nil
}

// Op returns the operation (ARPRequest, ARPReply).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:8]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() [6]byte { return [6]byte(a[8:14]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() [4]byte { return [4]byte(a[14:18]) }

// TargetMAC returns the target hardware address.
func (a ARP) TargetMAC() [6]byte { return [6]byte(a[18:24]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() [4]byte { return [4]byte(a[24:28]) }

// PutARP writes an Ethernet/IPv4 ARP packet into b[:ARPLen].
func PutARP(b []byte, op uint16, senderMAC [6]byte, senderIP [4]byte, targetMAC [6]byte, targetIP [4]byte) {
	_ = b[ARPLen-1]
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], senderMAC[:])
	copy(b[14:18], senderIP[:])
	copy(b[18:24], targetMAC[:])
	copy(b[24:28], targetIP[:])
}
