package vxlan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// Limits of one sendmsg with UDP_SEGMENT (udp_send_skb): at most
// udpMaxSegments datagrams, and a total that fits one IP packet's length.
const (
	udpMaxSegments = 64
	gsoMaxTotal    = 65000
	txBufSize      = 1<<16 + 2048
)

// SegmentsPerSend returns how many TCP segments of a stream over an inner
// MTU of mtu one sendmsg carries: as many datagrams (VXLAN header, inner
// Ethernet header with a VLAN tag, IP packet) as fit gsoMaxTotal, at most
// udpMaxSegments; at least 1. A container whose TAP caps its super-frames
// at that many segments (tap.Config.GSOMaxSegs) has each sent in one
// sendmsg and coalesced back into one super-frame by a tapswitch
// receiver; at MTU 1450 that is 44 segments, where the 45 to 46 of a
// 64 KiB super-frame took two sendmsgs (44 and the rest), two reads and
// two writes to the receiving container's TAP, and drew twice the ACKs.
func SegmentsPerSend(mtu int) int {
	return max(1, min(udpMaxSegments, gsoMaxTotal/(HeaderLen+wire.EthernetLen+4+mtu)))
}

// hdrStride is the room for one datagram's headers in txState.buf when a
// super-frame is segmented: 2 spare bytes, the VXLAN header and the inner
// Ethernet (two VLAN tags), IP and TCP headers, the largest 2+8+22+60+60.
const hdrStride = 256

// txState is what one Write needs for its sendmsg calls, pooled so that
// concurrent Writes allocate nothing.
type txState struct {
	fn  func(fd uintptr) bool // send, made once
	msg unix.Msghdr
	iov [2 * udpMaxSegments]unix.Iovec // headers and payload of each datagram
	sa  unix.RawSockaddrInet6
	oob [24]byte // one cmsg: UDP_SEGMENT, a uint16
	err unix.Errno
	buf []byte // the headers of a super-frame's datagrams, or a frame whose checksum is completed
}

// txSlots is how many txStates a tunnel keeps for concurrent Writes
// beyond sync.Pool: Writes take them with a compare-and-swap (no lock, no
// allocation). sync.Pool alone, under the race detector, drops a quarter
// of what it is given, so that the zero-allocation tests failed now and
// then with -race (as CI runs them).
const txSlots = 8

// txSlot is one kept txState, on a cache line of its own.
type txSlot struct {
	busy atomic.Bool
	st   *txState // made on first use
	_    [cacheLine - 16]byte
}

// cacheLine is the size the slots are padded to.
const cacheLine = 64

// getTx takes a free slot, starting at the one the flow hash h picks, or
// a txState from the pool when all are busy (slot nil).
func (t *Tunnel) getTx(h uint32) (*txState, *txSlot) {
	for i := range txSlots {
		s := &t.txSlots[(h+uint32(i))%txSlots]
		if !s.busy.Load() && s.busy.CompareAndSwap(false, true) {
			if s.st == nil {
				s.st = newTxState()
			}
			return s.st, s
		}
	}
	return t.txPool.Get().(*txState), nil
}

// putTx gives back what getTx took.
func (t *Tunnel) putTx(st *txState, s *txSlot) {
	if s != nil {
		s.busy.Store(false)
		return
	}
	t.txPool.Put(st)
}

// setIov points st.iov[i] at b, which is not empty.
func (st *txState) setIov(i int, b []byte) {
	st.iov[i].Base = &b[0]
	st.iov[i].SetLen(len(b))
}

func newTxState() *txState {
	st := &txState{buf: make([]byte, txBufSize)}
	st.fn = st.send
	h := (*unix.Cmsghdr)(unsafePointer(&st.oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	return st
}

// send is the raw write. A full socket buffer waits for room (false): the
// backpressure reaches the sending container instead of a drop.
func (st *txState) send(fd uintptr) bool {
	_, _, e := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafePointer(&st.msg)), 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	st.err = e
	return true
}

// Write encapsulates the frame buf[offset:] and sends it: to the VTEP the
// table has for its destination, or to every configured remote for
// broadcast, multicast and unknown unicast. A frame from the gateway's MAC
// is not sent (the gateway is on every host). A frame that would not fit
// the underlay MTU is dropped (ErrFrameTooBig). A TCP super-frame is
// segmented into datagrams sent with one sendmsg each (UDP GSO, up to 64
// datagrams). Write does not modify buf.
func (t *Tunnel) Write(buf []byte, offset int) (int, error) {
	frame := buf[offset:]
	if len(frame) < vswitch.VnetHdrLen+14 {
		t.c.txErrors.Add(1)
		return 0, fmt.Errorf("vxlan: %w", gso.ErrMalformed)
	}
	eth := frame[vswitch.VnetHdrLen:]
	if src := fdb.MAC(eth[6:12]); src == t.cfg.GatewayMAC && !src.IsZero() {
		t.c.txGateway.Add(1)
		return len(frame), nil
	}
	var one [1]*VTEP
	var dsts []*VTEP
	if dst := fdb.MAC(eth[0:6]); !dst.IsMulticast() {
		if v, ok := t.table.Lookup(dst, t.clock()); ok {
			one[0] = v
			dsts = one[:]
		}
	}
	if dsts == nil {
		dsts = t.vteps.Load().remotes
	}
	h := flowHash(eth)
	sock := &t.tx[h%uint32(len(t.tx))]
	st, slot := t.getTx(h)
	defer t.putTx(st, slot)
	if gso.IsPlain(frame) {
		if len(eth)+t.cfg.overhead() > t.mtu {
			t.c.txTooBig.Add(1)
			return 0, vswitch.ErrFrameTooBig
		}
		t.sendFrame(sock, st, dsts, eth)
		return len(frame), nil
	}
	if frame[1] == gso.TypeNone {
		// A partial checksum only: complete it in a copy (buf is not ours).
		if len(eth)+t.cfg.overhead() > t.mtu || len(frame) > len(st.buf) {
			t.c.txTooBig.Add(1)
			return 0, vswitch.ErrFrameTooBig
		}
		c := st.buf[:len(frame)]
		copy(c, frame)
		if err := gso.CompleteChecksum(c); err != nil {
			t.c.txErrors.Add(1)
			return 0, fmt.Errorf("vxlan: %w", err)
		}
		t.sendFrame(sock, st, dsts, c[vswitch.VnetHdrLen:])
		return len(frame), nil
	}
	if err := t.segment(sock, st, dsts, frame); err != nil {
		return 0, err
	}
	return len(frame), nil
}

// segment cuts the super-frame into datagrams and sends them in batches
// with UDP_SEGMENT: every datagram of a batch but the last has the same
// length, as TCP segments of one super-frame do. A datagram is two iovecs,
// its headers (VXLAN and the inner segment's, built in st.buf) and its
// payload, a slice of frame: the payload is never copied in userspace, only
// read once for its checksum. (Copying each segment whole into st.buf
// first, as the switch's own Segmenter.Next does, cost one more pass over
// the data; see rx_linux.go for what dropping both copies measured.)
func (t *Tunnel) segment(sock *txSocket, st *txState, dsts []*VTEP, frame []byte) error {
	var sg gso.Segmenter
	if err := sg.Reset(frame); err != nil {
		t.c.txErrors.Add(1)
		return fmt.Errorf("vxlan: %w", err)
	}
	maxSeg := sg.MaxLen() - vswitch.VnetHdrLen
	if maxSeg+t.cfg.overhead() > t.mtu {
		t.c.txTooBig.Add(1)
		return vswitch.ErrFrameTooBig
	}
	if 2+HeaderLen+sg.HeaderLen()-vswitch.VnetHdrLen > hdrStride {
		t.c.txErrors.Add(1)
		return fmt.Errorf("vxlan: %w: headers of %d bytes", gso.ErrUnsupported, sg.HeaderLen())
	}
	niov, segs, total, size := 0, 0, 0, 0
	for {
		if segs > 0 && (segs == udpMaxSegments || total+HeaderLen+maxSeg > gsoMaxTotal) {
			t.sendAll(sock, st, dsts, niov, segs, size, uint64(total-segs*HeaderLen))
			niov, segs, total = 0, 0, 0
		}
		// NextHeader writes a virtio_net_hdr and the inner headers from
		// a-2; the VXLAN header then takes the last 8 bytes of the
		// virtio_net_hdr.
		a := segs*hdrStride + 2
		n, pay := sg.NextHeader(st.buf[a+HeaderLen-vswitch.VnetHdrLen:])
		if n == 0 {
			break
		}
		copy(st.buf[a:], t.hdr[:])
		h := st.buf[a : a+HeaderLen+n-vswitch.VnetHdrLen]
		st.setIov(niov, h)
		niov++
		if len(pay) > 0 {
			st.setIov(niov, pay)
			niov++
		}
		if segs == 0 {
			size = len(h) + len(pay)
		}
		total += len(h) + len(pay)
		segs++
	}
	if segs > 0 {
		t.sendAll(sock, st, dsts, niov, segs, size, uint64(total-segs*HeaderLen))
	}
	return nil
}

// sendFrame sends the inner frame eth behind the tunnel's header (two
// iovecs, no copy) to every VTEP of dsts.
func (t *Tunnel) sendFrame(sock *txSocket, st *txState, dsts []*VTEP, eth []byte) {
	st.setIov(0, t.hdr[:])
	st.setIov(1, eth)
	t.sendAll(sock, st, dsts, 2, 1, 0, uint64(len(eth)))
}

// sendAll sends the datagrams described by st.iov[:niov] to every VTEP of
// dsts: one datagram, or segs datagrams of size bytes each (the last may
// be shorter), headers included, that the kernel cuts (UDP_SEGMENT). inner
// is the bytes of their inner frames, for the VTEPs' counters.
func (t *Tunnel) sendAll(sock *txSocket, st *txState, dsts []*VTEP, niov, segs, size int, inner uint64) {
	m := &st.msg
	m.Iov = &st.iov[0]
	m.SetIovlen(niov)
	m.Control = nil
	m.SetControllen(0)
	if segs > 1 {
		binary.NativeEndian.PutUint16(st.oob[unix.SizeofCmsghdr:], uint16(size))
		m.Control = &st.oob[0]
		m.SetControllen(unix.CmsgSpace(2))
	}
	m.Name = (*byte)(unsafePointer(&st.sa))
	for _, v := range dsts {
		m.Namelen = putSockaddr(&st.sa, netip.AddrPortFrom(v.Addr, t.cfg.Port))
		st.err = 0
		if err := sock.raw.Write(st.fn); err != nil || st.err != 0 {
			if st.err == unix.EMSGSIZE {
				t.c.txTooBig.Add(uint64(segs))
			}
			v.txDropped.Add(uint64(segs))
			continue
		}
		v.txPackets.Add(uint64(segs))
		v.txBytes.Add(inner)
	}
}

// flowHash hashes the inner flow (MACs, and IP addresses and ports for
// IPv4 and IPv6 TCP/UDP) with FNV-1a, to pick the sending socket, hence
// the outer source port, per flow.
func flowHash(eth []byte) uint32 {
	h := uint32(2166136261)
	mix := func(b []byte) {
		for _, c := range b {
			h = (h ^ uint32(c)) * 16777619
		}
	}
	mix(eth[:12])
	var l4 []byte // the transport header, when it has ports
	switch wire.Ethernet(eth).Type() {
	case wire.EtherTypeIPv4:
		if ip, err := wire.ParseIPv4(eth[wire.EthernetLen:]); err == nil {
			src, dst := ip.Src(), ip.Dst()
			mix(src[:])
			mix(dst[:])
			if p := ip.Protocol(); (p == wire.ProtoTCP || p == wire.ProtoUDP) && !ip.IsFragment() {
				l4 = ip.Payload()
			}
		}
	case wire.EtherTypeIPv6:
		if ip, err := wire.ParseIPv6(eth[wire.EthernetLen:]); err == nil {
			src, dst := ip.Src(), ip.Dst()
			mix(src[:])
			mix(dst[:])
			if p := ip.NextHeader(); p == wire.ProtoTCP || p == wire.ProtoUDP {
				l4 = ip.Payload()
			}
		}
	}
	if len(l4) >= 4 {
		mix(l4[:4]) // source and destination ports
	}
	return h
}
