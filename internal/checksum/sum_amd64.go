package checksum

import "golang.org/x/sys/cpu"

// sumAVX2 returns the sum of the little-endian 32-bit words of b, whose
// length is a multiple of 64, as a plain 64-bit integer: each 64-bit lane
// of its four accumulators adds at most 2^32-1 per 64 bytes, so nothing
// is lost below 16 GiB.
//
//go:noescape
func sumAVX2(b []byte) uint64

// hasAVX2 is whether Sum may use sumAVX2; a variable so that the tests
// can check the Go path on this machine too.
var hasAVX2 = cpu.X86.HasAVX2

// sumWide sums the longest prefix of b whose length is a multiple of 64
// with AVX2 and returns that sum and the prefix's length; (0, 0) without
// AVX2.
func sumWide(b []byte) (uint64, int) {
	n := len(b) &^ 63
	if !hasAVX2 || n == 0 {
		return 0, 0
	}
	return sumAVX2(b[:n]), n
}
