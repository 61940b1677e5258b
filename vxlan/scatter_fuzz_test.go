package vxlan

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// FuzzScatter sends B, once it reads scattered, a batch of a TCP stream's
// datagrams (one sendmsg, UDP GSO) with datagram i replaced by arbitrary
// bytes, then a marker frame: nothing panics, and what B hands over before
// the marker, cut back into segments, is the batch's segments in order,
// datagram i's inner frame in its place if B accepts it (VNI 42, long
// enough, not from the gateway's MAC) and left out if not.
func FuzzScatter(f *testing.F) {
	segs := segmentsOf(f, tcpSuperFrame(10*1398, 1398))
	dgs := datagrams(segs)
	f.Add(uint8(3), dgs[3])
	f.Add(uint8(0), dgs[0][:40])
	f.Add(uint8(9), dgs[9][:HeaderLen+14])
	f.Add(uint8(5), append([]byte{0x08, 0, 0, 0, 0, 0, 43, 0}, dgs[5][HeaderLen:]...))
	a, b := pairF(f)
	buf := make([]byte, vswitch.BufSize)
	// A super-frame makes B predict the stream's datagrams (again, if a
	// fuzzed batch made it read linearly).
	learn := func(t testing.TB) {
		for b.rd.size == 0 {
			if _, err := a.Write(tcpSuperFrame(10*1398, 1398), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Read(buf, vswitch.Headroom); err != nil {
				t.Fatal(err)
			}
		}
	}
	learn(f)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB, b.cfg.Port)))
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	marker := datagrams([][]byte{ethFrame(macB, macA, 77)})[0]
	f.Fuzz(func(t *testing.T, at uint8, d []byte) {
		learn(t)
		i := int(at) % len(dgs)
		in := append([][]byte{}, dgs...)
		size := len(dgs[0])
		// UDP GSO cuts at size: every datagram but the last has it.
		if i < len(dgs)-1 {
			d = append(d[:min(len(d), size):min(len(d), size)], make([]byte, size-min(len(d), size))...)
		} else if len(d) == 0 || len(d) > size {
			d = append([]byte{0}, d...)[:min(len(d)+1, size)]
		}
		in[i] = d
		if _, _, err := c.WriteMsgUDP(bytes.Join(in, nil), segmentOOB(size), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(marker); err != nil {
			t.Fatal(err)
		}
		var want [][]byte
		for k, dg := range in {
			vni, err := ParseHeader(dg)
			if k == i && (err != nil || vni != 42 || len(dg) < HeaderLen+14 || bytes.Equal(dg[HeaderLen+6:HeaderLen+12], gwMAC[:])) {
				continue
			}
			want = append(want, append(make([]byte, vswitch.VnetHdrLen), dg[HeaderLen:]...))
		}
		var got [][]byte
		for {
			fr := readFrame(t, b)
			if bytes.Equal(fr[vswitch.VnetHdrLen:], marker[HeaderLen:]) {
				break
			}
			if gso.IsPlain(fr) {
				got = append(got, fr)
			} else {
				got = append(got, segmentsOf(t, fr)...)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for k := range want {
			if !bytes.Equal(got[k], want[k]) {
				t.Fatalf("frame %d: got %x, want %x", k, got[k][:min(80, len(got[k]))], want[k][:min(80, len(want[k]))])
			}
		}
	})
}
