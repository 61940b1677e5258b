package vxlan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/fdb"
	vswitch "github.com/tapswitch/tapswitch/switch"
)

// maxVTEPs bounds the VTEPs a tunnel knows (configured and learned).
const maxVTEPs = 4096

// Tunnel is a VXLAN tunnel end point as a vswitch.Port (see the package
// doc). Read is called by one goroutine at a time; Write, Close and the
// listing methods are safe for concurrent use.
type Tunnel struct {
	cfg   Config
	hdr   [HeaderLen]byte // the header of every datagram sent
	clock func() int64
	table *Table
	neigh *NeighTable // addresses behind the tunnel, for suppression
	mtu   int         // underlay MTU

	rx     *net.UDPConn
	rxc    syscall.RawConn
	joined bool // t is in the reuseport group of its address (group_linux.go)
	tx     []txSocket

	vmu   sync.Mutex // guards adding to vteps
	vteps atomic.Pointer[vtepSet]

	rd      reader    // Read's state: one goroutine at a time
	txPool  sync.Pool // *txState, when every slot is busy
	txSlots [txSlots]txSlot

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	c counters
}

var (
	_ vswitch.Port      = (*Tunnel)(nil)
	_ vswitch.Offloader = (*Tunnel)(nil)
)

type txSocket struct {
	conn *net.UDPConn
	raw  syscall.RawConn
}

// vtepSet is an immutable snapshot of the known VTEPs.
type vtepSet struct {
	byAddr  map[netip.Addr]*VTEP
	remotes []*VTEP // the flood list
}

// counters are the tunnel's own drop counters (a VTEP counts its traffic).
type counters struct {
	rxMalformed, rxBadVNI, rxDenied, rxClaimed atomic.Uint64
	rxNoVTEP                                   atomic.Uint64
	txTooBig, txGateway, txErrors              atomic.Uint64
	arpSuppressed, ndSuppressed                atomic.Uint64
}

// Stats are a tunnel's counters.
type Stats struct {
	// RxMalformed counts datagrams too short for a VXLAN header and an
	// Ethernet header, or without the I flag.
	RxMalformed uint64 `json:"rx_malformed"`
	// RxBadVNI counts datagrams for another VNI.
	RxBadVNI uint64 `json:"rx_bad_vni"`
	// RxDenied counts datagrams from a source outside Config.Allow.
	RxDenied uint64 `json:"rx_denied"`
	// RxClaimed counts frames whose source is the gateway's MAC or a MAC
	// of a local port.
	RxClaimed uint64 `json:"rx_claimed"`
	// RxNoVTEP counts datagrams from a new source when the tunnel already
	// knows its maximum of VTEPs.
	RxNoVTEP uint64 `json:"rx_no_vtep"`
	// TxTooBig counts frames that would not fit the underlay MTU once
	// encapsulated (never fragmented: the outer packets have DF set).
	TxTooBig uint64 `json:"tx_too_big"`
	// TxGateway counts frames from the gateway's MAC, which stay on this
	// host (the gateway is the same on every host).
	TxGateway uint64 `json:"tx_gateway"`
	// TxErrors counts frames that could not be encapsulated (a malformed
	// super-frame).
	TxErrors uint64 `json:"tx_errors"`
	// ARPSuppressed and NDSuppressed count the ARP requests and
	// neighbour solicitations the switch answered instead of sending
	// them through the tunnel (Config.Suppress).
	ARPSuppressed uint64     `json:"arp_suppressed"`
	NDSuppressed  uint64     `json:"nd_suppressed"`
	Table         TableStats `json:"table"`
	// Neigh counts the addresses learned behind the tunnel.
	Neigh TableStats `json:"neigh"`
}

// New opens the tunnel's sockets: one bound to Local:Port that receives,
// Sockets bound to Local and an ephemeral port that send, all with DF set
// (IP_PMTUDISC_DO). It needs no privilege for a Port above 1023.
func New(cfg Config) (_ *Tunnel, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	t := &Tunnel{cfg: cfg, clock: cfg.Clock, mtu: cfg.MTU, stop: make(chan struct{})}
	if t.mtu == 0 {
		if t.mtu, err = UnderlayMTU(cfg.Local); err != nil {
			return nil, err
		}
	}
	if t.clock == nil {
		epoch := time.Now()
		t.clock = func() int64 { return int64(time.Since(epoch)) }
	}
	if t.table, err = NewTable(cfg.Table); err != nil {
		return nil, err
	}
	if t.neigh, err = NewNeighTable(cfg.Table); err != nil {
		return nil, err
	}
	PutHeader(t.hdr[:], cfg.VNI)
	set := &vtepSet{byAddr: map[netip.Addr]*VTEP{}}
	for _, r := range cfg.Remotes {
		v := &VTEP{Addr: r, Remote: true}
		set.byAddr[r] = v
		set.remotes = append(set.remotes, v)
	}
	t.vteps.Store(set)
	defer func() {
		if err != nil {
			t.closeSockets()
		}
	}()
	if err = join(netip.AddrPortFrom(cfg.Local, cfg.Port), t); err != nil {
		return nil, err
	}
	t.joined = true
	for range cfg.Sockets {
		c, raw, err := listen(netip.AddrPortFrom(cfg.Local, 0), false)
		if err != nil {
			return nil, err
		}
		t.tx = append(t.tx, txSocket{c, raw})
	}
	t.rd.init(t)
	t.txPool.New = func() any { return newTxState() }
	t.wg.Add(1)
	go t.ageLoop()
	return t, nil
}

// listen opens a UDP socket on ap with DF set and, for the receiving one,
// UDP_GRO on (where the kernel has it) and a larger receive buffer.
func listen(ap netip.AddrPort, receive bool) (*net.UDPConn, syscall.RawConn, error) {
	lc := net.ListenConfig{}
	if receive {
		// Tunnels of several VNIs share the port (group_linux.go).
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err == nil {
				err = serr
			}
			return err
		}
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", net.UDPAddrFromAddrPort(ap).String())
	if err != nil {
		return nil, nil, fmt.Errorf("vxlan socket on %s: %w", ap, err)
	}
	c := pc.(*net.UDPConn)
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("vxlan socket on %s: %w", ap, err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if ap.Addr().Is4() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
		}
		if serr == nil && receive {
			// Best effort: without UDP_GRO every datagram is read alone.
			unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("vxlan socket on %s: set DF: %w", ap, err)
	}
	if receive {
		c.SetReadBuffer(4 << 20) // capped by net.core.rmem_max
	} else {
		c.SetWriteBuffer(4 << 20)
	}
	return c, raw, nil
}

// UnderlayMTU returns the MTU of the interface that holds addr.
func UnderlayMTU(addr netip.Addr) (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
					return ifc.MTU, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("underlay mtu: no interface has the address %s", addr)
}

func (t *Tunnel) ageLoop() {
	defer t.wg.Done()
	every := min(max(time.Duration(t.table.ageing)/10, 100*time.Millisecond), time.Second)
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			now := t.clock()
			t.table.Expire(now)
			t.neigh.Expire(now)
		}
	}
}

// Name returns the port's name (Config.Name).
func (t *Tunnel) Name() string { return t.cfg.Name }

// Config returns the tunnel's configuration, defaults filled in.
func (t *Tunnel) Config() Config { return t.cfg }

// MTU returns the underlay MTU the tunnel checks frames against.
func (t *Tunnel) MTU() int { return t.mtu }

// InnerMTU returns the largest inner IP packet that crosses the tunnel:
// the underlay MTU less the encapsulation (50 bytes over IPv4).
func (t *Tunnel) InnerMTU() int { return t.mtu - t.cfg.overhead() - 14 }

// Offloads says the tunnel takes partial checksums and TCP super-frames:
// it segments them once, straight into the datagrams it sends with UDP GSO.
func (t *Tunnel) Offloads() vswitch.Offloads {
	return vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6 | vswitch.OffloadTSOECN
}

// Table returns the tunnel's MAC → VTEP table.
func (t *Tunnel) Table() *Table { return t.table }

// Now returns the clock the table ages against.
func (t *Tunnel) Now() int64 { return t.clock() }

// VTEPs lists the known VTEPs, configured remotes first, with their
// counters.
func (t *Tunnel) VTEPs() []VTEPStats {
	set := t.vteps.Load()
	out := make([]VTEPStats, 0, len(set.byAddr))
	for _, v := range set.remotes {
		out = append(out, v.Stats())
	}
	for _, v := range set.byAddr {
		if !v.Remote {
			out = append(out, v.Stats())
		}
	}
	return out
}

// Stats returns the tunnel's counters.
func (t *Tunnel) Stats() Stats {
	c := &t.c
	return Stats{
		RxMalformed: c.rxMalformed.Load(),
		RxBadVNI:    c.rxBadVNI.Load(),
		RxDenied:    c.rxDenied.Load(),
		RxClaimed:   c.rxClaimed.Load(),
		RxNoVTEP:    c.rxNoVTEP.Load(),
		TxTooBig:    c.txTooBig.Load(),
		TxGateway:   c.txGateway.Load(),
		TxErrors:    c.txErrors.Load(),

		ARPSuppressed: c.arpSuppressed.Load(),
		NDSuppressed:  c.ndSuppressed.Load(),
		Table:         t.table.Stats(),
		Neigh:         t.neigh.Stats(),
	}
}

// AddStatic pins mac behind the VTEP at addr (which becomes known if it
// was not), as `bridge fdb append MAC dev vxlan42 dst ADDR`.
func (t *Tunnel) AddStatic(mac fdb.MAC, addr netip.Addr) error {
	v, ok := t.vtep(addr.Unmap())
	if !ok {
		return fmt.Errorf("static entry %s: %w: too many VTEPs", mac, ErrFull)
	}
	return t.table.AddStatic(mac, v)
}

// vtep returns the VTEP of addr, adding it if it is new. It reports false
// when the tunnel knows maxVTEPs already.
func (t *Tunnel) vtep(addr netip.Addr) (*VTEP, bool) {
	if v := t.vteps.Load().byAddr[addr]; v != nil {
		return v, true
	}
	t.vmu.Lock()
	defer t.vmu.Unlock()
	old := t.vteps.Load()
	if v := old.byAddr[addr]; v != nil {
		return v, true
	}
	if len(old.byAddr) >= maxVTEPs {
		return nil, false
	}
	set := &vtepSet{byAddr: make(map[netip.Addr]*VTEP, len(old.byAddr)+1), remotes: old.remotes}
	for a, v := range old.byAddr {
		set.byAddr[a] = v
	}
	v := &VTEP{Addr: addr}
	set.byAddr[addr] = v
	t.vteps.Store(set)
	return v, true
}

// Close closes the sockets: a blocked Read returns net.ErrClosed, and
// Write drops what it is given.
func (t *Tunnel) Close() error {
	t.once.Do(func() {
		close(t.stop)
		t.closeSockets()
		t.wg.Wait()
	})
	return nil
}

func (t *Tunnel) closeSockets() {
	if t.joined {
		leave(netip.AddrPortFrom(t.cfg.Local, t.cfg.Port), t) // closes t.rx
	}
	for _, s := range t.tx {
		s.conn.Close()
	}
}

// errClosed is what Read and Write return after Close.
var errClosed = fmt.Errorf("vxlan: %w", net.ErrClosed)

// isClosed reports whether err means the socket was closed.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// putSockaddr writes the sockaddr of ap to sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	port := ap.Port()
	if ap.Addr().Is4() {
		s4 := (*unix.RawSockaddrInet4)(unsafePointer(sa))
		s4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafePointer(&s4.Port))[:], port)
		s4.Addr = ap.Addr().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafePointer(&sa.Port))[:], port)
	sa.Flowinfo = 0
	sa.Addr = ap.Addr().As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

// addrOf returns the address in the sockaddr sa.
func addrOf(sa *unix.RawSockaddrInet6) netip.Addr {
	if sa.Family == unix.AF_INET {
		s4 := (*unix.RawSockaddrInet4)(unsafePointer(sa))
		return netip.AddrFrom4(s4.Addr)
	}
	return netip.AddrFrom16(sa.Addr).Unmap()
}
