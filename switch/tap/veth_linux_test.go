package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vswitch "github.com/tapswitch/tapswitch/switch"
	"github.com/tapswitch/tapswitch/switch/gso"
)

// setReadDeadline sets the read deadline of d's file or packet socket.
func setReadDeadline(t *testing.T, d *Device, at time.Time) {
	t.Helper()
	var err error
	if d.pk != nil {
		err = d.pk.SetReadDeadline(at)
	} else {
		err = d.f.SetReadDeadline(at)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// useAFPacket makes Create give veth pairs with packet sockets
// (TAPSWITCH_TAP_IO=afpacket) until the test ends. Tests of this package
// do not run in parallel.
func useAFPacket(t *testing.T) {
	old := tapIO
	tapIO = ioAFPacket
	t.Cleanup(func() { tapIO = old })
}

// TestAFPacket runs the Device tests that apply to a veth pair read and
// written through a packet socket, and those only it needs.
func TestAFPacket(t *testing.T) {
	requireRoot(t)
	useAFPacket(t)
	for _, tt := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Create", TestCreate},
		{"FramesARP", func(t *testing.T) { framesARP(t, false) }},
		{"FramesPacketSocket", TestFramesPacketSocket},
		{"VLAN", TestReadVLAN},
		{"WriteTooBig", TestWriteTooBig},
		{"Close", TestClose},
		{"CloseUnblocksRead", TestCloseUnblocksRead},
		{"NetnsDeleted", TestNetnsDeleted},
		{"ReadWriteAllocs", TestReadWriteAllocs},
		{"LargeFrame", testLargeFrame},
		{"Refused", testAFPacketRefused},
	} {
		t.Run(tt.name, tt.fn)
	}
}

// TestReadVLAN sends an 802.1Q-tagged frame from the namespace: Read
// returns it with its tag in place (a veth's receive path moves the tag
// into the skb, skb_vlan_untag; the packet port puts it back).
func TestReadVLAN(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	d := create(t, testConfig(path))
	fd, ifindex := packetSocket(t, path)
	payload := []byte("tagged, to the switch")
	inner := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(inner, 0x2005) // priority 1, VLAN 5
	binary.BigEndian.PutUint16(inner[2:], etherTypeTest)
	copy(inner[4:], payload)
	frame := ethernet(peerMAC, testMAC, 0x8100, inner)
	to := &unix.SockaddrLinklayer{Protocol: htons(0x8100), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], peerMAC)
	if err := unix.Sendto(fd, frame[vswitch.VnetHdrLen:], 0, to); err != nil {
		t.Fatalf("sendto from the namespace: %v", err)
	}
	got := readFrame(t, d, 5*time.Second, func(f []byte) bool {
		return bytes.Contains(f, payload)
	})
	if !bytes.Equal(got, frame) {
		t.Errorf("Read frame = % x, want % x", got, frame)
	}
}

// testLargeFrame sends a UDP datagram of 8000 bytes from the namespace
// (MTU 9000): its frame does not fit a ring slot, and Read takes it whole
// from the socket (TP_STATUS_COPY), with its partial checksum.
func testLargeFrame(t *testing.T) {
	name, path := newNetns(t)
	cfg := testConfig(path)
	cfg.MTU = 9000
	d := create(t, cfg)
	run(t, "ip", "-n", name, "neigh", "add", peerIP.String(), "lladdr", peerMAC.String(), "dev", "eth0")
	var fd int
	if err := inNetns(t, path, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 500)
	for i := range 3 {
		if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: 9, Addr: peerIP.As4()}); err != nil {
			t.Fatalf("sendto %s:9: %v", peerIP, err)
		}
		f := readFrame(t, d, 5*time.Second, func(f []byte) bool { return len(f) > 8000 })
		if want := vswitch.VnetHdrLen + 14 + 20 + 8 + len(payload); len(f) != want {
			t.Fatalf("datagram %d: frame of %d bytes, want %d", i, len(f), want)
		}
		if h := gso.ParseHdr(f); h.Flags&gso.FlagNeedsCsum == 0 {
			t.Errorf("datagram %d: virtio_net_hdr %+v, want a partial checksum", i, h)
		}
		if !bytes.Equal(f[len(f)-len(payload):], payload) {
			t.Errorf("datagram %d: payload differs", i)
		}
	}
}

// testAFPacketRefused checks the clear errors for what veth ports do not
// do: fewer offloads, no namespace, persistence.
func testAFPacketRefused(t *testing.T) {
	_, path := newNetns(t)
	cfg := testConfig(path)
	cfg.NoOffloads = true
	if _, err := Create(cfg); !errors.Is(err, ErrBadTapIO) {
		t.Errorf("Create with NoOffloads = %v, want ErrBadTapIO", err)
	}
	cfg = testConfig("")
	cfg.Name = "tswnone0"
	if _, err := Create(cfg); !errors.Is(err, ErrBadTapIO) {
		t.Errorf("Create without a namespace = %v, want ErrBadTapIO", err)
	}
	d := create(t, testConfig(path))
	if err := d.SetPersist(true); !errors.Is(err, ErrBadTapIO) {
		t.Errorf("SetPersist = %v, want ErrBadTapIO", err)
	}
	if got := hostTempLinks(t); len(got) != 1 || got[0] != d.veth {
		t.Errorf("temporary links = %v, want only %s", got, d.veth)
	}
}

// TestBadTapIO checks that an unknown TAPSWITCH_TAP_IO fails Create.
func TestBadTapIO(t *testing.T) {
	old := tapIO
	tapIO = "uring"
	defer func() { tapIO = old }()
	_, err := Create(testConfig(""))
	if !errors.Is(err, ErrBadTapIO) || !strings.Contains(err.Error(), `"uring"`) {
		t.Errorf("Create = %v, want ErrBadTapIO naming the value", err)
	}
}
