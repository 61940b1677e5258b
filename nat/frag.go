package nat

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

// Fragments. The first fragment of a datagram carries the L4 header and is
// translated like any packet; the table then remembers, per datagram (side,
// protocol, source, destination, IP identification), the addresses it was
// rewritten to, for fragmentTimeout. Later fragments of that datagram get the
// same addresses (and the IPv4 header checksum update): they carry no L4
// header, and the L4 checksum, which covers the whole datagram, was already
// updated in the first fragment. A later fragment that arrives before its
// first fragment, or after fragmentTimeout, is dropped (DropFragment).
//
// The memory is a fixed array of fragmentSlots slots indexed by a hash of
// the datagram; a newer datagram that hashes to a busy slot replaces the
// older one. Each slot has its own small lock, held for a few nanoseconds.

const (
	fragmentSlots   = 1024
	fragmentTimeout = int64(30 * time.Second) // Linux ipfrag_time
)

// fragKey names a datagram: side, protocol, source and destination
// address, identification.
type fragKey [12]byte

type fragSlot struct {
	mu      sync.Mutex // guards the fields below
	k       fragKey
	expires int64
	src     [4]byte
	dst     [4]byte
	delta   uint32
	action  Action
}

type fragTable struct {
	slots [fragmentSlots]fragSlot
}

func fragKeyOf(pkt []byte, s side) fragKey {
	ip := wire.IPv4(pkt)
	src, dst := ip.Src(), ip.Dst()
	var k fragKey
	k[0], k[1] = byte(s), ip.Protocol()
	copy(k[2:6], src[:])
	copy(k[6:10], dst[:])
	binary.BigEndian.PutUint16(k[10:12], ip.ID())
	return k
}

func (k *fragKey) slot() int {
	h := uint32(2166136261)
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	return int(h % fragmentSlots)
}

// remember records the translation of a first fragment; pkt is the
// fragment before its rewrite.
func (f *fragTable) remember(pkt []byte, s side, x *xlate, now int64) {
	k := fragKeyOf(pkt, s)
	sl := &f.slots[k.slot()]
	sl.mu.Lock()
	sl.k, sl.expires = k, now+fragmentTimeout
	sl.src, sl.dst, sl.delta, sl.action = x.src.Addr.As4(), x.dst.Addr.As4(), x.ipDelta, x.action
	sl.mu.Unlock()
}

// translate rewrites a later fragment whose first fragment was translated,
// and returns its action, or Drop.
func (f *fragTable) translate(pkt []byte, s side, now int64) Action {
	k := fragKeyOf(pkt, s)
	sl := &f.slots[k.slot()]
	sl.mu.Lock()
	if sl.k != k || sl.expires < now {
		sl.mu.Unlock()
		return Drop
	}
	src, dst, delta, a := sl.src, sl.dst, sl.delta, sl.action
	sl.mu.Unlock()
	ip := wire.IPv4(pkt)
	ip.SetSrc(src)
	ip.SetDst(dst)
	ip.AdjustChecksum(delta)
	return a
}

// fragment translates a later fragment.
func (t *Table) fragment(pkt []byte, s side, now int64) Result {
	a := t.frags.translate(pkt, s, now)
	if a == Drop {
		return t.drop(DropFragment)
	}
	t.fragsTranslated.Add(1)
	return t.done(a, false)
}
