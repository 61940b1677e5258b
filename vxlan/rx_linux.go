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

// Scatter reads. Once the datagrams of a read were TCP segments of one
// flow, all of one size (a TCP stream's), Read lays the next recvmsg out
// so that the super-frame it coalesces needs no copy: the first datagram
// goes whole into the frame buffer Read was given (its VXLAN header over
// the virtio_net_hdr's place), and every later one is cut in two iovecs,
// its headers (VXLAN and inner) to a scratch area and its payload right
// after the previous payload in the frame buffer. What does not fit the
// prediction (another size, another flow, a datagram that does not join
// the run) is gathered back into the linear buffer and read as before.
// The copy saved is one of the three passes the receive path made over
// the data (the kernel's copy out, this copy, the checksum check).
//
// Measured (2026-12-03, machine shared, load average 13-19; CPU time of
// BenchmarkTunnelTSO -benchtime 20000x, a 60000-byte super-frame written
// by A and read back by B over loopback, 5 runs alternated): with the
// faster checksum.Sum in both builds, no payload copy on either side (this
// and tx_linux.go's iovecs) took 0.78 s against 0.83 s (median; user time
// 0.44 s against 0.49 s): about 6 %. The faster Sum itself was the larger
// win: the copying build with the old Sum took 0.89-1.13 s. Memory copies
// are cheap here; the passes that count are the checksums and the kernel's
// own work in the syscalls (three quarters of the daemon's profile).
const (
	// groMaxSegs is the most datagrams UDP_GRO joins (UDP_GRO_CNT_MAX).
	groMaxSegs = 64
	// maxScatterHdr bounds a datagram's headers in a scatter read: VXLAN,
	// Ethernet, IPv6 and TCP with the most options, 8+14+40+60.
	maxScatterHdr = 128
	// minScatterSize is the smallest datagram size read scattered:
	// groMaxSegs of them hold the largest read, so nothing is cut short.
	minScatterSize = rxBufSize / groMaxSegs
)

// reader is the state of Read, used by one goroutine at a time: the last
// recvmsg's buffer (several datagrams of gro bytes each when the kernel
// coalesced them with UDP_GRO) and how far Read has got in it.
type reader struct {
	t   *Tunnel
	fn  func(fd uintptr) bool // recv, made once so that a read allocates nothing
	buf []byte
	msg unix.Msghdr
	sa  unix.RawSockaddrInet6
	oob [64]byte
	n   int
	err unix.Errno

	off, end, gro int
	from          netip.Addr
	vtep          *VTEP // from's VTEP, nil until a datagram from it is accepted

	// The scatter read's prediction (the size of a datagram and of its
	// headers; size 0: read linearly), its iovecs and what they point at.
	size, hdr int
	iov       [2 * groMaxSegs]unix.Iovec
	parts     [2 * groMaxSegs][]byte
	nparts    int
	scratch   [groMaxSegs][maxScatterHdr]byte
}

func (r *reader) init(t *Tunnel) {
	r.t = t
	r.buf = make([]byte, rxBufSize)
	r.fn = r.recv
}

// setPart makes part i of the next read b, which is not empty.
func (r *reader) setPart(i int, b []byte) {
	r.parts[i] = b
	r.iov[i].Base = &b[0]
	r.iov[i].SetLen(len(b))
}

// recv is the raw read: one recvmsg into the parts set, waiting (false)
// while there is nothing to read.
func (r *reader) recv(fd uintptr) bool {
	r.msg.Name = (*byte)(unsafePointer(&r.sa))
	r.msg.Namelen = unix.SizeofSockaddrInet6
	r.msg.Iov = &r.iov[0]
	r.msg.SetIovlen(r.nparts)
	r.msg.Control = &r.oob[0]
	r.msg.SetControllen(len(r.oob))
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafePointer(&r.msg)), 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	r.n, r.err = int(n), e
	return true
}

// read does one recvmsg into the parts set and checks what came: it
// reports false (the read is done with) for an error queued on the socket,
// a cut datagram or a source not allowed.
func (r *reader) read() (bool, error) {
	t := r.t
	if err := t.rxc.Read(r.fn); err != nil {
		if isClosed(err) {
			return false, errClosed
		}
		return false, fmt.Errorf("vxlan receive: %w", err)
	}
	if r.err != 0 {
		// An ICMP error queued on the socket, or a truncated read: the
		// socket is still good.
		t.c.rxMalformed.Add(1)
		return false, nil
	}
	if r.msg.Flags&unix.MSG_TRUNC != 0 {
		t.c.rxMalformed.Add(1)
		return false, nil
	}
	from := addrOf(&r.sa)
	if !t.cfg.allowed(from) {
		t.c.rxDenied.Add(1)
		return false, nil
	}
	r.gro = r.n
	if g := groSize(r.oob[:r.msg.Controllen]); g > 0 {
		r.gro = g
	}
	if from != r.from || r.vtep == nil {
		r.from = from
		r.vtep = t.vteps.Load().byAddr[from]
	}
	return true, nil
}

// fill reads the next datagram (or coalesced datagrams) from the socket
// into the linear buffer.
func (r *reader) fill() error {
	r.setPart(0, r.buf)
	r.nparts = 1
	r.off, r.end = 0, 0
	ok, err := r.read()
	if ok {
		r.end = r.n
	}
	return err
}

// scatter reads the next datagrams laid out as the prediction says, into
// dst (Read's frame buffer, at least MaxFrame bytes), and returns the
// frame it makes of them (0: none, and what is left was gathered into the
// linear buffer). It reads linearly (fill) when dst is too short for the
// prediction.
func (t *Tunnel) scatter(dst []byte) (int, error) {
	r := &t.rd
	size, hdr := r.size, r.hdr
	const at = vswitch.VnetHdrLen - HeaderLen // where datagram 0 goes
	r.setPart(0, dst[at:at+size])
	np, pos := 1, at+size
	for k := 1; k < groMaxSegs && pos+size-hdr <= len(dst); k++ {
		r.setPart(np, r.scratch[k][:hdr])
		r.setPart(np+1, dst[pos:pos+size-hdr])
		np, pos = np+2, pos+size-hdr
	}
	if (np+1)/2*size < rxBufSize {
		r.size = 0
		return 0, r.fill()
	}
	r.nparts = np
	r.off, r.end = 0, 0
	if ok, err := r.read(); !ok {
		return 0, err
	}
	n := r.n
	if r.gro == n && n <= size {
		// One datagram, in part 0: decapsulated where it lies.
		if !t.accept(dst[at : at+n]) {
			return 0, nil
		}
		clear(dst[:vswitch.VnetHdrLen])
		return vswitch.VnetHdrLen + n - HeaderLen, nil
	}
	if r.gro != size {
		// Not the size predicted: read them the linear way.
		r.size = 0
		r.gather(0)
		return 0, nil
	}
	if !t.accept(dst[at : at+size]) {
		r.gather(size)
		return 0, nil
	}
	clear(dst[:vswitch.VnetHdrLen])
	fl := vswitch.VnetHdrLen + size - HeaderLen
	g, ok := groStart(dst, fl)
	if !ok || HeaderLen+g.hlen-vswitch.VnetHdrLen != hdr {
		r.size = 0
		r.gather(size)
		return fl, nil
	}
	k := 1
	for ; k*size < n; k++ {
		l := min(size, n-k*size) // datagram k's length
		h := r.parts[2*k-1]
		if vni, err := ParseHeader(h); l <= hdr || err != nil || vni != t.cfg.VNI ||
			!g.join(h[HeaderLen:], r.parts[2*k][:l-hdr]) {
			break
		}
		r.vtep.rxPackets.Add(1)
		r.vtep.rxBytes.Add(uint64(l - HeaderLen))
	}
	r.gather(k * size)
	return g.finish(), nil
}

// gather copies the bytes of the last read from offset from on (they are
// whole datagrams) out of the parts into the linear buffer, for Read to
// go on with.
func (r *reader) gather(from int) {
	r.off, r.end = 0, 0
	skip := from
	for i := 0; i < r.nparts && from+r.end < r.n; i++ {
		p := r.parts[i]
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		p = p[skip:min(len(p), skip+r.n-from-r.end)]
		skip = 0
		r.end += copy(r.buf[r.end:], p)
	}
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
// virtio_net_hdr, or a TCP super-frame coalesced from several datagrams.
// Datagrams that are malformed, for another VNI, from a source not
// allowed, or whose inner source is the gateway's or a local port's MAC
// are dropped and counted, and Read goes on to the next. The inner source
// MAC is learned behind the datagram's VTEP.
func (t *Tunnel) Read(buf []byte, offset int) (int, error) {
	r := &t.rd
	dst := buf[offset:]
	for {
		if r.off >= r.end {
			if r.size > 0 {
				n, err := t.scatter(dst)
				if n > 0 || err != nil {
					return n, err
				}
				continue
			}
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
// and returns its length. A run of datagrams as large as minScatterSize
// makes the next read a scatter read.
func (t *Tunnel) coalesce(dst []byte, n int) int {
	r := &t.rd
	g, ok := groStart(dst, n)
	if !ok {
		return n
	}
	if r.gro >= minScatterSize && HeaderLen+g.hlen-vswitch.VnetHdrLen <= maxScatterHdr {
		r.size, r.hdr = r.gro, HeaderLen+g.hlen-vswitch.VnetHdrLen
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

// accept checks the datagram d from r.from: its header, its inner source
// (never the gateway's or a local port's MAC), which it learns behind the
// datagram's VTEP; it counts the datagram, received or dropped.
func (t *Tunnel) accept(d []byte) bool {
	r := &t.rd
	vni, err := ParseHeader(d)
	if err != nil || len(d) < HeaderLen+14 {
		t.c.rxMalformed.Add(1)
		return false
	}
	if vni != t.cfg.VNI {
		t.c.rxBadVNI.Add(1)
		return false
	}
	inner := d[HeaderLen:]
	src := fdb.MAC(inner[6:12])
	if (src == t.cfg.GatewayMAC && !src.IsZero()) || (t.cfg.LocalMAC != nil && t.cfg.LocalMAC(src)) {
		t.c.rxClaimed.Add(1)
		return false
	}
	if r.vtep == nil {
		v, ok := t.vtep(r.from)
		if !ok {
			t.c.rxNoVTEP.Add(1)
			return false
		}
		r.vtep = v
	}
	t.table.Learn(src, r.vtep, t.clock())
	r.vtep.rxPackets.Add(1)
	r.vtep.rxBytes.Add(uint64(len(inner)))
	return true
}

// decap checks the datagram d (accept) and copies its inner frame, behind
// a zero virtio_net_hdr, to dst. It returns the frame's length, or 0 for a
// dropped datagram.
func (t *Tunnel) decap(d, dst []byte) int {
	if len(d)-HeaderLen > len(dst)-vswitch.VnetHdrLen {
		t.c.rxMalformed.Add(1)
		return 0
	}
	if !t.accept(d) {
		return 0
	}
	clear(dst[:vswitch.VnetHdrLen])
	return vswitch.VnetHdrLen + copy(dst[vswitch.VnetHdrLen:], d[HeaderLen:])
}
