package tap

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/internal/checksum"
	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// TestOffloads checks what TUNSETOFFLOAD negotiation records: at least
// checksum and TSO for both families on any kernel tapswitch supports, and
// nothing with NoOffloads.
func TestOffloads(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	want := vswitch.OffloadCsum | vswitch.OffloadTSO4 | vswitch.OffloadTSO6
	if got := d.Offloads(); got&want != want {
		t.Errorf("Offloads() = %v, want at least %v", got, want)
	}
	t.Logf("offloads accepted by this kernel: %v", d.Offloads())

	_, path2 := newNetns(t)
	cfg := testConfig(path2)
	cfg.NoOffloads = true
	if got := create(t, cfg).Offloads(); got != 0 {
		t.Errorf("NoOffloads: Offloads() = %v, want none", got)
	}

	// Config.Offloads bounds what is asked for (the routed uplink's
	// csum,tso4); without CSUM nothing is.
	for _, tt := range []struct{ ask, want vswitch.Offloads }{
		{vswitch.OffloadCsum | vswitch.OffloadTSO4, vswitch.OffloadCsum | vswitch.OffloadTSO4},
		{vswitch.OffloadCsum, vswitch.OffloadCsum},
		{vswitch.OffloadTSO4, 0},
	} {
		_, p := newNetns(t)
		cfg := testConfig(p)
		cfg.Offloads = tt.ask
		if got := create(t, cfg).Offloads(); got != tt.want {
			t.Errorf("Offloads %v: Offloads() = %v, want %v", tt.ask, got, tt.want)
		}
	}
}

func TestTunOffloadFlags(t *testing.T) {
	for _, tt := range []struct {
		o    vswitch.Offloads
		want int
	}{
		{0, 0},
		{vswitch.OffloadCsum | vswitch.OffloadTSO4, unix.TUN_F_CSUM | unix.TUN_F_TSO4},
		{allOffloads, unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN | unix.TUN_F_USO4 | unix.TUN_F_USO6},
	} {
		if got := tunOffloadFlags(tt.o); got != tt.want {
			t.Errorf("tunOffloadFlags(%v) = %#x, want %#x", tt.o, got, tt.want)
		}
	}
}

// checkPartialUDP checks that frame, a UDP/IPv4 datagram read from a TAP
// with offloads on, has a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM at
// the UDP header) that gso.CompleteChecksum turns into a valid one.
func checkPartialUDP(t *testing.T, frame []byte) {
	t.Helper()
	h := gso.ParseHdr(frame)
	ihl := int(frame[vswitch.VnetHdrLen+14]&0xf) * 4
	if h.Flags&gso.FlagNeedsCsum == 0 || h.GSOType != gso.TypeNone || int(h.CsumStart) != 14+ihl || h.CsumOffset != 6 {
		t.Fatalf("virtio_net_hdr %+v, want NEEDS_CSUM at the UDP checksum (start %d, offset 6)", h, 14+ihl)
	}
	f := append([]byte(nil), frame...)
	if err := gso.CompleteChecksum(f); err != nil {
		t.Fatal(err)
	}
	ip := f[vswitch.VnetHdrLen+14:]
	pseudo := checksum.PseudoHeaderIPv4([4]byte(ip[12:]), [4]byte(ip[16:]), 17, uint16(len(ip)-ihl))
	if c := checksum.Checksum(ip[ihl:], pseudo); c != 0 {
		t.Errorf("UDP checksum after CompleteChecksum does not verify (%#x)", c)
	}
}
