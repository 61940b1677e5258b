package vxlan

import (
	"encoding/binary"
	"fmt"
	"net/netip"

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

// txState is what one Write needs for its sendmsg calls, pooled so that
// concurrent Writes allocate nothing.
type txState struct {
	fn  func(fd uintptr) bool // send, made once
	msg unix.Msghdr
	iov [2]unix.Iovec
	sa  unix.RawSockaddrInet6
	oob [24]byte // one cmsg: UDP_SEGMENT, a uint16
	err unix.Errno
	buf []byte // datagrams built from a super-frame, or a frame whose checksum is completed
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
	sock := &t.tx[flowHash(eth)%uint32(len(t.tx))]
	st := t.txPool.Get().(*txState)
	defer t.txPool.Put(st)
	if gso.IsPlain(frame) {
		if len(eth)+t.cfg.overhead() > t.mtu {
			t.c.txTooBig.Add(1)
			return 0, vswitch.ErrFrameTooBig
		}
		t.sendAll(sock, st, dsts, eth, 1, 0)
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
		t.sendAll(sock, st, dsts, c[vswitch.VnetHdrLen:], 1, 0)
		return len(frame), nil
	}
	if err := t.segment(sock, st, dsts, frame); err != nil {
		return 0, err
	}
	return len(frame), nil
}

// segment cuts the super-frame into datagrams laid out back to back in
// st.buf (VXLAN header, inner segment) and sends them in batches with
// UDP_SEGMENT: every datagram of a batch but the last has the same length,
// as TCP segments of one super-frame do.
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
	b := st.buf
	const start = 2 // Next writes a 10-byte virtio_net_hdr 2 bytes before each datagram
	pos, segs, size := start, 0, 0
	for {
		if segs > 0 && (segs == udpMaxSegments || pos-start+HeaderLen+maxSeg > gsoMaxTotal) {
			t.sendAll(sock, st, dsts, b[start:pos], segs, size)
			pos, segs = start, 0
		}
		// Next writes its virtio_net_hdr over the 2 bytes before pos:
		// the end of the previous datagram, put back after.
		s0, s1 := b[pos-2], b[pos-1]
		n := sg.Next(b[pos-2:])
		b[pos-2], b[pos-1] = s0, s1
		if n == 0 {
			break
		}
		copy(b[pos:pos+HeaderLen], t.hdr[:])
		l := HeaderLen + n - vswitch.VnetHdrLen
		if segs == 0 {
			size = l
		}
		pos += l
		segs++
	}
	if segs > 0 {
		t.sendAll(sock, st, dsts, b[start:pos], segs, size)
	}
	return nil
}

// sendAll sends payload to every VTEP of dsts. With segs 1, payload is an
// inner frame sent behind the tunnel's header (two iovecs, no copy); with
// more, it is segs datagrams of size bytes (the last may be shorter),
// headers included, sent with UDP_SEGMENT.
func (t *Tunnel) sendAll(sock *txSocket, st *txState, dsts []*VTEP, payload []byte, segs, size int) {
	m := &st.msg
	if size == 0 {
		st.iov[0].Base = &t.hdr[0]
		st.iov[0].SetLen(HeaderLen)
		st.iov[1].Base = &payload[0]
		st.iov[1].SetLen(len(payload))
		m.Iov = &st.iov[0]
		m.SetIovlen(2)
		m.Control = nil
		m.SetControllen(0)
	} else {
		st.iov[0].Base = &payload[0]
		st.iov[0].SetLen(len(payload))
		m.Iov = &st.iov[0]
		m.SetIovlen(1)
		m.Control, m.Controllen = nil, 0
		if segs > 1 {
			binary.NativeEndian.PutUint16(st.oob[unix.SizeofCmsghdr:], uint16(size))
			m.Control = &st.oob[0]
			m.SetControllen(unix.CmsgSpace(2))
		}
	}
	inner := uint64(len(payload) - (segs-1)*HeaderLen)
	if size != 0 {
		inner -= HeaderLen
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
