package vxlan

import (
	"bytes"
	"testing"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// FuzzDecap feeds arbitrary datagrams to the decapsulation path: it must
// never panic, and either drop the datagram (counted once) or hand over
// exactly its inner frame behind a zero virtio_net_hdr, for VNI 42, with a
// source that is not the gateway's MAC.
func FuzzDecap(f *testing.F) {
	ok := append([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, ethFrame(macB, macA, 46)[vswitch.VnetHdrLen:]...)
	f.Add(ok)
	f.Add(ok[:HeaderLen+13])
	f.Add(append([]byte{0x08, 0, 0, 0, 0, 0, 43, 0}, ok[HeaderLen:]...))
	f.Add(append([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, ethFrame(macB, gwMAC, 46)[vswitch.VnetHdrLen:]...))
	f.Add([]byte{})
	a, _ := pairF(f)
	a.rd.from = addrB
	dst := make([]byte, vswitch.MaxFrame)
	f.Fuzz(func(t *testing.T, d []byte) {
		before := a.Stats()
		n := a.decap(d, dst)
		after := a.Stats()
		drops := after.RxMalformed + after.RxBadVNI + after.RxClaimed + after.RxNoVTEP -
			(before.RxMalformed + before.RxBadVNI + before.RxClaimed + before.RxNoVTEP)
		if n == 0 {
			if drops != 1 {
				t.Fatalf("dropped %x, counted %d times", d, drops)
			}
			return
		}
		if drops != 0 {
			t.Fatalf("accepted %x and counted a drop", d)
		}
		if vni, err := ParseHeader(d); err != nil || vni != 42 {
			t.Fatalf("accepted vni %d (%v)", vni, err)
		}
		if n != vswitch.VnetHdrLen+len(d)-HeaderLen || !bytes.Equal(dst[vswitch.VnetHdrLen:n], d[HeaderLen:]) ||
			!bytes.Equal(dst[:vswitch.VnetHdrLen], make([]byte, vswitch.VnetHdrLen)) {
			t.Fatalf("frame %x from datagram %x", dst[:n], d)
		}
		if bytes.Equal(d[HeaderLen+6:HeaderLen+12], gwMAC[:]) {
			t.Fatalf("accepted a frame from the gateway's MAC")
		}
	})
}
