package checksum

import (
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket"
)

// refSum is the plain RFC 1071 algorithm: 16-bit words added into a 32-bit
// accumulator, carries folded at the end.
func refSum(b []byte, initial uint32) uint16 {
	sum := initial
	fold := func() {
		for sum > 0xffff {
			sum = (sum >> 16) + (sum & 0xffff)
		}
	}
	fold()
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
		fold()
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
		fold()
	}
	return uint16(sum)
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksum(t *testing.T) {
	tests := []struct {
		name string
		data string
		init uint32
		want uint16
	}{
		{name: "empty", data: "", want: 0xffff},
		// RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
		{name: "rfc1071 example", data: "0001f203f4f5f6f7", want: ^uint16(0xddf2)},
		{name: "odd length", data: "01", want: ^uint16(0x0100)},
		{name: "carry", data: "ffffffff0001", want: ^uint16(0x0001)},
		// IPv4 header 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
		// (Wikipedia's example) with the checksum field zeroed.
		{name: "ipv4 header", data: "450000730000400040110000c0a80001c0a800c7", want: 0xb861},
		{name: "ipv4 header verified", data: "45000073000040004011b861c0a80001c0a800c7", want: 0},
		{name: "initial", data: "0001", init: 0x0002, want: ^uint16(0x0003)},
		{name: "large initial", data: "", init: 0xffffffff, want: ^Fold(0xffffffff)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(mustHex(t, tt.data), tt.init); got != tt.want {
				t.Errorf("Checksum(%s, %#x) = %#04x, want %#04x", tt.data, tt.init, got, tt.want)
			}
		})
	}
}

func TestFold(t *testing.T) {
	tests := []struct {
		in   uint32
		want uint16
	}{
		{0, 0},
		{0xffff, 0xffff},
		{0x10000, 1},
		{0x1fffe, 0xffff},
		{0xffffffff, 0xffff},
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.want {
			t.Errorf("Fold(%#x) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestPseudoHeaderIPv4(t *testing.T) {
	src := [4]byte{10, 90, 0, 2}
	dst := [4]byte{10, 90, 0, 1}
	// The pseudo-header as bytes: src, dst, zero, protocol, length.
	ph := []byte{10, 90, 0, 2, 10, 90, 0, 1, 0, 6, 0, 20}
	got := Fold(PseudoHeaderIPv4(src, dst, 6, 20))
	if want := refSum(ph, 0); got != want {
		t.Errorf("PseudoHeaderIPv4 = %#x, want %#x", got, want)
	}
}

// TestSplit checks that a sum carried across pieces of even length equals
// the sum over the whole.
func TestSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, r.IntN(3000))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		cut := r.IntN(len(b)+1) &^ 1
		got := Checksum(b[cut:], Sum(b[:cut], 0))
		if want := ^refSum(b, 0); got != want {
			t.Fatalf("len %d cut %d: got %#x, want %#x", len(b), cut, got, want)
		}
	}
}

func TestLarge(t *testing.T) {
	// 1 MiB of 0xff: enough words to overflow a naive 32-bit accumulator.
	b := make([]byte, 1<<20+1)
	for i := range b {
		b[i] = 0xff
	}
	if got, want := Checksum(b, 0xffffffff), ^refSum(b, 0xffffffff); got != want {
		t.Errorf("got %#x, want %#x", got, want)
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint32(0), uint16(0))
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint32(0), uint16(3))
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(0xffffffff), uint16(2))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32, cut uint16) {
		want := ^refSum(b, initial)
		if got := Checksum(b, initial); got != want {
			t.Fatalf("Checksum(%x, %#x) = %#x, want %#x", b, initial, got, want)
		}
		// A second, independent reference: gopacket's RFC 1071 code.
		if ref := gopacket.FoldChecksum(gopacket.ComputeChecksum(b, initial)); ref != want {
			t.Fatalf("gopacket checksum of %x = %#x, want %#x", b, ref, want)
		}
		// Splitting at an even offset does not change the result.
		c := int(cut) % (len(b) + 1) &^ 1
		if got := Checksum(b[c:], Sum(b[:c], initial)); got != want {
			t.Fatalf("split at %d: got %#x, want %#x", c, got, want)
		}
		// Storing the checksum after the data (word aligned) makes the
		// receiver's check come out as zero (all ones before complement).
		if len(b)%2 == 0 {
			withSum := binary.BigEndian.AppendUint16(append([]byte(nil), b...), want)
			if got := Checksum(withSum, initial); got != 0 {
				t.Fatalf("verify %x: got %#x, want 0", withSum, got)
			}
		}
	})
}

// sumBE is Sum as it was before it read little-endian words: 64-bit
// big-endian words, 32 bytes a loop. BenchmarkSum compares the two in
// one run.
func sumBE(b []byte, initial uint32) uint32 {
	acc, c := uint64(initial), uint64(0)
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b))<<32, c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b))<<16, c)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0])<<8, c)
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	return uint32(acc>>16) + uint32(acc&0xffff)
}

// sumGo is Sum without the wide (AVX2) prefix.
func sumGo(b []byte, initial uint32) uint32 {
	saved := hasAVX2
	hasAVX2 = false
	defer func() { hasAVX2 = saved }()
	return Sum(b, initial)
}

func BenchmarkSum(b *testing.B) {
	buf := make([]byte, 1398) // a TCP segment's payload over VXLAN
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	if Fold(sumBE(buf, 0)) != Fold(Sum(buf, 0)) {
		b.Fatal("sumBE and Sum differ")
	}
	for _, f := range []struct {
		name string
		sum  func([]byte, uint32) uint32
	}{{"wide", Sum}, {"go", sumGo}, {"be32", sumBE}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				f.sum(buf, 0)
			}
		})
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Checksum(buf, 0)
	}
}

// TestUpdateRFC1624 is the example of RFC 1624 section 4: a header whose
// checksum is 0xdd2f has a word change from 0x5555 to 0x3285; equation 3
// gives 0x0000 (equation 2 would give the -0 form 0xffff).
func TestUpdateRFC1624(t *testing.T) {
	if got := Update(0xdd2f, Delta16(0x5555, 0x3285)); got != 0x0000 {
		t.Errorf("Update = %#04x, want 0x0000", got)
	}
	if got := UpdatePartial(0x1234, Delta16(0x0001, 0x0003)); got != 0x1236 {
		t.Errorf("UpdatePartial = %#04x, want 0x1236", got)
	}
}

// FuzzUpdate checks that an incremental update equals a full recompute
// after changing an address and a port of data that carries a checksum.
func FuzzUpdate(f *testing.F) {
	f.Add([]byte("0123456789abcdefghij"), []byte{10, 0, 0, 1}, uint16(80), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, addr []byte, port uint16, at uint8) {
		if len(b) < 8 || len(addr) != 4 {
			return
		}
		b = append([]byte(nil), b...)
		b = b[:len(b)&^1]
		o := int(at) % (len(b) - 6) &^ 1 // word aligned: 4 address bytes and a port
		// The checksum lives in the first word; the rest is data.
		if o < 2 {
			o = 2
		}
		if o+6 > len(b) {
			return
		}
		binary.BigEndian.PutUint16(b, 0)
		binary.BigEndian.PutUint16(b, Checksum(b, 0))
		var old, nw [4]byte
		copy(old[:], b[o:o+4])
		copy(nw[:], addr)
		d := DeltaAddr4(old, nw) + Delta16(binary.BigEndian.Uint16(b[o+4:]), port)
		copy(b[o:], nw[:])
		binary.BigEndian.PutUint16(b[o+4:], port)
		binary.BigEndian.PutUint16(b, Update(binary.BigEndian.Uint16(b), d))
		if allZero(b[2:]) {
			// RFC 1624 section 3: over data that is all zero, eqn. 3
			// gives 0x0000 where a full recompute gives 0xffff, the other
			// zero of ones' complement. No packet has such data (an IP
			// header's version, a pseudo-header's protocol are never 0).
			// Seed testdata/fuzz/FuzzUpdate/93603a958e851018, found by
			// make fuzz.
			if c := binary.BigEndian.Uint16(b); c != 0 && c != 0xffff {
				t.Fatalf("over zero data the checksum is %#x, want 0x0000 or 0xffff", c)
			}
			return
		}
		if got := Checksum(b, 0); got != 0 {
			t.Fatalf("after update the data does not verify: %#x", got)
		}
	})
}

// TestPseudoHeaderIPv6 checks the sum against the pseudo-header of RFC 8200
// section 8.1 laid out in bytes: source, destination, 32-bit upper-layer
// length, three zero bytes, next header.
func TestPseudoHeaderIPv6(t *testing.T) {
	for _, tt := range []struct {
		name   string
		length uint32
		proto  uint8
	}{
		{"udp", 12, 17},
		{"icmpv6", 64, 58},
		{"jumbo length", 0x12345, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
			dst := [16]byte{0xfe, 0x80, 8: 0x02, 0x42, 0xff, 0xfe, 15: 0xff}
			var ph [40]byte
			copy(ph[0:16], src[:])
			copy(ph[16:32], dst[:])
			binary.BigEndian.PutUint32(ph[32:36], tt.length)
			ph[39] = tt.proto
			if got, want := Fold(PseudoHeaderIPv6(src, dst, tt.proto, tt.length)), Fold(Sum(ph[:], 0)); got != want {
				t.Errorf("PseudoHeaderIPv6 folds to %#04x, the laid-out pseudo-header to %#04x", got, want)
			}
		})
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestSumPaths checks Sum against the reference with and without the
// wide (AVX2) prefix, for every length up to 700 bytes (the prefix's
// threshold, loop end and Go tail all move across it) at every alignment
// of an 8-byte word, and over a 64 KiB super-frame's worth of 0xff.
func TestSumPaths(t *testing.T) {
	buf := make([]byte, 700+8)
	for i := range buf {
		buf[i] = byte(i*131 + i>>3)
	}
	big := make([]byte, 1<<16)
	for i := range big {
		big[i] = 0xff
	}
	paths := []bool{false}
	if hasAVX2 {
		paths = append(paths, true)
	}
	saved := hasAVX2
	defer func() { hasAVX2 = saved }()
	for _, wide := range paths {
		hasAVX2 = wide
		for off := range 8 {
			for n := 0; n <= 700; n++ {
				b := buf[off : off+n]
				if got, want := Fold(Sum(b, 0x1234)), refSum(b, 0x1234); got != want {
					t.Fatalf("wide %v, offset %d, %d bytes: got %#x, want %#x", wide, off, n, got, want)
				}
			}
		}
		if got, want := Fold(Sum(big, 0xffff)), refSum(big, 0xffff); got != want {
			t.Fatalf("wide %v, 64 KiB of 0xff: got %#x, want %#x", wide, got, want)
		}
	}
	if !hasAVX2 {
		t.Log("no AVX2 here: only the Go path was checked")
	}
}
