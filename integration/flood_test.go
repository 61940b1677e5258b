package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// macFlood sends n frames from eth0 of ns, each from another source MAC
// (02:aa:00:00:00:00 + i, locally administered) to an unknown unicast MAC,
// with the local experimental EtherType 0x88b5: frames for the switch
// only, which nothing answers and no IP stack takes.
func macFlood(t *testing.T, ns string, n int) {
	t.Helper()
	htons := func(v uint16) uint16 { return v<<8 | v>>8 }
	inNS(t, ns, func() error {
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		sa := &syscall.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: ifi.Index}
		frame := make([]byte, 60)
		copy(frame, []byte{0x02, 0xff, 0xff, 0, 0, 1, 0x02, 0xaa})
		binary.BigEndian.PutUint16(frame[12:], 0x88b5)
		for i := range n {
			binary.BigEndian.PutUint32(frame[8:], uint32(i))
			for {
				err := syscall.Sendto(fd, frame, 0, sa)
				if err == syscall.ENOBUFS || err == syscall.EAGAIN {
					continue // the TAP's queue is full: the switch is reading
				}
				if err != nil {
					return fmt.Errorf("frame %d: %w", i, err)
				}
				break
			}
		}
		return nil
	})
}

// TestFDBEvictionUnderFlood: an --allow-spoof port floods the MAC table
// (--fdb-max 1000) with 3000 source addresses; containers attached
// afterwards are still learned (the flooder's oldest entries are evicted),
// so their unicast reaches only them and not the flooder.
func TestFDBEvictionUnderFlood(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--fdb-max", "1000")
	flood, c3, c4 := newNS(t), newNS(t), newNS(t)
	d.attach(t, flood, "flood", "--allow-spoof")
	macFlood(t, flood, 3000)
	eventually(t, 10*time.Second, "the flood learned", func() bool {
		return cliJSON[api.Stats](t, d, "stats", "--json").FDB.Evicted > 0
	})
	p3 := d.attach(t, c3, "c3")
	d.attach(t, c4, "c4")
	ping(t, c4, ip(p3))
	fdb := cliJSON[[]api.FDBEntry](t, d, "fdb", "--json")
	if !slices.ContainsFunc(fdb, func(e api.FDBEntry) bool { return e.Port == "c3" && e.MAC == p3.MAC }) {
		t.Errorf("c3's MAC %s not learned after the flood (%d entries)", p3.MAC, len(fdb))
	}
	st := cliJSON[api.Stats](t, d, "stats", "--json").FDB
	t.Logf("fdb after the flood: %d entries, learned %d, evicted %d, limit_total %d", st.Entries, st.Learned, st.Evicted, st.LimitTotal)
	if st.Entries > 1000 {
		t.Errorf("%d entries, over --fdb-max 1000", st.Entries)
	}

	// c4's pings to c3 are captured on c3 and not on the flooder.
	var out bytes.Buffer
	c := d.startCapture(t, &out, "c3,flood", "-w", "-", "icmp")
	ping(t, c4, ip(p3))
	c.stop(t)
	pkts, _ := readPCAPNG(t, &out)
	on := map[string]int{}
	for _, p := range pkts {
		if p.icmpEcho() != "" {
			on[p.iface]++
		}
	}
	if on["c3"] == 0 || on["flood"] != 0 {
		t.Errorf("ICMP echo captured: %v; want some on c3 and none on the flooder", on)
	}
}
