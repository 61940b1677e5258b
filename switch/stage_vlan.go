package vswitch

import (
	"encoding/binary"

	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// vlanStage classifies the frame into a VLAN and strips its tag: inside
// the switch a frame is untagged and Frame.VLAN says where it belongs; the
// output stage tags it again for a port that carries the VLAN tagged.
//
//   - untagged: the port's VLAN (an access port's, a trunk's native VLAN);
//   - one 802.1Q tag (TPID 0x8100) on a trunk: the tag's VLAN, which must be
//     one of PortConfig.Trunk; VLAN ID 0 (a priority tag) means the native
//     VLAN. The tag (and its priority bits) is removed;
//   - anything else is dropped and counted in RxVLANErrors: a tag on an
//     access port, an 802.1ad (0x88a8) tag, two or more tags, a VLAN the
//     trunk does not carry, a tagged frame too short to hold its tag.
type vlanStage struct{}

func (vlanStage) Process(f *Frame) Verdict {
	pt := f.in
	if f.Tags == 0 {
		f.VLAN = pt.cfg.VLAN
		return Continue
	}
	if f.Tags > 1 || f.OuterTPID != wire.EtherTypeVLAN || pt.trunk == nil || f.L3 != VnetHdrLen+wire.EthernetLen+4 {
		return DropVLAN
	}
	vid := f.TagVID
	if vid == 0 {
		vid = pt.cfg.VLAN
	} else if pt.trunk[vid>>6]&(1<<(vid&63)) == 0 {
		return DropVLAN
	}
	f.VLAN = vid
	f.stripTag()
	return Continue
}

// stripTag removes the frame's 802.1Q tag by moving the virtio_net_hdr
// and the MAC addresses 4 bytes forward over it: 22 bytes copied, whatever
// the frame's size.
func (f *Frame) stripTag() {
	o := f.off
	const head = VnetHdrLen + 12
	copy(f.buf[o+4:o+4+head], f.buf[o:o+head])
	f.off += 4
	f.Data = f.buf[f.off:]
	f.L3 -= 4
	f.Tags, f.OuterTPID, f.TagVID = 0, 0, 0
	shiftHdr(f.Data, -4)
}

// insertTag writes the frame with an 802.1Q tag for vid in front of its
// EtherType, 4 bytes before f.off in the Headroom, and returns the offset
// it starts at. restoreTag undoes it; in between the frame must not be
// read through f.Data.
func (f *Frame) insertTag(vid uint16) int {
	o := f.off - 4
	const head = VnetHdrLen + 12
	copy(f.buf[o:o+head], f.buf[f.off:f.off+head])
	binary.BigEndian.PutUint16(f.buf[o+head:], wire.EtherTypeVLAN)
	binary.BigEndian.PutUint16(f.buf[o+head+2:], vid)
	shiftHdr(f.buf[o:], 4)
	return o
}

// restoreTag removes the tag insertTag wrote, keeping any change a write
// made to the virtio_net_hdr (software checksum completion zeroes it).
func (f *Frame) restoreTag() {
	o := f.off - 4
	const head = VnetHdrLen + 12
	shiftHdr(f.buf[o:], -4)
	copy(f.buf[f.off:f.off+head], f.buf[o:o+head])
}

// shiftHdr moves the offsets of a virtio_net_hdr that count from the
// Ethernet header (csum_start and hdr_len, when in use) by delta bytes,
// for a tag inserted (4) or removed (-4) in front of the EtherType.
func shiftHdr(frame []byte, delta int) {
	h := frame[:VnetHdrLen]
	if h[0]&gso.FlagNeedsCsum != 0 {
		binary.LittleEndian.PutUint16(h[6:], uint16(int(binary.LittleEndian.Uint16(h[6:]))+delta))
	}
	if h[1] != gso.TypeNone {
		if hl := binary.LittleEndian.Uint16(h[2:]); hl != 0 {
			binary.LittleEndian.PutUint16(h[2:], uint16(int(hl)+delta))
		}
	}
}
