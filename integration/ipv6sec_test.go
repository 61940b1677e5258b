package integration

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// forger sends hand-made IPv6 frames from a container's eth0.
type forger struct {
	fd, ifindex int
	mac         net.HardwareAddr
	ll, ip6     netip.Addr
}

func newForger(t *testing.T, ns string, p api.Port) *forger {
	t.Helper()
	f := &forger{}
	var err error
	if f.mac, err = net.ParseMAC(p.MAC); err != nil {
		t.Fatal(err)
	}
	f.ip6 = netip.MustParseAddr(ip6(p))
	f.ll = eui64(f.mac)
	err = netnsutil.Do(netnsutil.Path(ns), func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		f.ifindex = ifi.Index
		f.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(f.fd) })
	return f
}

// eui64 is the link-local address of mac.
func eui64(mac net.HardwareAddr) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]})
}

// send sends an ICMPv6 message from src to dst (at ethDst) with hop
// limit 255 and valid checksums.
func (f *forger) send(t *testing.T, ethDst net.HardwareAddr, src, dst netip.Addr, typ uint8, body gopacket.SerializableLayer) {
	t.Helper()
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: f.mac, DstMAC: ethDst, EthernetType: layers.EthernetTypeIPv6}, ip, ic, body)
	if err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: f.ifindex, Halen: 6}
	copy(to.Addr[:], ethDst)
	if err := unix.Sendto(f.fd, buf.Bytes(), 0, to); err != nil {
		t.Fatalf("send: %v", err)
	}
}

var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// forge sends, from f, a router advertisement naming f's link-local address
// as default router, an unsolicited NA claiming the gateway's address
// (override) for f's MAC, and an echo request to victim from spoofed, an
// address nobody has.
func (f *forger) forge(t *testing.T, gw6, victim, spoofed netip.Addr, victimMAC net.HardwareAddr) {
	t.Helper()
	f.send(t, allNodesMAC, f.ll, netip.MustParseAddr("ff02::1"), layers.ICMPv6TypeRouterAdvertisement,
		&layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800,
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: f.mac}}})
	f.send(t, allNodesMAC, f.ip6, netip.MustParseAddr("ff02::1"), layers.ICMPv6TypeNeighborAdvertisement,
		&layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: gw6.AsSlice(),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: f.mac}}})
	f.send(t, victimMAC, spoofed, victim, layers.ICMPv6TypeEchoRequest, gopacket.Payload([]byte{0, 1, 0, 1, 'x'}))
}

// poisoned reports what of the forgeries of f shows in ns: a default route
// via f, the gateway's neighbour entry with f's MAC, a neighbour entry for
// the spoofed address.
func poisoned(t *testing.T, ns string, f *forger, gw6, spoofed netip.Addr) (route, neigh, spoof bool) {
	t.Helper()
	routes := nsRun(t, ns, "ip", "-6", "route", "show", "default")
	gwNeigh := nsRun(t, ns, "ip", "-6", "neigh", "show", gw6.String())
	spoofNeigh := nsRun(t, ns, "ip", "-6", "neigh", "show", spoofed.String())
	return strings.Contains(routes, "via "+f.ll.String()), strings.Contains(gwNeigh, f.mac.String()), strings.TrimSpace(spoofNeigh) != ""
}

// TestIPv6PortSecurity: a container's forged RA, forged NA for the gateway's
// address and spoofed IPv6 source are dropped and counted, and the other
// container's routes and neighbours stay as they were; the same forgeries
// from an --allow-spoof --allow-ra port change them.
func TestIPv6PortSecurity(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--ipv6", "--subnet6", "fd42:2::/64")
	evilNS, victimNS, routerNS := newNS(t), newNS(t), newNS(t)
	pe := d.attach(t, evilNS, "evil")
	pv := d.attach(t, victimNS, "victim")
	pr := d.attach(t, routerNS, "router", "--allow-spoof", "--allow-ra")
	if !pr.AllowRA || !pr.AllowSpoof {
		t.Fatalf("router port: allow_ra %v allow_spoof %v", pr.AllowRA, pr.AllowSpoof)
	}
	gw6 := netip.MustParseAddr("fd42:2::1")
	spoofed := netip.MustParseAddr("fd42:2::99")
	victim := netip.MustParseAddr(ip6(pv))
	victimMAC, _ := net.ParseMAC(pv.MAC)
	// The victim knows the gateway.
	ping6(t, victimNS, gw6.String())

	spoofedBefore := func(name string) uint64 {
		for _, p := range d.ports(t) {
			if p.Name == name {
				return p.Stats.RxSpoofed
			}
		}
		t.Fatalf("no port %s", name)
		return 0
	}
	before := spoofedBefore("evil")
	evil := newForger(t, evilNS, pe)
	evil.forge(t, gw6, victim, spoofed, victimMAC)
	// The evil container's own ping to the victim crosses the same queues
	// after the forgeries: once it is answered, they have been handled.
	ping6(t, evilNS, victim.String())
	if route, neigh, spoof := poisoned(t, victimNS, evil, gw6, spoofed); route || neigh || spoof {
		t.Errorf("victim poisoned by a port with port security: route %v, gateway neighbour %v, spoofed source answered %v", route, neigh, spoof)
	}
	if got := spoofedBefore("evil") - before; got != 3 {
		t.Errorf("evil's rx_spoofed went up by %d, want 3 (RA, NA, spoofed source)", got)
	}
	ping6(t, victimNS, gw6.String())

	router := newForger(t, routerNS, pr)
	router.forge(t, gw6, victim, spoofed, victimMAC)
	eventually(t, 5*time.Second, "the forgeries of the --allow-spoof --allow-ra port seen by the victim", func() bool {
		route, neigh, spoof := poisoned(t, victimNS, router, gw6, spoofed)
		return route && neigh && spoof
	})
}
