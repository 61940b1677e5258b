package vswitch

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// FuzzParse builds the parsed view of arbitrary bytes and checks that
// every field it reports lies inside the frame and agrees with the bytes,
// and that stripping a single 802.1Q tag and inserting it again gives the
// frame back (the virtio_net_hdr offsets included).
func FuzzParse(f *testing.F) {
	f.Add(tcp4(mB, mA, ipA, ipB, 1000, 22))
	f.Add(ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipA, ipB, wire.ProtoUDP, l4(wire.ProtoUDP, 53, 53, 10))))
	f.Add(ethFrame(mB, mA, []tag{{wire.EtherTypeQinQ, 10}, {wire.EtherTypeVLAN, 20}}, wire.EtherTypeARP, arp(1, mA, ipA, fdb.MAC{}, ipB)))
	f.Add(ethFrame(bcast, mA, nil, wire.EtherTypeARP, arp(2, mA, ipA, mB, ipB)))
	gsoFrame := ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 10}}, wire.EtherTypeIPv4, ipv4(ipA, ipB, wire.ProtoTCP, l4(wire.ProtoTCP, 1, 2, 100)))
	gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gso.TypeTCPv4, HdrLen: 58, GSOSize: 50, CsumStart: 38, CsumOffset: 16}.Put(gsoFrame)
	f.Add(gsoFrame)
	f.Add(make([]byte, VnetHdrLen+13))
	f.Add(ethFrame(mB, mA, []tag{{wire.EtherTypeVLAN, 1}, {wire.EtherTypeVLAN, 2}, {wire.EtherTypeVLAN, 3}}, wire.EtherTypeIPv4, nil)[:VnetHdrLen+24])
	// Found by the fuzzer: a TPID with no room for its tag. parse counted
	// the tag without its TPID, and L3 pointed at the TPID.
	f.Add([]byte("0000000000000000000000\x88\xa8"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		fr.Data = b
		if !fr.parse() {
			if len(b) >= VnetHdrLen+wire.EthernetLen {
				t.Fatalf("parse refused a %d-byte frame", len(b))
			}
			return
		}
		skipped := (fr.L3 - VnetHdrLen - wire.EthernetLen) / 4
		if fr.L3 > len(b) || fr.L3 < VnetHdrLen+wire.EthernetLen || (fr.L3-VnetHdrLen-wire.EthernetLen)%4 != 0 || skipped > min(fr.Tags, 2) {
			t.Fatalf("l3 %d with %d tags in %d bytes", fr.L3, fr.Tags, len(b))
		}
		if fr.Dst != fdb.MAC(b[VnetHdrLen:]) || fr.Src != fdb.MAC(b[VnetHdrLen+6:]) {
			t.Fatal("MACs differ from the bytes")
		}
		if fr.Tags > 0 && fr.OuterTPID != wire.EtherTypeVLAN && fr.OuterTPID != wire.EtherTypeQinQ {
			t.Fatalf("outer tpid %#x", fr.OuterTPID)
		}
		if fr.IPv4 {
			ip := b[fr.L3:]
			if fr.EtherType != wire.EtherTypeIPv4 || len(ip) < 20 || [4]byte(ip[12:16]) != fr.SrcIP || [4]byte(ip[16:20]) != fr.DstIP || ip[9] != fr.Proto {
				t.Fatal("IPv4 fields differ from the bytes")
			}
			if fr.HasPorts {
				ihl := int(ip[0]&0xf) * 4
				if fr.Proto != wire.ProtoTCP && fr.Proto != wire.ProtoUDP || len(ip) < ihl+4 || binary.BigEndian.Uint16(ip[ihl+2:]) != fr.DPort {
					t.Fatal("ports differ from the bytes")
				}
			}
		} else if fr.HasPorts {
			t.Fatal("ports without IPv4")
		}
		if fr.ARP && (fr.EtherType != wire.EtherTypeARP || len(b) < fr.L3+28 || fdb.MAC(b[fr.L3+8:]) != fr.ARPSenderMAC) {
			t.Fatal("ARP fields differ from the bytes")
		}
		if fr.Tags != 1 || fr.OuterTPID != wire.EtherTypeVLAN || skipped != 1 {
			return
		}
		// Strip and insert the tag again.
		buf := make([]byte, Headroom+len(b))
		copy(buf[Headroom:], b)
		fr.buf, fr.off, fr.Data = buf, Headroom, buf[Headroom:]
		vid := fr.TagVID
		l3 := fr.L3
		fr.stripTag()
		if fr.L3 != l3-4 || len(fr.Data) != len(b)-4 || !bytes.Equal(fr.Data[VnetHdrLen+12:], b[VnetHdrLen+16:]) {
			t.Fatal("strip moved the payload")
		}
		before := bytes.Clone(fr.Data)
		o := fr.insertTag(vid)
		want := bytes.Clone(b)
		binary.BigEndian.PutUint16(want[VnetHdrLen+14:], vid) // the priority bits are not kept
		got := fr.buf[o:]
		if hl := binary.LittleEndian.Uint16(b[2:]); b[1] != gso.TypeNone && hl <= 4 {
			// A hdr_len within the tag cannot shrink by 4; it is a
			// hint that no real frame has.
			copy(got[2:4], want[2:4])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("strip then insert:\ngot  %x\nwant %x", got, want)
		}
		fr.restoreTag()
		if !bytes.Equal(fr.Data, before) {
			t.Fatal("restore did not give the untagged frame back")
		}
	})
}
