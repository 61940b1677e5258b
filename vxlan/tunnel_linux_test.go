package vxlan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/internal/testutil"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
	"golang.org/x/sys/unix"
)

var (
	addrA = netip.MustParseAddr("127.0.0.1")
	addrB = netip.MustParseAddr("127.0.0.2")
	addrC = netip.MustParseAddr("127.0.0.3")
	gwMAC = fdb.MAC{0x02, 0x42, 10, 80, 0, 1}
	macA  = fdb.MAC{0x02, 0x42, 10, 80, 1, 1}
	macB  = fdb.MAC{0x02, 0x42, 10, 80, 2, 1}
)

// pair opens two tunnels of VNI 42 on loopback, A (127.0.0.1) and B
// (127.0.0.2), each the other's remote, plus any extra remotes for A.
func pair(t *testing.T, mutate func(a, b *Config), extra ...netip.Addr) (*Tunnel, *Tunnel) {
	t.Helper()
	return pairTB(t, mutate, extra...)
}

// pairF is pair for a fuzz test's setup.
func pairF(f *testing.F) (*Tunnel, *Tunnel) { return pairTB(f, nil) }

func pairTB(t testing.TB, mutate func(a, b *Config), extra ...netip.Addr) (*Tunnel, *Tunnel) {
	t.Helper()
	port := testutil.FreePort(t, "udp", "127.0.0.1")
	ca := Config{VNI: 42, Local: addrA, Remotes: append([]netip.Addr{addrB}, extra...), Port: port, MTU: 1500, GatewayMAC: gwMAC}
	cb := Config{VNI: 42, Local: addrB, Remotes: []netip.Addr{addrA}, Port: port, MTU: 1500, GatewayMAC: gwMAC}
	if mutate != nil {
		mutate(&ca, &cb)
	}
	a, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := New(cb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// ethFrame returns a virtio_net_hdr and an Ethernet frame from src to dst
// with n bytes of payload (EtherType 0x88b5, local experimental).
func ethFrame(dst, src fdb.MAC, n int) []byte {
	f := make([]byte, vswitch.VnetHdrLen+14+n)
	copy(f[10:], dst[:])
	copy(f[16:], src[:])
	binary.BigEndian.PutUint16(f[22:], 0x88b5)
	for i := range n {
		f[24+i] = byte(i)
	}
	return f
}

// readFrame reads one frame from tn within a few seconds.
func readFrame(t *testing.T, tn *Tunnel) []byte {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		buf := make([]byte, vswitch.BufSize)
		n, err := tn.Read(buf, vswitch.Headroom)
		ch <- res{buf[vswitch.Headroom : vswitch.Headroom+n], err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.b
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
	}
	return nil
}

func TestTunnelUnicastAndLearning(t *testing.T) {
	a, b := pair(t, nil)
	f := ethFrame(macB, macA, 100)
	if _, err := a.Write(f, 0); err != nil {
		t.Fatal(err)
	}
	got := readFrame(t, b)
	if !bytes.Equal(got, f) {
		t.Fatalf("B read %x, want %x", got, f)
	}
	v, ok := b.Table().Lookup(macA, b.Now())
	if !ok || v.Addr != addrA {
		t.Fatalf("B learned %v %v for %s, want %s", v, ok, macA, addrA)
	}
	st := b.VTEPs()[0]
	if st.RxPackets != 1 || st.RxBytes != 114 {
		t.Errorf("B's counters for A: %+v, want 1 packet of 114 bytes", st)
	}
	// The reply goes to A alone: B knows where macA is.
	if _, err := b.Write(ethFrame(macA, macB, 50), 0); err != nil {
		t.Fatal(err)
	}
	readFrame(t, a)
	if s := b.VTEPs()[0]; s.TxPackets != 1 {
		t.Errorf("B sent %d frames to A, want 1", s.TxPackets)
	}
}

func TestTunnelGatewayAndClaims(t *testing.T) {
	local := fdb.MAC{0x02, 0x42, 10, 80, 2, 9}
	a, b := pair(t, func(_, cb *Config) {
		cb.LocalMAC = func(m fdb.MAC) bool { return m == local }
	})
	// A frame from the gateway never leaves: it is on every host.
	if n, err := a.Write(ethFrame(macB, gwMAC, 60), 0); err != nil || n == 0 {
		t.Fatalf("Write from the gateway: %d, %v", n, err)
	}
	if s := a.Stats(); s.TxGateway != 1 {
		t.Errorf("TxGateway %d, want 1", s.TxGateway)
	}
	// B drops frames claiming the gateway or one of its local MACs, then
	// takes a good one.
	forged := ethFrame(macB, gwMAC, 60)
	a.cfg.GatewayMAC = fdb.MAC{} // let A send it, as a forger would
	a.Write(forged, 0)
	a.Write(ethFrame(macB, local, 60), 0)
	good := ethFrame(macB, macA, 60)
	a.Write(good, 0)
	if got := readFrame(t, b); !bytes.Equal(got, good) {
		t.Fatalf("B read %x, want the good frame", got)
	}
	if s := b.Stats(); s.RxClaimed != 2 {
		t.Errorf("RxClaimed %d, want 2", s.RxClaimed)
	}
	if _, ok := b.Table().Lookup(gwMAC, b.Now()); ok {
		t.Error("B learned the gateway's MAC from the tunnel")
	}
}

func TestTunnelFloodAndTooBig(t *testing.T) {
	// C is a plain socket standing for a third VTEP.
	a, b := pair(t, nil, addrC)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrC, a.Config().Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bcast := fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	f := ethFrame(bcast, macA, 64)
	if _, err := a.Write(f, 0); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, b); !bytes.Equal(got, f) {
		t.Fatalf("B read %x", got)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if vni, err := ParseHeader(buf[:n]); err != nil || vni != 42 || !bytes.Equal(buf[HeaderLen:n], f[10:]) {
		t.Fatalf("C got vni %d err %v frame %x", vni, err, buf[HeaderLen:n])
	}
	// 1500 - 36: the largest inner frame over IPv4.
	if _, err := a.Write(ethFrame(macB, macA, 1500-36-14+1), 0); !errors.Is(err, vswitch.ErrFrameTooBig) {
		t.Errorf("oversized frame: %v, want ErrFrameTooBig", err)
	}
	if _, err := a.Write(ethFrame(macB, macA, 1500-36-14), 0); err != nil {
		t.Errorf("largest frame: %v", err)
	}
	if s := a.Stats(); s.TxTooBig != 1 {
		t.Errorf("TxTooBig %d, want 1", s.TxTooBig)
	}
}

func TestTunnelVNIAndAllow(t *testing.T) {
	a, b := pair(t, func(ca, cb *Config) {
		cb.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	// From 127.0.0.3: not allowed. Then A with another VNI.
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrC, 0)),
		net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB, b.Config().Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := make([]byte, HeaderLen+60)
	PutHeader(d, 42)
	copy(d[HeaderLen:], ethFrame(macB, macA, 46)[10:])
	c.Write(d)
	PutHeader(d, 43)
	raw, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrA, 0)),
		net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB, b.Config().Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(d)
	raw.Write(d[:5]) // malformed
	good := ethFrame(macB, macA, 46)
	a.Write(good, 0)
	if got := readFrame(t, b); !bytes.Equal(got, good) {
		t.Fatalf("B read %x", got)
	}
	s := b.Stats()
	if s.RxDenied != 1 || s.RxBadVNI != 1 || s.RxMalformed != 1 {
		t.Errorf("stats %+v, want one denied, one bad VNI, one malformed", s)
	}
}

// tcpSuperFrame returns a TSO super-frame (GSO_TCPV4) of payload bytes in
// segments of mss, with a partial checksum as a TAP hands it over.
func tcpSuperFrame(payload, mss int) []byte { return tcpSuperFrameIP(false, payload, mss) }

// tcpSuperFrameIP builds tcpSuperFrame, over IPv6 (GSO_TCPV6, fd00::1 to
// fd00::2) when v6, else over IPv4 (10.80.1.1 to 10.80.2.1).
func tcpSuperFrameIP(v6 bool, payload, mss int) []byte {
	ipLen, etherType, gsoType := 20, uint16(0x0800), uint8(gso.TypeTCPv4)
	if v6 {
		ipLen, etherType, gsoType = 40, 0x86dd, gso.TypeTCPv6
	}
	f := ethFrame(macB, macA, ipLen+20+payload)
	binary.BigEndian.PutUint16(f[22:], etherType)
	ip := f[24:]
	clear(ip[:ipLen+20])
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(20+payload))
		ip[6], ip[7] = 6, 64
		copy(ip[8:], []byte{0xfd, 0, 8: 1})
		copy(ip[24:], []byte{0xfd, 0, 8: 2})
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
		ip[8], ip[9] = 64, 6
		copy(ip[12:], []byte{10, 80, 1, 1, 10, 80, 2, 1})
	}
	tcp := ip[ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = 5<<4, 0x18
	// HdrLen and CsumStart count from the Ethernet header (virtio_net_hdr).
	gso.Hdr{Flags: gso.FlagNeedsCsum, GSOType: gsoType, HdrLen: uint16(14 + ipLen + 20), GSOSize: uint16(mss), CsumStart: uint16(14 + ipLen), CsumOffset: 16}.Put(f)
	return f
}

// TestTunnelTSO sends a super-frame through A, which segments it into
// datagrams sent with UDP GSO; B reads them (UDP GRO) and coalesces them
// back: segmenting what B hands over gives exactly A's segments.
func TestTunnelTSO(t *testing.T) {
	a, b := pair(t, nil)
	const payload, mss = 60000, 1398
	f := tcpSuperFrame(payload, mss)
	if _, err := a.Write(f, 0); err != nil {
		t.Fatal(err)
	}
	segments := func(frame []byte) [][]byte {
		if gso.IsPlain(frame) {
			return [][]byte{frame}
		}
		return segmentsOf(t, frame)
	}
	want := segments(f)
	var got [][]byte
	reads := 0
	for len(got) < len(want) {
		got = append(got, segments(readFrame(t, b))...)
		reads++
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("segment %d: got %x..., want %x...", i, got[i][:min(len(got[i]), 80)], want[i][:80])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d segments, want %d", len(got), len(want))
	}
	if s := a.VTEPs()[0]; s.TxPackets != uint64(len(want)) {
		t.Errorf("A counted %d datagrams sent, want %d", s.TxPackets, len(want))
	}
	if s := b.VTEPs()[0]; s.RxPackets != uint64(len(want)) {
		t.Errorf("B counted %d datagrams received, want %d", s.RxPackets, len(want))
	}
	t.Logf("%d segments in %d reads", len(want), reads)
}

func TestTunnelWriteAllocs(t *testing.T) {
	a, b := pair(t, nil)
	go func() {
		buf := make([]byte, vswitch.BufSize)
		for {
			if _, err := b.Read(buf, vswitch.Headroom); err != nil {
				return
			}
		}
	}()
	f := ethFrame(macB, macA, 1000)
	tso := tcpSuperFrame(20000, 1398)
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"plain", f}, {"tso", tso}} {
		if n := testing.AllocsPerRun(200, func() { a.Write(c.frame, 0) }); n != 0 {
			t.Errorf("%s: Write allocates %.1f times per frame", c.name, n)
		}
	}
}

func TestTunnelReadAllocs(t *testing.T) {
	a, b := pair(t, nil)
	buf := make([]byte, vswitch.BufSize)
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"plain", ethFrame(macB, macA, 1000)}, {"tso", tcpSuperFrame(20000, 1398)}} {
		// Every Write is read back in one Read: the super-frame comes
		// out coalesced (by a scatter read after the first).
		if n := testing.AllocsPerRun(200, func() {
			a.Write(c.frame, 0)
			b.Read(buf, vswitch.Headroom)
		}); n != 0 {
			t.Errorf("%s: Write+Read allocate %.1f times per frame", c.name, n)
		}
	}
	if b.rd.size == 0 {
		t.Error("the TCP super-frames did not make B read scattered")
	}
}

// sendGSO sends the datagrams (all of the first one's size but the last)
// from a socket on 127.0.0.1 to ap in one sendmsg with UDP_SEGMENT.
func sendGSO(t *testing.T, ap netip.AddrPort, dgrams [][]byte) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.WriteMsgUDP(bytes.Join(dgrams, nil), segmentOOB(len(dgrams[0])), nil); err != nil {
		t.Fatal(err)
	}
}

// segmentOOB returns a UDP_SEGMENT control message for datagrams of size
// bytes.
func segmentOOB(size int) []byte {
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafePointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.SizeofCmsghdr:], uint16(size))
	return oob
}

// datagrams returns the VXLAN datagrams (VNI 42) of the segments (a
// virtio_net_hdr first).
func datagrams(segs [][]byte) [][]byte {
	var out [][]byte
	for _, s := range segs {
		d := make([]byte, HeaderLen, HeaderLen+len(s))
		PutHeader(d, 42)
		out = append(out, append(d, s[vswitch.VnetHdrLen:]...))
	}
	return out
}

// TestTunnelScatter sends B batches of datagrams that a scatter read
// takes whole, and batches that go against its prediction (another
// segment size, a single frame, a segment that cannot join, another VNI
// inside the batch): whatever the path, the segments of what B hands over
// are exactly those sent, in order.
func TestTunnelScatter(t *testing.T) {
	a, b := pair(t, nil)
	to := netip.AddrPortFrom(addrB, b.cfg.Port)
	segments := func(frame []byte) [][]byte {
		if gso.IsPlain(frame) {
			return [][]byte{frame}
		}
		return segmentsOf(t, frame)
	}
	corrupt := func(i int) func([][]byte) {
		return func(s [][]byte) { s[i][len(s[i])-1] ^= 1 }
	}
	for _, c := range []struct {
		name   string
		frame  []byte         // written by A, or
		mutate func([][]byte) // for a batch of its segments sent raw
		vni    func([][]byte) // for the datagrams of the batch sent raw
		reads  int            // reads it takes (0: unchecked)
	}{
		{name: "learn", frame: tcpSuperFrame(60000, 1398), reads: 1},
		{name: "scattered", frame: tcpSuperFrame(60000, 1398), reads: 1},
		{name: "again", frame: tcpSuperFrame(20000, 1398), reads: 1},
		{name: "other size", frame: tcpSuperFrame(30000, 1200), reads: 1},
		{name: "back", frame: tcpSuperFrame(60000, 1398), reads: 1},
		{name: "plain", frame: ethFrame(macB, macA, 1000), reads: 1},
		{name: "after plain", frame: tcpSuperFrame(60000, 1398), reads: 1},
		{name: "bad segment 3", frame: tcpSuperFrame(20000, 1398), mutate: corrupt(3)},
		{name: "bad first", frame: tcpSuperFrame(20000, 1398), mutate: corrupt(0)},
		{name: "other VNI", frame: tcpSuperFrame(20000, 1398), vni: func(d [][]byte) { PutHeader(d[5], 43) }},
		{name: "recovered", frame: tcpSuperFrame(60000, 1398), reads: 1},
		{name: "short", frame: tcpSuperFrame(1398+10, 1398), reads: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := segments(c.frame)
			if c.mutate == nil && c.vni == nil {
				if _, err := a.Write(c.frame, 0); err != nil {
					t.Fatal(err)
				}
			} else {
				if c.mutate != nil {
					c.mutate(want)
				}
				d := datagrams(want)
				if c.vni != nil {
					c.vni(d)
					want = append(want[:5], want[6:]...) // B drops it
				}
				sendGSO(t, to, d)
			}
			var got [][]byte
			reads := 0
			for len(got) < len(want) {
				got = append(got, segments(readFrame(t, b))...)
				reads++
			}
			if len(got) != len(want) {
				t.Fatalf("%d segments, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("segment %d: got %x..., want %x...", i, got[i][:min(len(got[i]), 80)], want[i][:80])
				}
			}
			if c.reads != 0 && reads != c.reads {
				t.Errorf("%d reads, want %d", reads, c.reads)
			}
		})
	}
	if b.rd.size == 0 {
		t.Error("B never predicted a scatter read")
	}
}

// TestTunnelsSharePort runs VNIs 42 and 43 on the same address and port
// on both sides, as Linux vxlan devices share 4789: each tunnel gets its
// own VNI's frames only, also after the other side's set changes.
func TestTunnelsSharePort(t *testing.T) {
	port := testutil.FreePort(t, "udp", "127.0.0.1")
	open := func(vni uint32, local, remote netip.Addr) *Tunnel {
		tn, err := New(Config{VNI: vni, Local: local, Remotes: []netip.Addr{remote}, Port: port, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tn.Close() })
		return tn
	}
	a42, a43 := open(42, addrA, addrB), open(43, addrA, addrB)
	b42, b43 := open(42, addrB, addrA), open(43, addrB, addrA)
	if _, err := New(Config{VNI: 43, Local: addrB, Remotes: []netip.Addr{addrA}, Port: port, MTU: 1500}); err == nil {
		t.Fatal("a second tunnel for VNI 43 on the same port was opened")
	}
	for i := range 5 {
		f42, f43 := ethFrame(macB, macA, 60+i), ethFrame(macB, macA, 80+i)
		a43.Write(f43, 0)
		a42.Write(f42, 0)
		if got := readFrame(t, b42); !bytes.Equal(got, f42) {
			t.Fatalf("VNI 42 tunnel read %x, want %x", got, f42)
		}
		if got := readFrame(t, b43); !bytes.Equal(got, f43) {
			t.Fatalf("VNI 43 tunnel read %x, want %x", got, f43)
		}
	}
	// Without B's VNI 42 tunnel, 43 still gets its own.
	b42.Close()
	f43 := ethFrame(macB, macA, 99)
	a42.Write(ethFrame(macB, macA, 98), 0)
	a43.Write(f43, 0)
	if got := readFrame(t, b43); !bytes.Equal(got, f43) {
		t.Fatalf("after close: VNI 43 tunnel read %x, want %x", got, f43)
	}
	if s := b43.Stats(); s.RxBadVNI > 1 {
		t.Errorf("%d datagrams of another VNI at VNI 43, want at most the one for the closed tunnel", s.RxBadVNI)
	}
}

// TestTunnelSourcePortPerFlow: the outer source port follows the inner
// flow (the same for every frame of a flow), and different flows use
// several ports.
func TestTunnelSourcePortPerFlow(t *testing.T) {
	port := testutil.FreePort(t, "udp", "127.0.0.1")
	a, err := New(Config{VNI: 42, Local: addrA, Remotes: []netip.Addr{addrC}, Port: port, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrC, port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports := map[uint16]bool{}
	buf := make([]byte, 2048)
	for flow := range 16 {
		var first uint16
		for range 3 {
			f := tcpSuperFrame(100, 1000) // 100 bytes: sent as one segment
			binary.BigEndian.PutUint16(f[vswitch.VnetHdrLen+34:], uint16(40000+flow))
			if _, err := a.Write(f, 0); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if first == 0 {
				first = from.Port()
			} else if from.Port() != first {
				t.Fatalf("flow %d: source port %d, then %d", flow, first, from.Port())
			}
		}
		ports[first] = true
	}
	if len(ports) < 2 {
		t.Errorf("16 flows all from source port(s) %v, want several", ports)
	}
}

// BenchmarkTunnelTSO is a 60000-byte TCP super-frame through the tunnel
// over loopback: segmented and sent by A (UDP GSO), read and coalesced back
// by B (UDP GRO), kernel included.
func BenchmarkTunnelTSO(b *testing.B) {
	ta, tb := pairTB(b, nil)
	f := tcpSuperFrame(60000, 1398)
	buf := make([]byte, vswitch.BufSize)
	b.SetBytes(60000)
	for b.Loop() {
		if _, err := ta.Write(f, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := tb.Read(buf, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
	}
}
