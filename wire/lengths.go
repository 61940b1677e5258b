package wire

// Header lengths, in bytes.
const (
	EthernetLen     = 14 // Ethernet II: destination, source, EtherType
	VLANTagLen      = 4  // one 802.1Q or 802.1ad tag: TPID, TCI
	ARPLen          = 28 // ARP for IPv4 over Ethernet (RFC 826)
	IPv4MinLen      = 20 // IPv4 without options (RFC 791)
	IPv4MaxLen      = 65535
	IPv6Len         = 40 // the fixed IPv6 header (RFC 8200)
	IPv6FragmentLen = 8  // an IPv6 Fragment extension header
	TCPMinLen       = 20 // TCP without options (RFC 9293)
	UDPLen          = 8  // RFC 768
	ICMPLen         = 8  // ICMPv4 or ICMPv6: type, code, checksum, 4 bytes
)
