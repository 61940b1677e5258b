// Package checksum implements the Internet checksum of RFC 1071 and the IPv4
// and IPv6 pseudo-header sums that TCP, UDP and ICMPv6 checksums need.
//
// Sums are carried between calls as unfolded uint32 partial sums, so a
// checksum over several discontiguous pieces (a pseudo-header, a header, a
// payload) is computed without copying:
//
//	sum := checksum.PseudoHeaderIPv4(src, dst, 6, uint16(len(seg)))
//	csum := checksum.Checksum(seg, sum) // store big-endian at seg[16:18]
//
// A piece of odd length must be the last one: RFC 1071 pads a trailing odd
// byte with zero on its right, which is only correct at the very end.
//
// All functions are pure, allocate nothing and are safe for concurrent use.
package checksum

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds the 16-bit big-endian words of b to the partial sum initial and
// returns the new partial sum, folded to at most 17 bits so that it can be
// passed as initial again any number of times without overflow. A trailing
// odd byte is padded with zero (RFC 1071 section 4.1).
//
// It adds 64-bit words with carry (RFC 1071 section 2 (B): a one's
// complement sum over wider words, folded, is the same sum), 64 bytes a
// loop, and reads them little-endian: the sum of byte-swapped words is
// the byte-swapped sum (section 2 (B) again), so one swap at the end
// replaces one per word (the VXLAN tunnel checks every segment it
// coalesces and checksums every segment it sends). Adding 64-bit
// big-endian words 32 bytes a loop was about 3x the speed of adding
// 32-bit words into a 64-bit accumulator; reading them little-endian 64
// bytes a loop took 15-25 % less CPU time again (BenchmarkSum, 10^7 sums
// of 1398 bytes, user time 0.71-0.81 s against 0.84-1.06 s, alternated,
// 2026-12-03 on the shared 2-core machine).
//
// On amd64 with AVX2, a piece of 128 bytes or more is summed 64 bytes at
// a time in vector registers first (sum_amd64.s: 32-bit words added into
// 64-bit lanes, no carry to chase), the rest as above: 21 ns against 73
// ns for 1398 bytes (BenchmarkSum, wide and go), and, where it counts,
// 3 to 8 % more throughput on both tapswitch rows of the VXLAN overlay
// benchmark under cubic (see package vxlan's doc).
func Sum(b []byte, initial uint32) uint32 {
	acc, c := uint64(0), uint64(0)
	if len(b) >= 128 {
		var n int
		acc, n = sumWide(b)
		b = b[n:]
	}
	for len(b) >= 64 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[32:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[40:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[48:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[56:]), c)
		b = b[64:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0]), c) // the pad byte is on its right
	}
	// The carry out of the top goes back in at the bottom (2^64 is 1 in
	// one's complement arithmetic); after that add it cannot carry again.
	acc, c = bits.Add64(acc, 0, c)
	acc += c
	// Fold to 16 bits (each fold can carry once more), swap the bytes
	// back, add initial, and fold to at most 17 bits.
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = uint64(bits.ReverseBytes16(uint16(acc))) + uint64(initial)
	acc = (acc >> 32) + (acc & 0xffffffff)
	return uint32(acc>>16) + uint32(acc&0xffff)
}

// Fold folds the carries of the partial sum back into its low 16 bits and
// returns the one's complement sum (not yet complemented).
func Fold(sum uint32) uint16 {
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint16(sum)
}

// Checksum returns the Internet checksum of b added to the partial sum
// initial: the one's complement of the folded one's complement sum, ready to
// be stored big-endian in a header whose checksum field was zero while
// summing. Over data that already contains a correct checksum, Checksum
// returns 0 (the receiver's check of RFC 1071).
func Checksum(b []byte, initial uint32) uint16 {
	return ^Fold(Sum(b, initial))
}

// PseudoHeaderIPv4 returns the partial sum of the IPv4 pseudo-header
// (RFC 9293 section 3.1, RFC 768): source and destination address, the
// protocol number and the length of the transport header plus data.
func PseudoHeaderIPv4(src, dst [4]byte, proto uint8, length uint16) uint32 {
	return uint32(binary.BigEndian.Uint16(src[0:])) +
		uint32(binary.BigEndian.Uint16(src[2:])) +
		uint32(binary.BigEndian.Uint16(dst[0:])) +
		uint32(binary.BigEndian.Uint16(dst[2:])) +
		uint32(proto) +
		uint32(length)
}

// Incremental updates (RFC 1624). A delta is the partial sum of ~old + new
// over every 16-bit word that changed; Update applies it to a checksum field
// (equation 3: HC' = ~(~HC + ~m + m')), which never turns a correct checksum
// into the -0 form (0x0000 where 0xffff is meant) unlike equation 2. Deltas
// of several words are added together (up to 16 384 words before the sum can
// overflow).

// Delta16 returns the delta of one 16-bit word changing from old to new.
func Delta16(old, new uint16) uint32 {
	return uint32(^old) + uint32(new)
}

// DeltaAddr4 returns the delta of an IPv4 address (two words) changing from
// old to new.
func DeltaAddr4(old, new [4]byte) uint32 {
	return Delta16(binary.BigEndian.Uint16(old[0:]), binary.BigEndian.Uint16(new[0:])) +
		Delta16(binary.BigEndian.Uint16(old[2:]), binary.BigEndian.Uint16(new[2:]))
}

// Update returns the checksum field value csum adjusted by delta, for a
// field that holds a complete (inverted) checksum: RFC 1624 equation 3.
func Update(csum uint16, delta uint32) uint16 {
	return ^Fold(uint32(^csum) + delta)
}

// UpdatePartial returns the field value sum adjusted by delta, for a field
// that holds a folded partial sum that is not inverted, such as the
// pseudo-header sum of a CHECKSUM_PARTIAL (virtio NEEDS_CSUM) packet that a
// device completes later.
func UpdatePartial(sum uint16, delta uint32) uint16 {
	return Fold(uint32(sum) + delta)
}

// PseudoHeaderIPv6 returns the partial sum of the IPv6 pseudo-header
// (RFC 8200 section 8.1): source and destination address, the
// upper-layer packet length and the next header value (the upper-layer
// protocol, not that of an extension header).
func PseudoHeaderIPv6(src, dst [16]byte, proto uint8, length uint32) uint32 {
	s := Sum(src[:], 0)
	s = Sum(dst[:], s)
	return s + length>>16 + length&0xffff + uint32(proto)
}

// DeltaAddr6 returns the delta of an IPv6 address (eight words) changing
// from old to new.
func DeltaAddr6(old, new [16]byte) uint32 {
	var d uint32
	for i := 0; i < 16; i += 2 {
		d += Delta16(binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(new[i:]))
	}
	return d
}
