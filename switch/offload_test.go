package vswitch_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/checksum"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/switch/memport"
)

// tsoFrame builds what a TAP with TSO on hands the switch: a TCP/IPv4
// super-frame dst <- src of len(payload) bytes to be cut into mss-byte
// segments (gso_size), NEEDS_CSUM with the pseudo-header sum in the TCP
// checksum field. mss 0 makes an ordinary frame with only a partial
// checksum (GSO_NONE).
func tsoFrame(dst, src fdb.MAC, mss int, payload []byte) []byte {
	f := make([]byte, vswitch.VnetHdrLen, 80+len(payload))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	f = append(f, 0x08, 0x00)
	l3 := len(f)
	f = append(f, 0x45, 0)                                        // version, IHL, TOS
	f = binary.BigEndian.AppendUint16(f, uint16(40+len(payload))) // total length
	f = append(f, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0)               // id, DF, TTL, TCP, checksum
	f = append(f, 198, 51, 100, 2, 198, 51, 100, 3)               // src, dst
	binary.BigEndian.PutUint16(f[l3+10:], checksum.Checksum(f[l3:l3+20], 0))
	l4 := len(f)
	f = append(f, 0xc0, 0x00, 0x14, 0x51) // ports 49152 -> 5201
	f = append(f, 0, 0, 0, 100)           // seq
	f = append(f, 0, 0, 0, 1)             // ack
	f = append(f, 0x50, 0x18)             // data offset 5, PSH|ACK
	f = append(f, 0xff, 0xff, 0, 0, 0, 0) // window, checksum, urgent
	f = append(f, payload...)
	pseudo := checksum.PseudoHeaderIPv4([4]byte(f[l3+12:]), [4]byte(f[l3+16:]), 6, uint16(20+len(payload)))
	binary.BigEndian.PutUint16(f[l4+16:], checksum.Fold(pseudo))
	h := gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: uint16(l4 + 20 - vswitch.VnetHdrLen),
		GSOSize: uint16(mss), CsumStart: uint16(l4 - vswitch.VnetHdrLen), CsumOffset: 16}
	if mss == 0 {
		h.GSOType = gso.TypeNone
	}
	h.Put(f)
	return f
}

func payloadOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 13)
	}
	return b
}

// verifyTCP4 checks that f is an ordinary frame (zero virtio_net_hdr) with
// valid IPv4 and TCP checksums, and returns its TCP payload.
func verifyTCP4(t *testing.T, f []byte) []byte {
	t.Helper()
	if !bytes.Equal(f[:vswitch.VnetHdrLen], make([]byte, vswitch.VnetHdrLen)) {
		t.Fatalf("virtio_net_hdr % x, want zero", f[:vswitch.VnetHdrLen])
	}
	ip := f[vswitch.VnetHdrLen+14:]
	if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
		t.Fatalf("IPv4 total length %d, frame has %d", binary.BigEndian.Uint16(ip[2:]), len(ip))
	}
	if checksum.Checksum(ip[:20], 0) != 0 {
		t.Fatal("IPv4 header checksum does not verify")
	}
	pseudo := checksum.PseudoHeaderIPv4([4]byte(ip[12:]), [4]byte(ip[16:]), 6, uint16(len(ip)-20))
	if checksum.Checksum(ip[20:], pseudo) != 0 {
		t.Fatal("TCP checksum does not verify")
	}
	return ip[40:]
}

func TestTSOToNonOffloadPort(t *testing.T) {
	r := newRig(t, vswitch.Config{})
	a := memport.New("a", 64)
	a.SetOffloads(vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6)
	if _, err := r.sw.AddPort(a); err != nil {
		t.Fatal(err)
	}
	r.ports["a"] = a
	r.add(t, "b")
	learn := frame(bcast, macB, 1)
	r.forward(t, "b", learn, "a")

	const mss, mtu = 1460, 1500
	payload := payloadOf(64000)
	r.send(t, "a", tsoFrame(macB, macA, mss, payload))
	reassemble(t, r.ports["b"], payload, func(i int, f, got []byte) []byte {
		if eth := len(f) - vswitch.VnetHdrLen; eth > 14+mtu {
			t.Fatalf("segment %d: %d-byte Ethernet frame, more than the MTU allows", i, eth)
		}
		p := verifyTCP4(t, f)
		ip := f[vswitch.VnetHdrLen+14:]
		if seq := binary.BigEndian.Uint32(ip[24:]); seq != uint32(100+len(got)) {
			t.Fatalf("segment %d: seq %d, want %d", i, seq, 100+len(got))
		}
		if psh := ip[33]&0x08 != 0; psh != (len(got)+len(p) == len(payload)) {
			t.Fatalf("segment %d: PSH %v, want it only on the last", i, psh)
		}
		return p
	})
	st, _ := r.sw.Stats(r.ids["b"])
	if want := uint64((len(payload) + mss - 1) / mss); st.TxPackets != want {
		t.Errorf("b tx_packets: got %d, want %d (one per segment)", st.TxPackets, want)
	}
}

func TestOffloadFlood(t *testing.T) {
	// a and c take TSO, b does not: an unknown-unicast super-frame from a
	// reaches c whole and b as segments; a partial-checksum frame reaches
	// b completed.
	r := newRig(t, vswitch.Config{})
	for _, n := range []string{"a", "b", "c"} {
		p := memport.New(n, 128)
		if n != "b" {
			p.SetOffloads(vswitch.OffloadCsum | vswitch.OffloadTSO4)
		}
		id, err := r.sw.AddPort(p)
		if err != nil {
			t.Fatal(err)
		}
		r.ports[n], r.ids[n] = p, id
	}
	for _, info := range r.sw.Ports() {
		if want := r.ports[info.Name].Offloads(); info.Offloads != want {
			t.Errorf("port %s: Offloads %v, want %v", info.Name, info.Offloads, want)
		}
	}
	super := tsoFrame(macX, macA, 1000, payloadOf(5500))
	r.send(t, "a", super)
	if f, ok := r.ports["c"].Recv(wait); !ok || !bytes.Equal(f, super) {
		t.Fatal("c: did not get the super-frame whole")
	}
	n := 0
	for ; n < 6; n++ {
		f, ok := r.ports["b"].Recv(wait)
		if !ok {
			t.Fatalf("b: %d segments, want 6", n)
		}
		verifyTCP4(t, f)
	}

	partial := tsoFrame(macX, macA, 0, payloadOf(333))
	r.send(t, "a", append([]byte(nil), partial...))
	f, ok := r.ports["b"].Recv(wait)
	if !ok {
		t.Fatal("b: no frame")
	}
	if p := verifyTCP4(t, f); !bytes.Equal(p, payloadOf(333)) {
		t.Fatal("b: payload changed")
	}
	if f, ok := r.ports["c"].Recv(wait); !ok || len(f) != len(partial) {
		t.Fatal("c: no frame of the right length")
	}
}

func TestMalformedSuperFrameDropped(t *testing.T) {
	r := newRig(t, vswitch.Config{}, "b")
	a := memport.New("a", 8)
	a.SetOffloads(vswitch.OffloadCsum | vswitch.OffloadTSO4)
	if _, err := r.sw.AddPort(a); err != nil {
		t.Fatal(err)
	}
	r.ports["a"] = a
	bad := tsoFrame(macX, macA, 1000, payloadOf(3000))
	bad = bad[:len(bad)-10] // IP total length beyond the frame
	r.send(t, "a", bad)
	ok := frame(bcast, macA, 1)
	r.forward(t, "a", ok, "b")
	st, _ := r.sw.Stats(r.ids["b"])
	if st.TxDropped != 1 {
		t.Errorf("b tx_dropped: got %d, want 1", st.TxDropped)
	}
}

// withTag returns f (virtio_net_hdr first) with an 802.1Q tag for vid
// inserted after the MACs and the header's offsets moved with it, as a
// TAP hands the switch a super-frame sent on a VLAN device.
func withTag(f []byte, vid uint16) []byte {
	const head = vswitch.VnetHdrLen + 12
	out := append([]byte(nil), f[:head]...)
	out = binary.BigEndian.AppendUint16(out, vswitch.EtherVLAN)
	out = binary.BigEndian.AppendUint16(out, vid)
	out = append(out, f[head:]...)
	h := gso.ParseHdr(out)
	h.CsumStart += 4
	h.HdrLen += 4
	h.Put(out)
	return out
}

// TestTSOAcrossVLANTags sends super-frames between an access port and
// trunks: to a trunk without offloads they arrive as tagged segments with
// valid checksums, to a trunk with offloads whole and tagged with the
// virtio_net_hdr offsets moved by 4, and from a trunk to an access port
// whole and untagged with the offsets moved back.
func TestTSOAcrossVLANTags(t *testing.T) {
	r := newRig(t, vswitch.Config{})
	const tso = vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6
	for _, p := range []struct {
		name string
		off  vswitch.Offloads
		pc   vswitch.PortConfig
	}{
		{"a", tso, vswitch.PortConfig{VLAN: 10}},
		{"t", 0, vswitch.PortConfig{Trunk: []uint16{10}}},
		{"o", tso, vswitch.PortConfig{Trunk: []uint16{10}}},
	} {
		mp := memport.New(p.name, 128)
		mp.SetOffloads(p.off)
		id, err := r.sw.AddPortConfig(mp, p.pc)
		if err != nil {
			t.Fatal(err)
		}
		r.ports[p.name], r.ids[p.name] = mp, id
	}
	// B behind t, C behind o, A behind a, all in VLAN 10.
	r.send(t, "t", withTag(frame(bcast, macB, 1), 10))
	r.send(t, "o", withTag(frame(bcast, macC, 2), 10))
	r.send(t, "a", frame(bcast, macA, 3))
	for _, n := range []string{"a", "o", "a", "t", "t", "o"} {
		if _, ok := r.ports[n].Recv(wait); !ok {
			t.Fatalf("port %s: learning frame missing", n)
		}
	}

	const mss = 1460
	payload := payloadOf(20000)
	// To the trunk without offloads: tagged segments.
	r.send(t, "a", tsoFrame(macB, macA, mss, payload))
	reassemble(t, r.ports["t"], payload, func(i int, f, _ []byte) []byte {
		o := vswitch.VnetHdrLen + 12
		if binary.BigEndian.Uint16(f[o:]) != vswitch.EtherVLAN || binary.BigEndian.Uint16(f[o+2:])&0xfff != 10 {
			t.Fatalf("segment %d: not tagged for VLAN 10: % x", i, f[o:o+4])
		}
		return verifyTCP4(t, append(append([]byte(nil), f[:o]...), f[o+4:]...))
	})
	// To the trunk with offloads: whole, tagged, offsets moved.
	sent := tsoFrame(macC, macA, mss, payload)
	r.send(t, "a", sent)
	f, ok := r.ports["o"].Recv(wait)
	if !ok {
		t.Fatal("o: no super-frame")
	}
	if want := withTag(sent, 10); !bytes.Equal(f, want) {
		t.Fatalf("o: got header % x, want % x", f[:40], want[:40])
	}
	// From the trunk to the access port: whole, untagged, offsets back.
	sent = tsoFrame(macA, macC, mss, payload)
	r.send(t, "o", withTag(sent, 10))
	f, ok = r.ports["a"].Recv(wait)
	if !ok {
		t.Fatal("a: no super-frame")
	}
	if !bytes.Equal(f, sent) {
		t.Fatalf("a: got header % x, want % x", f[:40], sent[:40])
	}
}

// reassemble receives frames from p until the payloads that each returns
// of them (given the payload so far) add up to the length of payload, and
// checks that they are payload.
func reassemble(t *testing.T, p *memport.Port, payload []byte, each func(i int, f, got []byte) []byte) {
	t.Helper()
	var got []byte
	for i := 0; len(got) < len(payload); i++ {
		f, ok := p.Recv(wait)
		if !ok {
			t.Fatalf("segment %d: none after %d payload bytes", i, len(got))
		}
		got = append(got, each(i, f, got)...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("segments' payload differs from the super-frame's")
	}
}
