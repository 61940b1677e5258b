package vxlan

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// rxBufSize holds the largest UDP payload, which is also the most UDP_GRO
// coalesces into one read.
const rxBufSize = 1 << 16

// reader is the state of Read, used by one goroutine at a time: the last
// recvmsg's buffer (several datagrams of gro bytes each when the kernel
// coalesced them with UDP_GRO) and how far Read has got in it.
type reader struct {
	t   *Tunnel
	fn  func(fd uintptr) bool // recv, made once so that a read allocates nothing
	buf []byte
	msg unix.Msghdr
	iov unix.Iovec
	sa  unix.RawSockaddrInet6
	oob [64]byte
	n   int
	err unix.Errno

	off, end, gro int
	from          netip.Addr
	vtep          *VTEP // from's VTEP, nil until a datagram from it is accepted
}

func (r *reader) init(t *Tunnel) {
	r.t = t
	r.buf = make([]byte, rxBufSize)
	r.fn = r.recv
}

// recv is the raw read: one recvmsg, waiting (false) while there is
// nothing to read.
func (r *reader) recv(fd uintptr) bool {
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	r.msg.Name = (*byte)(unsafePointer(&r.sa))
	r.msg.Namelen = unix.SizeofSockaddrInet6
	r.msg.Iov = &r.iov
	r.msg.Iovlen = 1
	r.msg.Control = &r.oob[0]
	r.msg.SetControllen(len(r.oob))
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafePointer(&r.msg)), 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	r.n, r.err = int(n), e
	return true
}

// fill reads the next datagram (or coalesced datagrams) from the socket.
func (r *reader) fill() error {
	t := r.t
	if err := t.rxc.Read(r.fn); err != nil {
		if isClosed(err) {
			return errClosed
		}
		return fmt.Errorf("vxlan receive: %w", err)
	}
	r.off, r.end = 0, 0
	if r.err != 0 {
		// An ICMP error queued on the socket, or a truncated read: the
		// socket is still good.
		t.c.rxMalformed.Add(1)
		return nil
	}
	if r.msg.Flags&unix.MSG_TRUNC != 0 {
		t.c.rxMalformed.Add(1)
		return nil
	}
	from := addrOf(&r.sa)
	if !t.cfg.allowed(from) {
		t.c.rxDenied.Add(1)
		return nil
	}
	r.end, r.gro = r.n, r.n
	if g := groSize(r.oob[:r.msg.Controllen]); g > 0 {
		r.gro = g
	}
	if from != r.from || r.vtep == nil {
		r.from = from
		r.vtep = t.vteps.Load().byAddr[from]
	}
	return nil
}

// groSize returns the segment size of a UDP_GRO control message in oob,
// or 0 if there is none.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafePointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.SizeofCmsghdr+4 {
			return int(binary.NativeEndian.Uint32(oob[unix.SizeofCmsghdr:]))
		}
		oob = oob[min(unix.CmsgSpace(l-unix.SizeofCmsghdr), len(oob)):]
	}
	return 0
}

// Read returns the next frame from the tunnel, decapsulated, with a zero
// virtio_net_hdr. Datagrams that are malformed, for another VNI, from a
// source not allowed, or whose inner source is the gateway's or a local
// port's MAC are dropped and counted, and Read goes on to the next. The
// inner source MAC is learned behind the datagram's VTEP.
func (t *Tunnel) Read(buf []byte, offset int) (int, error) {
	r := &t.rd
	dst := buf[offset:]
	for {
		if r.off >= r.end {
			if err := r.fill(); err != nil {
				return 0, err
			}
			continue
		}
		d := r.buf[r.off:min(r.off+r.gro, r.end)]
		r.off += len(d)
		if n := t.decap(d, dst); n > 0 {
			if r.off < r.end {
				n = t.coalesce(dst, n)
			}
			return n, nil
		}
	}
}

// coalesce appends to the TCP segment dst[:n] the segments of the same
// flow that follow it in the read buffer, making one super-frame (gro.go),
// and returns its length.
func (t *Tunnel) coalesce(dst []byte, n int) int {
	r := &t.rd
	g, ok := groStart(dst, n)
	if !ok {
		return n
	}
	for r.off < r.end {
		d := r.buf[r.off:min(r.off+r.gro, r.end)]
		if vni, err := ParseHeader(d); err != nil || vni != t.cfg.VNI || !g.add(d[HeaderLen:]) {
			break
		}
		r.off += len(d)
		r.vtep.rxPackets.Add(1)
		r.vtep.rxBytes.Add(uint64(len(d) - HeaderLen))
	}
	return g.finish()
}

// decap checks the datagram d from r.from and copies its inner frame,
// behind a zero virtio_net_hdr, to dst. It returns the frame's length, or
// 0 for a dropped datagram.
func (t *Tunnel) decap(d, dst []byte) int {
	r := &t.rd
	vni, err := ParseHeader(d)
	if err != nil || len(d) < HeaderLen+14 || len(d)-HeaderLen > len(dst)-vswitch.VnetHdrLen {
		t.c.rxMalformed.Add(1)
		return 0
	}
	if vni != t.cfg.VNI {
		t.c.rxBadVNI.Add(1)
		return 0
	}
	inner := d[HeaderLen:]
	src := fdb.MAC(inner[6:12])
	if (src == t.cfg.GatewayMAC && !src.IsZero()) || (t.cfg.LocalMAC != nil && t.cfg.LocalMAC(src)) {
		t.c.rxClaimed.Add(1)
		return 0
	}
	if r.vtep == nil {
		v, ok := t.vtep(r.from)
		if !ok {
			t.c.rxNoVTEP.Add(1)
			return 0
		}
		r.vtep = v
	}
	t.table.Learn(src, r.vtep, t.clock())
	clear(dst[:vswitch.VnetHdrLen])
	n := copy(dst[vswitch.VnetHdrLen:], inner)
	r.vtep.rxPackets.Add(1)
	r.vtep.rxBytes.Add(uint64(n))
	return vswitch.VnetHdrLen + n
}
