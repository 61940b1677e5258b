package vxlan

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Several tunnels (one per VNI) may listen on the same address and port,
// as Linux vxlan devices share port 4789. Each has its own socket, all in
// one SO_REUSEPORT group, and a classic BPF program attached to the group
// (SO_ATTACH_REUSEPORT_CBPF) steers each datagram to the socket of its VNI:
// the kernel runs it with the UDP payload (the VXLAN header) at offset 0
// and delivers to the socket at the index it returns, so every tunnel
// keeps reading its own socket without a copy or a hand-off. A VNI no
// tunnel has gets an index out of range, and the kernel picks a socket by
// hash; that tunnel counts it as another VNI's.

// maxGroup bounds the tunnels on one address and port: the steering
// program's jumps are 8-bit.
const maxGroup = 100

// groups are the reuseport groups by local address and port.
var groups = struct {
	mu sync.Mutex // guards m and every group's members
	m  map[netip.AddrPort]*group
}{m: map[netip.AddrPort]*group{}}

// group is the tunnels listening on one address and port, in the order
// of their sockets in the kernel's reuseport group (struct
// sock_reuseport.socks).
type group struct {
	ap      netip.AddrPort
	members []*Tunnel
}

// join opens t's receiving socket on ap (t.rx), adds t to the group of
// ap and steers its VNI to it. Binding under groups.mu keeps the group's
// order the kernel's.
func join(ap netip.AddrPort, t *Tunnel) error {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	var err error
	if t.rx, t.rxc, err = listen(ap, true); err != nil {
		return err
	}
	g := groups.m[ap]
	if g == nil {
		g = &group{ap: ap}
		groups.m[ap] = g
	}
	for _, m := range g.members {
		if m.cfg.VNI == t.cfg.VNI {
			t.rx.Close()
			return fmt.Errorf("vni %d on %s: %w", t.cfg.VNI, ap, ErrVNIInUse)
		}
	}
	if len(g.members) >= maxGroup {
		t.rx.Close()
		return fmt.Errorf("vxlan: %d tunnels already listen on %s", maxGroup, ap)
	}
	g.members = append(g.members, t)
	if err := g.steerLocked(); err != nil {
		g.leaveLocked(t)
		return err
	}
	return nil
}

// leave closes t's receiving socket, which takes it out of the kernel's
// group, and steers the remaining VNIs again.
func leave(ap netip.AddrPort, t *Tunnel) {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	if g := groups.m[ap]; g != nil {
		g.leaveLocked(t)
	}
}

func (g *group) leaveLocked(t *Tunnel) {
	for i, m := range g.members {
		if m != t {
			continue
		}
		t.rx.Close()
		// reuseport_detach_sock moves the last socket into the hole.
		last := len(g.members) - 1
		g.members[i] = g.members[last]
		g.members = g.members[:last]
		if len(g.members) == 0 {
			delete(groups.m, g.ap)
			return
		}
		g.steerLocked() // best effort: a wrong socket counts bad VNIs
		return
	}
}

// steerLocked attaches to the group the program that maps each member's
// VNI to its index.
func (g *group) steerLocked() error {
	if len(g.members) < 2 {
		return nil // one socket takes everything
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // VNI (24 bits) and the reserved byte
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 8},
	}
	n := len(g.members)
	for _, m := range g.members {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: m.cfg.VNI})
	}
	prog = append(prog, bpf.RetConstant{Val: 0xffffffff}) // no such VNI
	for i := n - 1; i >= 0; i-- {
		prog = append(prog, bpf.RetConstant{Val: uint32(i)})
	}
	raw, err := bpf.Assemble(fixSkips(prog, n))
	if err != nil {
		return fmt.Errorf("vxlan: steering program: %w", err)
	}
	filters := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filters[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	var serr error
	err = g.members[0].rxc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("vxlan: steer VNIs on %s: %w", g.ap, err)
	}
	return nil
}

// fixSkips sets the jump offsets of the n comparisons of a steering
// program laid out as steerLocked does: comparison i (instruction 2+i)
// jumps to the return of i.
func fixSkips(prog []bpf.Instruction, n int) []bpf.Instruction {
	for i := range n {
		cmp := 2 + i
		ret := 2 + n + 1 + (n - 1 - i) // the miss, then returns n-1 down to 0
		j := prog[cmp].(bpf.JumpIf)
		j.SkipTrue = uint8(ret - cmp - 1)
		prog[cmp] = j
	}
	return prog
}
