package afpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"github.com/tapswitch/tapswitch/wire"
)

// The receive ring (PACKET_RX_RING, TPACKET_V2): slotCount slots of
// slotSize bytes in blocks of blockSize. A slot holds a struct tpacket2_hdr,
// a struct sockaddr_ll, padding, the virtio_net_hdr and the frame: the
// Ethernet frame starts 76 bytes in (tpacket_rcv: netoff =
// TPACKET_ALIGN(TPACKET2_HDRLEN + 16) + 10), so a 1514-byte frame fits.
// A larger frame (a TSO super-frame, a jumbo frame) does not: with
// PACKET_COPY_THRESH the kernel then queues the whole skb on the socket as
// well, marks the truncated slot TP_STATUS_COPY, and Read takes the frame
// with one read(2), which copies it once, as a TAP read does.
//
// TPACKET_V2 and not V3: with V3 the kernel wakes a reader only when it
// retires a block (full, or its timer, at least 1 ms: tpacket_rcv calls
// sk_data_ready per frame for V1/V2 only), which would put a millisecond
// into every ping; V2 wakes a waiting reader on every frame, and a busy
// reader takes frame after frame from the ring with no system call.
const (
	slotSize  = 2048
	blockSize = 1 << 16
	blocks    = 32
	slotCount = blocks * blockSize / slotSize
)

// sockBuf is the size of the socket's receive buffer (the super-frames
// waiting beside their TP_STATUS_COPY slots) and of its send buffer.
const sockBuf = 8 << 20

// allOffloads are the offloads a packet socket with PACKET_VNET_HDR takes
// and gives: virtio_net_hdr_to_skb and virtio_net_hdr_from_skb know
// partial checksums, TCPv4/v6 with ECN, and UDP_L4.
const allOffloads = vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6 | vswitch.OffloadTSOECN | vswitch.OffloadUSO4 | vswitch.OffloadUSO6

// Port is a port of the switch over an interface of the caller's network
// namespace, read through a TPACKET_V2 receive ring and written with one
// write(2) per frame (packet_snd, PACKET_QDISC_BYPASS). Read is called by
// one goroutine at a time; Write, Close, Name and Offloads are safe for
// concurrent use.
type Port struct {
	f       *os.File        // the packet socket, non-blocking, in Go's netpoller
	rc      syscall.RawConn // of f
	name    string
	ring    []byte // the receive ring, slotCount slots
	readOne func(fd uintptr) bool

	// The reader's state, for readOne (one reader at a time).
	head  int    // next slot to look at
	dst   []byte // where the frame goes
	n     int    // its length, once read
	err   error  // or why Read fails
	waits int    // how often readOne found the ring empty in this Read

	dropped   atomic.Uint64 // frames the reader could not take whole
	closed    atomic.Bool   // set by Close before it closes f
	closeOnce sync.Once
}

var (
	_ vswitch.Port      = (*Port)(nil)
	_ vswitch.Offloader = (*Port)(nil)
)

// Open opens a port on the interface ifname of the caller's namespace:
// an AF_PACKET socket (ETH_P_ALL) bound to it, with a virtio_net_hdr in
// front of every frame (PACKET_VNET_HDR), a receive ring, frames it sends
// handed to the driver directly (PACKET_QDISC_BYPASS) and not read back
// (PACKET_IGNORE_OUTGOING). It needs CAP_NET_RAW, and CAP_NET_ADMIN for
// buffers beyond the sysctl limits (it falls back to those).
func Open(ifname string) (*Port, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("open packet port %s: %w", ifname, err)
	}
	// Protocol 0: nothing arrives before the ring is set up and the
	// socket bound, so no frame waits on the socket's queue that the
	// ring's TP_STATUS_COPY slots would not account for.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet port %s: socket: %w", ifname, err)
	}
	ring, err := setup(fd, ifi.Index)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open packet port %s: %w", ifname, err)
	}
	// os.NewFile sees O_NONBLOCK and registers the socket with the
	// netpoller, as the TAP's file is.
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Munmap(ring)
		return nil, fmt.Errorf("open packet port %s: %w", ifname, err)
	}
	p := &Port{f: f, rc: rc, name: ifname, ring: ring}
	p.readOne = p.readRing
	return p, nil
}

// setup sets the options of the packet socket fd, maps its receive ring
// and binds it to the interface ifindex.
func setup(fd, ifindex int) ([]byte, error) {
	for _, o := range []struct {
		level, opt, val int
		name            string
	}{
		{unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2, "PACKET_VERSION"},
		{unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"},
		{unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH"},
		{unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"},
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	for _, b := range [...][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, b[0], sockBuf) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b[1], sockBuf); err != nil {
				return nil, fmt.Errorf("socket buffer: %w", err)
			}
		}
	}
	req := unix.TpacketReq{Block_size: blockSize, Block_nr: blocks, Frame_size: slotSize, Frame_nr: slotCount}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	ring, err := unix.Mmap(fd, 0, blocks*blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap ring: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Munmap(ring)
		return nil, fmt.Errorf("bind: %w", err)
	}
	return ring, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// slot returns the header of ring slot i.
func (p *Port) slot(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&p.ring[i*slotSize]))
}

// status returns the tp_status word of ring slot h, which the kernel and
// the reader hand each other the slot with.
func status(h *unix.Tpacket2Hdr) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&h.Status))
}

// Read takes the next frame from the receive ring and copies it to
// buf[offset:]: the virtio_net_hdr followed by the Ethernet frame, with
// its 802.1Q tag put back if the kernel took it out (skb_vlan_untag). It
// waits in Go's netpoller while the ring is empty. A frame that does not
// fit a slot is read whole from the socket. It must not be called by two
// goroutines at once.
//
// After Close it returns an error wrapping net.ErrClosed; any other error
// means the interface is gone (ENETDOWN, ENXIO: its namespace was
// deleted, which deletes a veth pair).
func (p *Port) Read(buf []byte, offset int) (int, error) {
	p.dst, p.n, p.err, p.waits = buf[offset:], 0, nil, 0
	err := p.rc.Read(p.readOne)
	p.dst = nil
	if err == nil {
		err = p.err
	}
	if err != nil {
		return 0, p.wrap("read", err)
	}
	return p.n, nil
}

// readRing is the function of RawConn.Read: it takes the next frame
// whole into p.dst and reports true, or reports false to wait for the
// socket to become readable. Frames it cannot take whole are dropped and
// counted.
func (p *Port) readRing(fd uintptr) bool {
	for {
		h := p.slot(p.head)
		st := status(h).Load()
		if st&unix.TP_STATUS_USER == 0 {
			if p.waits > 0 {
				// Woken with nothing in the ring: an error (the
				// interface went away) or a stale readiness.
				if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
					p.err = err
					if e != 0 {
						p.err = syscall.Errno(e)
					}
					return true
				}
			}
			p.waits++
			return false
		}
		n, ok := p.take(int(fd), p.head*slotSize, h, st)
		status(h).Store(unix.TP_STATUS_KERNEL)
		p.head++
		if p.head == slotCount {
			p.head = 0
		}
		if ok {
			p.n = n
			return true
		}
		p.dropped.Add(1)
	}
}

// take copies the frame of the slot at off in the ring (header h, status
// st) to p.dst and returns its length, or false when it cannot be had
// whole.
func (p *Port) take(fd, off int, h *unix.Tpacket2Hdr, st uint32) (int, bool) {
	var tag [4]byte
	tagged := st&unix.TP_STATUS_VLAN_VALID != 0
	if tagged {
		tpid := uint16(wire.EtherTypeVLAN)
		if st&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = h.Vlan_tpid
		}
		binary.BigEndian.PutUint16(tag[:], tpid)
		binary.BigEndian.PutUint16(tag[2:], h.Vlan_tci)
	}
	dst := p.dst
	const head = gso.HdrLen + 12 // virtio_net_hdr and MAC addresses
	if st&unix.TP_STATUS_COPY != 0 {
		// The whole frame waits on the socket, in the order of the
		// ring's slots.
		room := dst
		if tagged {
			room = dst[:len(dst)-len(tag)]
		}
		n, err := recvTrunc(fd, room)
		if err != nil || n < head || n > len(room) {
			return 0, false
		}
		if tagged {
			copy(dst[head+len(tag):], dst[head:n])
			copy(dst[head:], tag[:])
			n += len(tag)
			shiftHdr(dst, len(tag))
		}
		return n, true
	}
	if h.Snaplen < h.Len {
		// Too big for a slot and no room left on the socket for the
		// whole frame (the kernel's copy_thresh path needs rcvbuf).
		return 0, false
	}
	start := off + int(h.Mac) - gso.HdrLen
	end := start + gso.HdrLen + int(h.Snaplen)
	if int(h.Mac) < gso.HdrLen || end > off+slotSize || end-start < head || end-start+len(tag) > len(dst) {
		return 0, false
	}
	frame := p.ring[start:end]
	if !tagged {
		return copy(dst, frame), true
	}
	copy(dst, frame[:head])
	copy(dst[head:], tag[:])
	n := head + len(tag) + copy(dst[head+len(tag):], frame[head:])
	shiftHdr(dst, len(tag))
	return n, true
}

// recvTrunc is recv(2) with MSG_TRUNC into b: it returns the frame's
// real length, more than len(b) when it did not fit.
func recvTrunc(fd int, b []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_TRUNC, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// shiftHdr moves the offsets of the virtio_net_hdr at the start of frame
// that count from the Ethernet header by delta bytes, for a tag inserted
// in front of the EtherType.
func shiftHdr(frame []byte, delta int) {
	h := gso.ParseHdr(frame)
	if h.Flags&gso.FlagNeedsCsum != 0 {
		h.CsumStart += uint16(delta)
	}
	if h.GSOType != gso.TypeNone && h.HdrLen != 0 {
		h.HdrLen += uint16(delta)
	}
	h.Put(frame)
}

// Write sends the frame buf[offset:], a virtio_net_hdr followed by an
// Ethernet frame, out of the interface with one write(2): the kernel
// builds an skb from it (virtio_net_hdr_to_skb: GSO and partial checksum
// kept) and hands it to the driver, which for a veth delivers it to the
// peer. A frame longer than vswitch.MaxFrame fails with
// vswitch.ErrFrameTooBig. Write is safe for concurrent use; after Close it
// returns an error wrapping net.ErrClosed.
func (p *Port) Write(buf []byte, offset int) (int, error) {
	frame := buf[offset:]
	if len(frame) > vswitch.MaxFrame {
		return 0, fmt.Errorf("write packet port %s: %d bytes: %w", p.name, len(frame), vswitch.ErrFrameTooBig)
	}
	n, err := p.f.Write(frame)
	if err != nil {
		return n, p.wrap("write", err)
	}
	return n, nil
}

// wrap turns an error of the socket's file into the error of the Port
// contract.
func (p *Port) wrap(op string, err error) error {
	// RawConn reports a closed file with internal/poll's own error.
	if errors.Is(err, os.ErrClosed) || p.closed.Load() {
		return fmt.Errorf("%s packet port %s: %w", op, p.name, net.ErrClosed)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s packet port %s: %w", op, p.name, err)
}

// Close closes the socket and unmaps its ring. It makes a blocked Read
// return an error wrapping net.ErrClosed (closing the file waits for the
// Read to leave the ring), and it is safe while Write runs on other
// goroutines. Calls after the first return nil. The interface stays.
func (p *Port) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		err = p.f.Close()
		unix.Munmap(p.ring)
	})
	if err != nil {
		return fmt.Errorf("close packet port %s: %w", p.name, err)
	}
	return nil
}

// SetReadDeadline sets the time after which a waiting Read fails with
// os.ErrDeadlineExceeded (wrapped); the zero time waits for ever. For
// tests and tools: the switch never sets one.
func (p *Port) SetReadDeadline(t time.Time) error { return p.f.SetReadDeadline(t) }

// Dropped returns how many received frames were dropped because they
// could not be read whole.
func (p *Port) Dropped() uint64 { return p.dropped.Load() }

// Offloads returns every offload: a packet socket with PACKET_VNET_HDR
// gives and takes them all (vswitch.Offloader). Whether a frame read
// uses them depends on the peer's features.
func (p *Port) Offloads() vswitch.Offloads { return allOffloads }

// Name returns the interface's name.
func (p *Port) Name() string { return p.name }
