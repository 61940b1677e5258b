package vxlan

import (
	"errors"
	"io"
)

// HeaderLen is the length of the VXLAN header (RFC 7348 section 5).
const HeaderLen = 8

// DefaultPort is the IANA-assigned VXLAN UDP port (RFC 7348 section 5).
const DefaultPort = 4789

// MaxVNI is the highest VXLAN Network Identifier (24 bits).
const MaxVNI = 1<<24 - 1

// Overhead4 and Overhead6 are what encapsulation adds to an inner IP
// packet over an IPv4 or IPv6 underlay: outer IP, UDP, VXLAN and the inner
// Ethernet header (50 bytes over IPv4, as for the Linux vxlan device).
const (
	Overhead4 = 20 + 8 + HeaderLen + 14
	Overhead6 = 40 + 8 + HeaderLen + 14
)

// flagI is the I flag: the VNI is valid (RFC 7348 section 5).
const flagI = 0x08

// ErrNoVNI is returned by ParseHeader for a header without the I flag.
var ErrNoVNI = errors.New("vxlan: I flag not set")

// PutHeader writes a VXLAN header for vni into b[:HeaderLen]: the I flag,
// reserved fields zero. It panics if b is short or vni is above MaxVNI
// (programmer errors).
func PutHeader(b []byte, vni uint32) {
	if vni > MaxVNI {
		panic("vxlan: VNI out of range")
	}
	_ = b[HeaderLen-1]
	b[0], b[1], b[2], b[3] = flagI, 0, 0, 0
	b[4], b[5], b[6], b[7] = byte(vni>>16), byte(vni>>8), byte(vni), 0
}

// ParseHeader returns the VNI of the VXLAN header at the start of b. As RFC
// 7348 section 5 says, reserved bits and the other flags are ignored on
// receipt; a header without the I flag has no valid VNI (ErrNoVNI). A b
// shorter than HeaderLen gives io.ErrUnexpectedEOF.
func ParseHeader(b []byte) (uint32, error) {
	if len(b) < HeaderLen {
		return 0, io.ErrUnexpectedEOF
	}
	if b[0]&flagI == 0 {
		return 0, ErrNoVNI
	}
	return uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6]), nil
}
